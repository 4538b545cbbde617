"""Run independent MCMC chains, or any independent tasks, in worker processes (one per core).

On a CPU, one chain of the field-level model keeps a single core busy: XLA's intra-op threads
do not speed up its small FFTs, vectorised chains (`vmap`) cost as much as sequential ones, and
two threads or `pmap` devices driving one XLA CPU client can deadlock (jaxlib 0.10). Separate
processes have separate XLA runtimes, so C chains on C cores run in about the time of one.

Workers are started with the ``spawn`` method (JAX is not fork-safe): the caller's script must
guard its entry point with ``if __name__ == "__main__":`` and the model must be picklable (a
module-level function). Workers end within a second when the process that started them dies
(a killed parent runs no cleanup; `_exit_with_parent`).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import jax
import numpy as np

from numpyro_diffprior.runtime.xla import SINGLE_THREAD_XLA_FLAGS, worker_xla_flags

__all__ = [
    "split_chains",
    "run_chains_in_processes",
    "imap_in_processes",
    "resolve_num_workers",
    "resolve_chunk_size",
    "CPU_CHUNK_SIZE",
    "keys_to_numpy",
    "keys_from_numpy",
    "SINGLE_THREAD_XLA_FLAGS",
]


def split_chains(num_chains: int, num_workers: int) -> list[int]:
    """Chains per worker: `num_chains` spread as evenly as possible over at most `num_workers`."""
    if num_chains < 1 or num_workers < 1:
        raise ValueError(
            f"need num_chains >= 1 and num_workers >= 1, got {num_chains}, {num_workers}"
        )
    workers = min(num_chains, num_workers)
    return [num_chains // workers + (i < num_chains % workers) for i in range(workers)]


def keys_to_numpy(keys):
    """(raw key data, typed?) of JAX keys: numpy arrays pickle to spawned workers, keys don't."""
    if jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(keys)), True
    return np.asarray(keys), False


def keys_from_numpy(key_data, typed):
    """The keys `keys_to_numpy` took apart."""
    return jax.random.wrap_key_data(key_data) if typed else jax.numpy.asarray(key_data)


def _exit_with_parent(poll_s: float = 0.5) -> None:
    """End this worker soon after its parent dies: a parent killed by SIGTERM or SIGKILL
    runs no pool cleanup, and its workers would otherwise finish their (long) tasks."""
    parent_pid = os.getppid()

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(xla_flags):
    os.environ["XLA_FLAGS"] = xla_flags
    _exit_with_parent()


def _check_picklable(obj, what: str) -> None:
    try:
        pickle.dumps(obj)
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        raise ValueError(
            f"running {what} in processes sends it to the workers: it must be picklable "
            f"(a module-level function or class instance, not a lambda or closure): {err}"
        ) from err


def resolve_num_workers(num_workers, num_tasks: int) -> int:
    """Worker processes for `num_tasks` independent tasks: "auto" (or None) is one per CPU
    core on a CPU backend and 1 on an accelerator (where one process already uses the
    device); never more than the tasks."""
    if num_workers in (None, "auto"):
        cpu = jax.default_backend() == "cpu"
        num_workers = (os.cpu_count() or 1) if cpu else 1
    try:
        count = int(num_workers)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise ValueError(f"num_workers must be a positive integer or 'auto', got {num_workers!r}")
    return max(1, min(count, num_tasks))


def _run_job(fn, key_data, typed, show_progress, kwargs):
    keys = keys_from_numpy(key_data, typed)
    # NumPyro takes one key for one chain and a batch of keys for several.
    return fn(keys[0] if len(keys) == 1 else keys, len(keys), show_progress, **kwargs)


def _chain_slice(tree, lo: int, hi: int):
    """Chains lo..hi-1 of a pytree of arrays with a leading chain axis (numpy; chain lo
    alone, without the axis, for a group of one, as its key is passed)."""
    index = lo if hi - lo == 1 else slice(lo, hi)
    return jax.tree.map(lambda x: np.asarray(x)[index], tree)


def run_chains_in_processes(
    fn, chain_keys, *, num_workers=None, progress_bar=True, chain_kwargs=None, **kwargs
):
    """Call ``fn(keys_w, num_chains_w, show_progress, **kwargs)`` in one spawned process per
    worker, with the chains' keys `chain_keys` (C,) split into contiguous groups
    (`split_chains`; a group of one is passed as a single key). Chain c always gets
    ``chain_keys[c]``, whatever the number of workers; only worker 0 shows progress.

    chain_kwargs: optional further keyword arguments of `fn`, each a pytree of arrays (not
    keys) with a leading chain axis (C, ...), split like the keys: a worker gets its chains'
    rows (a group of one without the axis), exactly as computed here. Use it for per-chain
    values that must not depend on how the chains are grouped (e.g. initial points: a
    program computing a batch of K rounds differently for different K).

    Returns the workers' return values in chain order. An exception in a worker is raised
    here.
    """
    counts = split_chains(len(chain_keys), num_workers or os.cpu_count() or 1)
    chain_kwargs = dict(chain_kwargs or {})
    for name, tree in chain_kwargs.items():
        if any(np.shape(x)[:1] != (len(chain_keys),) for x in jax.tree.leaves(tree)):
            raise ValueError(
                f"chain_kwargs[{name!r}] must have a leading chain axis of {len(chain_keys)}"
            )
    _check_picklable((fn, kwargs), "chains (the model and its arguments)")
    flags = worker_xla_flags()
    context = multiprocessing.get_context("spawn")
    key_data, typed = keys_to_numpy(chain_keys)
    bounds = np.cumsum([0] + counts)
    groups = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    with ProcessPoolExecutor(len(counts), mp_context=context, initializer=_init_worker,
                             initargs=(flags,)) as pool:  # fmt: skip
        futures = []
        for w, (lo, hi) in enumerate(groups):
            job_kwargs = {k: _chain_slice(v, lo, hi) for k, v in chain_kwargs.items()}
            show = progress_bar and w == 0
            job = (fn, key_data[lo:hi], typed, show, {**kwargs, **job_kwargs})
            futures.append(pool.submit(_run_job, *job))
        return [f.result() for f in futures]


_WORKER_FN = None  # set once in each worker process of `imap_in_processes`


def _init_map_worker(xla_flags, fn):
    global _WORKER_FN
    _init_worker(xla_flags)
    _WORKER_FN = fn


def _call_worker_fn(args):
    return _WORKER_FN(*args)


def imap_in_processes(fn, arg_tuples, *, num_workers: int):
    """Yield ``fn(*args)`` for each tuple in `arg_tuples`, in order, computed by `num_workers`
    spawned processes with one XLA thread each.

    `fn` is pickled once per worker (not once per task), so an object that builds something
    expensive on its first call (a sampler, a compiled function) builds it once per worker.
    Results arrive in input order as soon as they and all earlier ones are done; an
    exception in a worker is raised here, a worker that dies (killed, out of memory) raises
    `BrokenProcessPool` instead of waiting for ever, and closing the generator stops the
    workers.
    """
    _check_picklable(fn, "the function")
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(num_workers, mp_context=context, initializer=_init_map_worker,
                               initargs=(worker_xla_flags(), fn))  # fmt: skip
    try:
        futures = [pool.submit(_call_worker_fn, args) for args in arg_tuples]
        for future in futures:
            yield future.result()
    finally:
        _stop_pool(pool)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued tasks and end the workers now, without waiting for running tasks."""
    terminate = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    workers = list((getattr(pool, "_processes", None) or {}).values())  # shutdown clears it
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        if process.is_alive():
            process.terminate()


# Maps per compiled program on a CPU: the network's activations of ~5 maps fit the caches.
CPU_CHUNK_SIZE = 5


def resolve_chunk_size(name, setting, *, cpu, accelerator, none_ok=False):
    """Items per compiled program: "auto" is `cpu` on a CPU backend and `accelerator` on an
    accelerator; otherwise a positive int (or a string of digits, as the CLI passes it); None
    passes through where `none_ok`. A bad value is a ValueError naming `name`."""
    if setting is None and none_ok:
        return None
    if setting == "auto":
        return cpu if jax.default_backend() == "cpu" else accelerator
    if isinstance(setting, str) and setting.isdigit():
        setting = int(setting)
    if not isinstance(setting, int) or isinstance(setting, bool) or setting < 1:
        allowed = "a positive int, 'auto' or None" if none_ok else "a positive int or 'auto'"
        raise ValueError(f"{name} must be {allowed}, got {setting!r}")
    return setting
