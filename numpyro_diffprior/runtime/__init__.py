"""Where and how the samplers' work runs; nothing here changes a draw.

- `runtime.processes`: independent chains or tasks in spawned worker processes, one XLA thread
  each (`run_chains_in_processes`, `imap_in_processes`, `resolve_num_workers`, and
  `keys_to_numpy` / `keys_from_numpy` to send JAX keys to them);
- `runtime.executors`: where independent tasks run - this process, that process pool, or a
  Dask cluster (`resolve_executor(num_workers, scheduler)`; `scheduler="local"` or an address);
- `runtime.threads`: independent tasks in threads of this process (`imap_in_threads`);
- `runtime.xla`: the workers' XLA flags and the compilation cache;
- `runtime.model_init`: NumPyro's model initialisation for MCMC compiled as one program (a
  workaround for its eager, operation-by-operation initialisation; used by `nuts_baseline`).
"""

from numpyro_diffprior.runtime.processes import (
    imap_in_processes,
    keys_from_numpy,
    keys_to_numpy,
    resolve_num_workers,
    run_chains_in_processes,
    split_chains,
)

__all__ = [
    "imap_in_processes",
    "keys_from_numpy",
    "keys_to_numpy",
    "resolve_num_workers",
    "run_chains_in_processes",
    "split_chains",
]
