"""Amortised draws for many observations, computed a few draws at a time by threads side by side.

`infer.amortized.sample_with_keys` runs all K x num_draws draws of a batch of observations as
one vmapped program. On a CPU a batch of hundreds of maps leaves the caches, and the network
then costs several times more per map than in chunks of about 5 (docs/validation.md §6.3).
The ODE solvers (Heun, DPM-Solver++(2M), (3M)) are deterministic given a draw's initial point,
and each draw only sees its own observation, so the draws can be computed in any grouping:

1. the initial points and the observations' encodings are computed as `sample_with_keys`
   computes them (observation k with keys[k]);
2. the K x num_draws draws are laid out as rows, each with the index of its observation;
3. chunks of `chunk_size` rows run through one compiled program, `num_threads` chunks side
   by side (`runtime.threads.imap_in_threads`), the last chunk padded so it compiles once.

The draws equal `sample_with_keys`'s up to float rounding, whatever the chunk size, the
threads or the other observations of the batch. The stochastic sampler ("sde") draws its
noise for the whole batch at once, so it runs through `sample_with_keys` unchanged.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.infer import amortized as _amortized
from numpyro_diffprior.runtime import processes as _runtime
from numpyro_diffprior.runtime.processes import CPU_CHUNK_SIZE, resolve_num_workers
from numpyro_diffprior.runtime.threads import imap_in_threads

__all__ = ["sample_with_keys_chunked", "resolve_chunk_size", "CPU_CHUNK_SIZE"]


def resolve_chunk_size(chunk_size) -> int | None:
    """Draws per compiled program: "auto" is CPU_CHUNK_SIZE on a CPU and None (each batch of
    observations as one vmapped program) on an accelerator; or a positive int."""
    return _runtime.resolve_chunk_size("chunk_size", chunk_size, cpu=CPU_CHUNK_SIZE,
                                       accelerator=None, none_ok=True)  # fmt: skip


def sample_with_keys_chunked(keys, prior, observations, num_draws: int, *, chunk_size,
                             num_threads="auto", check=True, **settings) -> np.ndarray:  # fmt: skip
    """`sample_with_keys` computed `chunk_size` draws at a time by `num_threads` threads
    ("auto": one per CPU core); physical draws (K, num_draws, D) as a numpy array. `chunk_size`
    as `resolve_chunk_size`; None (or "auto" on an accelerator) is `sample_with_keys` itself."""
    chunk = resolve_chunk_size(chunk_size)
    observations, items = _amortized._prepare(prior, observations, check, settings, keys)
    if chunk is None or dict(items)["sampler"] == "sde":
        return np.asarray(_amortized._sample_keys(keys, prior, observations, num_draws, items))
    num_draws = int(num_draws)
    contexts, x_init = _initial_rows(keys, prior, observations, num_draws, items)
    num_obs = x_init.shape[0]
    rows = np.asarray(x_init).reshape(num_obs * num_draws, -1)
    owner = np.repeat(np.arange(num_obs, dtype=np.int32), num_draws)
    chunk = min(chunk, len(rows))
    starts = range(0, len(rows), chunk)
    pad = lambda a, s: a[np.minimum(np.arange(s, s + chunk), len(rows) - 1)]  # noqa: E731
    program = jax.jit(_run_rows, static_argnums=4)
    compiled = program.lower(prior, pad(rows, 0), pad(owner, 0), contexts, items).compile()
    run = lambda s: np.asarray(compiled(prior, pad(rows, s), pad(owner, s), contexts))  # noqa: E731
    threads = resolve_num_workers(num_threads, len(starts))
    out = np.concatenate(list(imap_in_threads(run, starts, threads)))[: len(rows)]
    return out.reshape(num_obs, num_draws, -1)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _initial_rows(keys, prior, observations, num_draws, items):
    """(encoded observations (K, ...), initial points (K, num_draws, D)) as `_sample_keys`."""
    sigma_max = dict(items)["sigma_max"]
    contexts = prior.encode(observations)
    init = lambda key: _amortized.initial_draws(key, num_draws, prior.dim, sigma_max)
    return contexts, jax.vmap(init)(keys)


def _run_rows(prior, x_init, owner, contexts, items):
    """Physical draws (n, D) from initial points (n, D), row i given observation owner[i]."""
    settings = dict(items)
    ctx = jax.tree_util.tree_map(lambda c: jnp.take(c, owner, axis=0), contexts)
    denoise = lambda x, s: prior.conditional_denoise_normalized(x, s, ctx)  # noqa: E731
    x = _amortized._REVERSE[settings.pop("sampler")](
        jax.random.key(0), denoise, x_init.shape[0], prior.dim, x_init=x_init, **settings
    )
    return prior.from_normalized(x)
