"""XLA settings of the processes that compute draws.

Worker processes (`runtime.processes`) run one XLA thread each, so that the workers, not XLA's
intra-op threads, use the cores: `worker_xla_flags` adds `SINGLE_THREAD_XLA_FLAGS` to the
caller's `XLA_FLAGS`. JAX's persistent compilation cache is configured by the environment
(`JAX_COMPILATION_CACHE_DIR`, `JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`; `make test` sets
both), which spawned workers inherit, so a program compiled by one worker or test is read back
by the others.
"""

from __future__ import annotations

import os

__all__ = ["SINGLE_THREAD_XLA_FLAGS", "worker_xla_flags"]

# One XLA thread per worker: workers, not threads, use the cores.
SINGLE_THREAD_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def worker_xla_flags() -> str:
    """`XLA_FLAGS` for a worker process: the caller's flags plus one XLA thread."""
    return " ".join(filter(None, [os.environ.get("XLA_FLAGS", ""), SINGLE_THREAD_XLA_FLAGS]))
