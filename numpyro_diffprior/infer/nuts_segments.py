"""Resumable NUTS: NumPyro's MCMC run in segments, its state and draws saved after each.

A converged field-level reference at 128 pixels takes many hours. `run_nuts_segments` runs
NUTS (the kernel of `infer.nuts`) in NumPyro's own idiom for sequential runs,
``mcmc.post_warmup_state = state; mcmc.run(state.rng_key)``, `every` iterations at a time,
warmup included: the kernel adapts the step size and mass matrix while its iteration counter
(`HMCState.i`) is below `num_warmup`, so a warmup segment continues the adaptation schedule
exactly where the last one stopped. After each segment the chains' `HMCState` (position,
gradient, momentum, step size, mass matrix, adaptation windows, iteration count, random key),
the statistics of every iteration and the segment's draws go to a checkpoint directory
(`infer.mcmc_checkpoint`): a run killed at any moment restarts from its last complete segment
and follows the same states as a run never interrupted (the same compiled segment from the
same state), to the bit on one machine.
"""

from __future__ import annotations

import functools
import operator
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import NUTS
from numpyro.infer.util import ParamInfo

from numpyro_diffprior.atomic import atomic_savez
from numpyro_diffprior.infer.mcmc_checkpoint import (
    load_group,
    observation_hash,
    open_checkpoint,
    save_group,
)
from numpyro_diffprior.runtime.model_init import constrained_sites, initial_params, model_potential
from numpyro_diffprior.runtime.processes import keys_to_numpy

__all__ = [
    "EXTRA_FIELDS",
    "chain_keys",
    "sample_stats",
    "checkpointed_runner",
    "run_nuts_segments",
]

# NumPyro extra field -> sample_stats name (ArviZ conventions).
EXTRA_FIELDS = {
    "potential_energy": "lp",
    "accept_prob": "acceptance_rate",
    "adapt_state.step_size": "step_size",
    "num_steps": "n_steps",
    "diverging": "diverging",
}


def chain_keys(keys, num_chains):
    """(sampler keys, init keys): each chain's key splits, as NumPyro's HMC.init does, into a
    sampler key and an init key. `keys` is one key per chain (a single key for one chain);
    the results are unbatched for a single chain."""
    if jnp.size(keys) != num_chains:
        raise ValueError(
            f"need one random key per chain ({num_chains}), got keys of shape "
            f"{jnp.shape(keys)}: pass jax.random.split(key, {num_chains})"
        )
    pairs = jax.vmap(jax.random.split)(jnp.reshape(keys, (num_chains,)))  # (chains, 2)
    if num_chains == 1:
        return pairs[0, 0], pairs[0, 1]
    return pairs[:, 0], pairs[:, 1]


def sample_stats(fields: dict, chain_method: str) -> tuple[dict, float]:
    """(sample stats, gradients one after the other) of NumPyro extra fields (chain, draw).

    Vectorised chains advance in lockstep (per iteration the slowest chain's trajectory sets
    the cost), parallel ones side by side (the longest chain does), sequential ones add up."""
    stats = {name: np.asarray(fields[key]) for key, name in EXTRA_FIELDS.items()}
    stats["lp"] = -stats["lp"]
    n_steps = stats["n_steps"]
    stats["tree_depth"] = np.ceil(np.log2(n_steps + 1.0)).astype(np.int64)
    if n_steps.shape[1] == 0:
        return stats, 0.0
    lockstep = {
        "vectorized": lambda: np.sum(np.max(n_steps, axis=0)),
        "parallel": lambda: np.max(np.sum(n_steps, axis=1)),
    }.get(chain_method, lambda: np.sum(n_steps))()
    return stats, float(lockstep)


def checkpointed_runner(checkpoint, every, rng_key, job: dict, num_chains, chain_method, workers):
    """`run_nuts_segments` bound to `checkpoint` (opened for this run, `open_checkpoint`): a
    drop-in for `infer.nuts._run_nuts` given `job` (its model, kernel and model arguments)."""
    if int(every) < 1:
        raise ValueError(f"checkpoint_every must be >= 1 iteration, got {every}")
    kw, kernel = job["model_kwargs"], dict(job["kernel_kwargs"])
    kernel.pop("init_strategy")
    model = job["model"]
    model = f"{getattr(model, '__module__', '')}.{getattr(model, '__qualname__', repr(model))}"
    emulator = [np.asarray(x) for x in jax.tree.leaves(kw.get("emulator"))]
    settings = dict(
        preset=kw["preset"].name, model=model,
        observation=observation_hash(kw["shear_obs"], kw.get("mask"), kw.get("noise_std")),
        emulator=observation_hash(*emulator) if emulator else None,
        key=keys_to_numpy(rng_key)[0].tolist(), num_warmup=job["num_warmup"],
        num_chains=num_chains, chain_method=chain_method, num_workers=workers,
        **kernel,
    )  # fmt: skip
    open_checkpoint(checkpoint, settings)
    return functools.partial(run_nuts_segments, checkpoint=os.fspath(checkpoint), every=every)


def _initial_state(kernel, run_keys, num_warmup, init, num_chains, chain_method):
    """The kernel's state before the first iteration, as NumPyro's MCMC builds it: a batch of
    chains at once when vectorised (the kernel then steps a batch), one chain at a time
    otherwise. Also sets the kernel up (its adaptation schedule) for `num_warmup`."""
    if num_chains == 1 or chain_method == "vectorized":
        return kernel.init(run_keys, num_warmup, init, (), {})
    states = [
        kernel.init(run_keys[c], num_warmup, jax.tree.map(lambda x, c=c: x[c], init), (), {})
        for c in range(num_chains)
    ]
    return jax.tree.map(lambda *x: jnp.stack(x), *states)


def _segment_fn(kernel, every: int):
    """One compiled program: n <= `every` NUTS iterations from a state (of one chain, or of a
    batch when the kernel steps one), returning the last state and, per iteration, the extra
    fields and the position z in buffers of `every` rows (the first n filled). The iteration
    count is an argument, not a constant: every segment, the last shorter ones included, runs
    the same program (NumPyro's `MCMC.run` traces and compiles its loop again at every call)."""
    getters = {k: operator.attrgetter(k) for k in EXTRA_FIELDS}

    def collect(state):
        return {**{k: g(state) for k, g in getters.items()}, "z": state.z}

    def run(state, n):
        buf = jax.tree.map(
            lambda x: jnp.zeros((every,) + jnp.shape(x), jnp.result_type(x)), collect(state)
        )

        def body(i, carry):
            state, buf = carry
            state = kernel.sample(state, (), {})
            return state, jax.tree.map(lambda b, x: b.at[i].set(x), buf, collect(state))

        return jax.lax.fori_loop(0, n, body, (state, buf))

    return jax.jit(run)


def _run_segment(segment, state, n, num_chains, chain_method):
    """(last state, {field: (chain, n, ...)}, draws {site: (chain, n, ...)}) of n iterations."""
    if num_chains == 1 or chain_method == "vectorized":
        state, buf = segment(state, n)
        lead = 1 if num_chains > 1 else None  # buffers (every, chain, ...) or (every, ...)
        out = jax.tree.map(lambda b: np.moveaxis(np.asarray(b)[:n], 0, 1) if lead
                           else np.asarray(b)[None, :n], buf)  # fmt: skip
    else:  # sequential (and parallel): one chain after the other, as NumPyro's _laxmap
        runs = [segment(jax.tree.map(lambda x, c=c: x[c], state), n) for c in range(num_chains)]
        state = jax.tree.map(lambda *x: jnp.stack(x), *[r[0] for r in runs])
        out = jax.tree.map(lambda *b: np.stack([np.asarray(x)[:n] for x in b]),
                           *[r[1] for r in runs])  # fmt: skip
    z = out.pop("z")
    return state, out, z


def run_nuts_segments(
    keys, num_chains, progress_bar, *, model, kernel_kwargs, num_warmup, num_samples,
    chain_method, model_kwargs, init=None, checkpoint=None, every=100, chain_index=None,
    on_segment=None,
) -> dict:  # fmt: skip
    """NUTS (`infer.nuts._run_nuts`'s arguments and result) run `every` iterations at a time,
    resuming from and saving to `checkpoint` (a directory made by `open_checkpoint`; None:
    nothing saved). progress_bar: print a line per segment.

    chain_index: the chains' indices in the whole run (default 0..num_chains-1), naming the
    group's subdirectory. on_segment(info): called after each segment with a dict (iteration,
    num_warmup, "fields": NumPyro's extra fields of every iteration so far (chain, iteration),
    "draws": the sampling segments' unconstrained draws, warmup / sampling times); True stops
    the run there (the result then holds the draws so far; "complete" says whether all were).
    Besides _run_nuts's keys, the result has "warmup_stats", "warmup_time", "complete".
    """
    if int(every) < 1:
        raise ValueError(f"checkpoint every must be >= 1 iteration, got {every}")
    every = int(every)
    if chain_method != "vectorized":  # "parallel" chains, too, run one after the other
        chain_method = "sequential"
    kernel_kwargs = dict(kernel_kwargs)
    init_strategy = kernel_kwargs.pop("init_strategy")
    kernel = NUTS(potential_fn=model_potential(model, model_kwargs), **kernel_kwargs)
    index = np.arange(num_chains) if chain_index is None else np.atleast_1d(chain_index)
    name = f"chains-{index[0]}-{index[-1]}"
    group = None if checkpoint is None else os.path.join(os.fspath(checkpoint), name)
    if group is not None:
        os.makedirs(group, exist_ok=True)
    saved = None if group is None else load_group(group)
    start = time.perf_counter()
    if saved is None:
        run_keys, init_keys = chain_keys(keys, num_chains)
        if init is None:
            init = initial_params(init_keys, model, model_kwargs, init_strategy)
        state = _initial_state(kernel, run_keys, num_warmup, init, num_chains, chain_method)
        meta = {"warmup_time": 0.0, "sampling_time": 0.0, "draw_files": [], "num_draws": 0}
        fields, draws = {}, []
    else:
        state, fields, draws, meta = saved["state"], saved["fields"], saved["draws"], saved["meta"]
        for file in os.listdir(group):  # draws of a segment whose state was never saved
            if file.startswith("draws-") and file not in meta["draw_files"]:
                os.remove(os.path.join(group, file))
        info = ParamInfo(state.z, state.potential_energy, state.z_grad)  # sets the kernel up
        _initial_state(kernel, state.rng_key, num_warmup, info, num_chains, chain_method)
    segment = _segment_fn(kernel, every)
    one = num_chains == 1 or chain_method == "vectorized"
    jax.block_until_ready(segment(state if one else jax.tree.map(lambda x: x[0], state), 0))
    meta["warmup_time"] += time.perf_counter() - start  # initialisation and compilation
    start = time.perf_counter()
    total = num_warmup + num_samples
    done = int(np.max(np.asarray(state.i)))  # iterations done (equal over chains)
    stopped = False
    while done < total and not stopped:
        phase = "warmup" if done < num_warmup else "sampling"
        n = min(every, (num_warmup if phase == "warmup" else total) - done)
        state, new, z = _run_segment(segment, state, n, num_chains, chain_method)
        fields = {k: np.concatenate([fields[k], new[k]], axis=1) if k in fields else new[k]
                  for k in EXTRA_FIELDS}  # fmt: skip
        now = time.perf_counter()
        meta[f"{phase}_time"] += now - start
        if phase == "sampling":
            draws.append(z)
            file = f"draws-{meta['num_draws']:08d}.npz"
            if group is not None:
                atomic_savez(os.path.join(group, file), **z)
            meta["draw_files"].append(file)
            meta["num_draws"] += n
        done += n
        if group is not None:
            save_group(group, state, fields, meta)
        if progress_bar:
            print(f"NUTS {name}: iteration {done}/{total} ({phase}), {(now - start) / n:.3g} s "
                  f"per iteration, leapfrog steps {np.mean(new['num_steps']):.0f}, step size "
                  f"{np.mean(new['adapt_state.step_size'][:, -1]):.3g}, divergences so far "
                  f"{int(np.sum(fields['diverging']))}", flush=True)  # fmt: skip
        if on_segment is not None:
            stopped = bool(on_segment(dict(
                iteration=done, num_warmup=num_warmup, fields=fields, draws=draws,
                warmup_time=meta["warmup_time"], sampling_time=meta["sampling_time"],
            )))  # fmt: skip
        start = time.perf_counter()
    return _result(model, model_kwargs, fields, draws, meta, num_warmup, num_samples,
                   chain_method, complete=done >= total)  # fmt: skip


def _result(model, model_kwargs, fields, draws, meta, num_warmup, num_samples, chain_method,
            *, complete) -> dict:  # fmt: skip
    n_draws = min(meta["num_draws"], num_samples)
    warm = {k: v[:, :num_warmup] for k, v in fields.items()}
    sampled = {k: v[:, num_warmup : num_warmup + n_draws] for k, v in fields.items()}
    stats, lockstep = sample_stats(sampled, chain_method)
    out = {"theta": None, "kappa": None}
    if draws:
        z = {k: np.concatenate([d[k] for d in draws], axis=1)[:, :n_draws] for k in draws[0]}
        out = constrained_sites(model, model_kwargs, z, ("theta", "kappa"))
    return {
        "theta": out["theta"],
        "kappa": out["kappa"],
        "stats": stats,
        "warmup_stats": sample_stats(warm, chain_method)[0] if warm else {},
        "sampling_time": meta["sampling_time"],
        "warmup_time": meta["warmup_time"],
        "lockstep_grads": lockstep,
        "complete": bool(complete),
    }
