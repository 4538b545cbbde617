"""Simulator: log-normal convergence maps, Kaiser-Squires shear, the field-level model, datasets.

``simulate(rng_key, preset, num)`` draws ``(theta, kappa)`` pairs with a distinct theta per map:
map ``j`` is a pure function of ``fold_in(rng_key, start + j)``, so any chunking of the same
index range gives the same maps (identical for one batch size, equal to float32 rounding
across batch sizes; the dataset writer relies on it). On a CPU the batches are computed by one
thread per core side by side (`default_num_threads`): one compiled batch at a time leaves the
cores partly idle.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology.params import prior_distribution
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.runtime.threads import imap_in_threads
from numpyro_diffprior.simulator.lognormal import lognormal_kappa, power_grid, simulate_kappa
from numpyro_diffprior.simulator.shear import (
    add_shape_noise,
    kaiser_squires,
    kaiser_squires_adjoint,
    kaiser_squires_inverse,
    noise_std_map,
    shear_log_likelihood,
)

__all__ = [
    "simulate",
    "default_batch_size",
    "default_num_threads",
    "sample_prior_in_box",
    "lognormal_kappa",
    "power_grid",
    "simulate_kappa",
    "kaiser_squires",
    "kaiser_squires_adjoint",
    "kaiser_squires_inverse",
    "add_shape_noise",
    "noise_std_map",
    "shear_log_likelihood",
]


def sample_prior_in_box(rng_key, param_names, bounds):
    """theta (P,) from the prior restricted to the box ``bounds`` (P, 2) (inverse-CDF sampling).

    The box cuts the prior where the tables stop (2 % of the mass, Omega_c < 0.02, for the
    shipped ones; docs/cosmology.md).
    """
    keys = jax.random.split(rng_key, len(param_names))
    cols = []
    for i, name in enumerate(param_names):
        d = prior_distribution(name)
        lo, hi = d.cdf(bounds[i, 0]), d.cdf(bounds[i, 1])
        u = jax.random.uniform(keys[i], minval=lo, maxval=hi)
        cols.append(jnp.clip(d.icdf(u), bounds[i, 0], bounds[i, 1]))
    return jnp.stack(cols)


def _split_static(tree):
    """Partition a pytree's leaves into arrays (traced) and the rest (static, hashable)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    is_array = tuple(isinstance(x, (jax.Array, np.ndarray, float, int)) for x in leaves)
    arrays = [jnp.asarray(x) for x, a in zip(leaves, is_array, strict=True) if a]
    others = tuple(x for x, a in zip(leaves, is_array, strict=True) if not a)
    return arrays, (treedef, is_array, others)


def _merge_static(arrays, static):
    treedef, is_array, others = static
    arrays, others = iter(arrays), iter(others)
    leaves = [next(arrays) if a else next(others) for a in is_array]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _simulate_one(key, emulator, preset):
    key_theta, key_z = jax.random.split(key)
    theta = sample_prior_in_box(key_theta, preset.param_names, jnp.asarray(emulator.bounds))
    z = jax.random.normal(key_z, preset.map_shape)
    return theta, simulate_kappa(theta, z, emulator, preset)


def _simulate_batch(rng_key, index, emulator_arrays, static, preset):
    emulator = _merge_static(emulator_arrays, static)
    keys = jax.vmap(lambda i: jax.random.fold_in(rng_key, i))(index)
    return jax.vmap(lambda k: _simulate_one(k, emulator, preset))(keys)


# Compiled once per (preset, batch size, emulator structure); reused across calls.
_simulate_batch_jit = jax.jit(_simulate_batch, static_argnums=(3, 4))


def default_batch_size(preset) -> int:
    """Maps per vmapped batch of `simulate` when none is given: 64 on an accelerator; on a CPU
    the power of two (at most 64) that keeps a batch near 2^20 map values, where the batch's
    working set stays in cache (lsst-y10-coarse: 64, lsst-y10-jade: 8, docs/benchmarks.md)."""
    preset = get_preset(preset)
    if jax.default_backend() != "cpu":
        return 64
    maps = max(1, 2**20 // int(np.prod(preset.map_shape)))
    return min(64, 1 << (maps.bit_length() - 1))  # the power of two at or below `maps`


def default_num_threads() -> int:
    """Threads that compute `simulate`'s batches side by side when none is given: one per core
    this process may use on a CPU (jade maps on 2 cores: about 1.3x the maps per second of one
    thread, docs/benchmarks.md), 1 on an accelerator (its queue already overlaps them)."""
    if jax.default_backend() != "cpu":
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def simulate(
    rng_key,
    preset=None,
    num: int = 1,
    *,
    emulator=None,
    batch_size: int | None = None,
    start=0,
    num_threads: int | None = None,
):
    """Draw ``num`` pairs (theta, kappa) with theta from the prior, a distinct theta per map.

    Returns numpy-convertible JAX arrays theta (num, P) and kappa (num, C, N, N). Map j uses
    ``fold_in(rng_key, start + j)``. Batches of ``batch_size`` (default `default_batch_size`)
    are vmapped under one compiled function (the last batch is padded, so nothing re-traces),
    and ``num_threads`` threads (default `default_num_threads`) each compute a contiguous share
    of the batches; the maps do not depend on the number of threads.
    """
    preset = get_preset(preset)
    if batch_size is None:
        batch_size = default_batch_size(preset)
    if not isinstance(num, (int, np.integer)) or num < 0:
        raise ValueError(f"num must be a non-negative integer, got {num!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    if num_threads is None:
        num_threads = default_num_threads()
    if not isinstance(num_threads, (int, np.integer)) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
    if emulator is None:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        emulator = load_emulator(preset)
    names = getattr(emulator, "param_names", preset.param_names)
    if tuple(names) != tuple(preset.param_names):
        raise ValueError(
            f"emulator parameters {tuple(names)} do not match preset {preset.name!r} "
            f"parameters {preset.param_names}"
        )
    arrays, static = _split_static(emulator)
    idx = np.arange(start, start + num)
    chunks = [idx[s : s + batch_size] for s in range(0, num, batch_size)]

    def run(chunk):
        pad = np.concatenate([chunk, np.full(batch_size - len(chunk), chunk[-1])])
        index = jnp.asarray(pad, jnp.uint32)
        theta, kappa = _simulate_batch_jit(rng_key, index, arrays, static, preset)
        if len(chunk) < batch_size:  # (slicing a whole batch would copy it)
            theta, kappa = theta[: len(chunk)], kappa[: len(chunk)]
        return jax.block_until_ready((theta, kappa)) if num_threads > 1 else (theta, kappa)

    num_threads = min(int(num_threads), len(chunks) - 1)
    if num_threads > 1:  # the first batch compiles, then the threads share the rest
        results = [run(chunks[0]), *imap_in_threads(run, chunks[1:], num_threads)]
    else:
        results = [run(chunk) for chunk in chunks]
    thetas = [theta for theta, _ in results]
    kappas = [kappa for _, kappa in results]
    if not thetas:
        return jnp.zeros((0, preset.n_params)), jnp.zeros((0,) + preset.map_shape)
    if len(thetas) == 1:
        return thetas[0], kappas[0]
    return jnp.concatenate(thetas), jnp.concatenate(kappas)
