"""Where independent tasks run: this process, the home-made process pool, or a Dask cluster.

`resolve_executor(num_workers, scheduler)` picks one; each executor maps a picklable function
over argument tuples and yields the results in input order (`imap`), like
`runtime.processes.imap_in_processes`. The task arguments (and so the draws) do not depend on
the executor: a run gives the same results in one process, in the process pool and on Dask.

- scheduler None, num_workers 1: `InProcessExecutor` (this process);
- scheduler None, num_workers > 1 ("auto": one per CPU core on a CPU): `ProcessPoolExecutor`,
  the spawned process pool of `runtime.processes` (the local default: it starts in about as
  long as Python and JAX take to import, and its workers exit with a killed parent);
- scheduler "local": `DaskExecutor` on a `distributed.LocalCluster` started for the run
  (processes, `num_workers` of them or one per core, one thread and one XLA thread each) and
  closed after it;
- scheduler "tcp://host:port" (a running `dask scheduler`), or a `distributed.Client`:
  `DaskExecutor` on that cluster, which is left running; the work is spread over its workers.

Dask is imported only when a scheduler is given (`pip install "numpyro_diffprior[distributed]"`
or `dask[distributed]`).
"""

from __future__ import annotations

import os

from numpyro_diffprior.runtime.processes import imap_in_processes, resolve_num_workers
from numpyro_diffprior.runtime.xla import worker_xla_flags

__all__ = [
    "resolve_executor",
    "InProcessExecutor",
    "ProcessPoolExecutor",
    "DaskExecutor",
    "check_scheduler",
]


class InProcessExecutor:
    """Runs every task here, one after the other."""

    backend = "in-process"
    num_workers = 1

    def imap(self, fn, arg_tuples):
        for args in arg_tuples:
            yield fn(*args)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ProcessPoolExecutor(InProcessExecutor):
    """`num_workers` spawned processes with one XLA thread each (`imap_in_processes`); the
    pool lives as long as one `imap`."""

    backend = "processes"

    def __init__(self, num_workers: int):
        self.num_workers = int(num_workers)

    def imap(self, fn, arg_tuples):
        return imap_in_processes(fn, arg_tuples, num_workers=self.num_workers)


def _apply(fn, *args):
    return fn(*args)


class DaskExecutor(InProcessExecutor):
    """Tasks on a Dask cluster: `scheduler` is "local" (a `LocalCluster` of `num_workers`
    processes, one per core if None/"auto", closed by `close`), an address such as
    "tcp://host:8786", or a `distributed.Client` (both left running)."""

    backend = "dask"

    def __init__(self, scheduler="local", num_workers=None):
        try:
            from distributed import Client, LocalCluster
        except ImportError as err:  # pragma: no cover - dask is a dependency
            raise ImportError("a scheduler needs Dask: pip install 'dask[distributed]'") from err
        self._cluster = None
        self._own_client = True
        if isinstance(scheduler, Client):
            self.client, self._own_client = scheduler, False
        elif scheduler == "local":
            self._cluster = LocalCluster(
                n_workers=_local_workers(num_workers),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port: clusters can coexist
                # one XLA thread per worker, as in the process pool
                env={"XLA_FLAGS": worker_xla_flags()},
            )
            self.client = Client(self._cluster)
        else:
            self.client = Client(check_scheduler(scheduler))
        self.num_workers = max(1, sum(self.client.nthreads().values()))

    def imap(self, fn, arg_tuples):
        """Yield ``fn(*args)`` in input order. `fn` is sent once to every worker (scattered),
        so a sampler it builds on its first call is built once per worker, as in the process
        pool; an exception in a task is raised here, and closing the generator cancels the
        tasks still pending."""
        client = self.client
        fn_future = client.scatter(fn, broadcast=True, hash=False)
        futures = [client.submit(_apply, fn_future, *args, pure=False) for args in arg_tuples]
        try:
            for i, future in enumerate(futures):
                yield future.result()
                futures[i] = None  # let the cluster forget the result
                future.release()
        finally:
            pending = [f for f in futures if f is not None]
            if pending:
                client.cancel(pending)
            fn_future.release()

    def close(self):
        """Close the client and the cluster this executor started (again: nothing)."""
        if self._own_client:
            self.client.close()
            self._own_client = False
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


def _local_workers(num_workers) -> int:
    """Workers of a LocalCluster: a count, or one per core for None or "auto"."""
    if num_workers in (None, "auto"):
        return os.cpu_count() or 1
    return resolve_num_workers(num_workers, 1 << 30)


def check_scheduler(scheduler):
    """`scheduler` checked without connecting: None, "local", a Dask address
    ("tcp://host:port", "tls://...", "inproc://...", or "host:port") or a `distributed.Client`.
    Returns it; ValueError otherwise."""
    if scheduler is None or scheduler == "local":
        return scheduler
    if isinstance(scheduler, str):
        if "://" in scheduler or (":" in scheduler and scheduler.rsplit(":", 1)[1].isdigit()):
            return scheduler
        raise ValueError(
            f"scheduler must be 'local' or a Dask scheduler address like tcp://host:8786, "
            f"got {scheduler!r}"
        )
    if type(scheduler).__name__ == "Client":
        return scheduler
    raise ValueError(f"scheduler must be None, 'local', an address or a Client, got {scheduler!r}")


def resolve_executor(num_workers=None, scheduler=None, *, num_tasks: int | None = None):
    """The executor of `num_workers` and `scheduler` (see the module docstring); use it as a
    context manager (``with resolve_executor(2) as ex: results = list(ex.imap(fn, args))``)
    so that a cluster it started is closed.

    Without a scheduler, num_workers (a count, or None/"auto": one per core on a CPU, 1 on an
    accelerator; at most `num_tasks`) picks this process (1) or the process pool (> 1). With
    one, num_workers sizes a "local" cluster (None, "auto" or 1: one worker per core; at most
    `num_tasks`) and is ignored for a running cluster.
    """
    check_scheduler(scheduler)
    if num_tasks is not None and num_tasks < 1:  # nothing to run: start nothing
        resolve_num_workers(num_workers, 1)  # still checks the setting
        return InProcessExecutor()
    tasks = (1 << 30) if num_tasks is None else int(num_tasks)
    if scheduler is None:
        workers = resolve_num_workers(num_workers, tasks)
        return InProcessExecutor() if workers == 1 else ProcessPoolExecutor(workers)
    if scheduler == "local":
        # a cluster of one worker would only add overhead to this process: 1 means "auto"
        workers = _local_workers(None if num_workers in (1, "1") else num_workers)
        return DaskExecutor(scheduler, min(workers, tasks))
    return DaskExecutor(scheduler)
