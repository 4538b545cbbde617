"""`imap_in_processes` fails loudly when a worker dies and stops its workers when closed."""

import multiprocessing
import os
import time
from concurrent.futures.process import BrokenProcessPool

import pytest

from numpyro_diffprior.runtime.processes import imap_in_processes

pytestmark = [pytest.mark.processes]  # starts worker processes


def test_a_dead_worker_raises_instead_of_waiting_for_ever():
    # os._exit ends the worker without an exception to send back: the pool must notice.
    with pytest.raises(BrokenProcessPool):
        list(imap_in_processes(os._exit, [(3,), (3,)], num_workers=1))


def test_results_arrive_in_order_and_closing_ends_the_workers():
    before = set(multiprocessing.active_children())
    results = imap_in_processes(pow, [(2, k) for k in range(6)], num_workers=2)
    assert list(results) == [2**k for k in range(6)]

    sleeping = imap_in_processes(time.sleep, [(0,), (300,), (300,)], num_workers=2)
    assert next(sleeping) is None  # the second worker is now inside a 300 s sleep
    start = time.monotonic()
    sleeping.close()
    while set(multiprocessing.active_children()) - before and time.monotonic() - start < 20:
        time.sleep(0.1)
    assert not set(multiprocessing.active_children()) - before, "workers outlived close()"
    assert time.monotonic() - start < 20
