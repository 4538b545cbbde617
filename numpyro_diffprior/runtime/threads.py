"""Independent tasks in threads of this process, side by side.

A compiled JAX program releases Python's lock while it runs, and one program at a time often
leaves a multi-core CPU partly idle, so a few threads that each run one program at a time use
the cores better (`simulator.simulate`, `infer.runner.IIDSampler(num_threads=...)`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

__all__ = ["imap_in_threads"]


def imap_in_threads(fn, items, num_threads: int):
    """Yield ``fn(item)`` for each item, in order, computed by `num_threads` threads side by
    side. For compiled JAX programs `fn` should wait for its result (`jax.block_until_ready`).
    Closing the generator waits for the calls already running and drops the rest."""
    with ThreadPoolExecutor(max(1, int(num_threads)), thread_name_prefix="imap") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for future in futures:
                yield future.result()
        finally:
            for future in futures:
                future.cancel()
