"""NUTS field-level baseline: NumPyro NUTS on the explicit log-normal lensing model.

The classic "HMC field-level" reference (e.g. Porqueres et al. 2022; Zhou et al. 2024): the
non-centred latent white noise `z` (C, N, N) and the cosmological parameters are sampled jointly
with the No-U-Turn sampler (Hoffman & Gelman 2014) on `simulator.model.lensing_model` conditioned
on the observed shear. The model knows the true (log-normal) prior, so its posterior is the gold
standard the diffusion samplers are compared with (docs/design.md §2.8). Chains run vectorised, one
after the other, or in `num_workers` worker processes (`runtime.processes`), the same
vocabulary as the diffusion samplers' `IIDSampler(..., num_workers=...)`.
"""

from __future__ import annotations

import os
import time
import warnings

import jax
import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, NUTS, init_to_median

from numpyro_diffprior.infer.inference_data import to_inference_data
from numpyro_diffprior.infer.nuts_segments import EXTRA_FIELDS, chain_keys, sample_stats
from numpyro_diffprior.observations import broadcast_mask
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.runtime.model_init import constrained_sites, initial_params, model_potential
from numpyro_diffprior.runtime.processes import resolve_num_workers
from numpyro_diffprior.validation import check_observation

__all__ = [
    "nuts_baseline", "convergence_summary", "baseline_inference_data", "EXTRA_FIELDS",
    "CHAIN_METHODS", "resolve_chain_method", "where_chains_run",
]  # fmt: skip

CHAIN_METHODS = ("vectorized", "sequential", "parallel", "processes", "auto")
IN_PROCESS_METHODS = ("vectorized", "sequential", "parallel")  # NumPyro's


def resolve_chain_method(chain_method: str, num_chains: int) -> str:
    """The chain method to use: "auto" is "processes" for several chains on a multi-core CPU
    and "vectorized" otherwise; any other valid method is returned as is."""
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    if chain_method != "auto":
        return chain_method
    cpu = jax.default_backend() == "cpu" and (os.cpu_count() or 1) > 1
    return "processes" if cpu and num_chains > 1 else "vectorized"


def where_chains_run(chain_method, num_workers, num_chains: int) -> tuple[str, int]:
    """(chain method, worker processes) of a run: with 1 worker the chains run in this process
    by NumPyro's `chain_method`; with more, spread over that many spawned processes, each
    running its chains one after the other (method "processes"). num_workers: a count, or
    "auto" (one per CPU core on a CPU, 1 on an accelerator), never more than the chains.
    The deprecated chain_method "processes" (num_workers default: the CPU count) and "auto"
    (= num_workers="auto") still work, with a DeprecationWarning."""
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    if chain_method in ("processes", "auto"):
        warnings.warn(
            f'chain_method="{chain_method}" is deprecated and will be removed in the next '
            'release; use num_workers=N or num_workers="auto" (one process per CPU core on a '
            "CPU), as for the diffusion samplers",
            DeprecationWarning,
            stacklevel=3,
        )
        if chain_method == "processes":
            workers = num_workers or os.cpu_count() or 1
            return "processes", max(1, min(int(workers), num_chains))
        num_workers = "auto"
    workers = resolve_num_workers(1 if num_workers is None else num_workers, num_chains)
    if workers > 1:
        return "processes", workers
    return ("vectorized" if chain_method == "auto" else chain_method), 1


def convergence_summary(theta) -> dict:
    """Max split R-hat and min bulk ESS over parameters of draws (chain, draw, P); NaN for
    fewer than 4 draws per chain."""
    theta = np.asarray(theta, dtype=np.float64)
    if theta.shape[1] < 4:  # split R-hat needs 2 halves of >= 2 draws per chain
        return {"rhat_max": float("nan"), "ess_min": float("nan")}
    rhat = np.atleast_1d(split_gelman_rubin(theta))
    ess = np.atleast_1d(effective_sample_size(theta))
    return {"rhat_max": float(np.max(rhat)), "ess_min": float(np.min(ess))}


def nuts_baseline(
    rng_key,
    *,
    preset="lsst-y10-coarse",
    shear_obs,
    mask=None,
    noise_std=None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    init_strategy=None,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    truth: dict | None = None,
    progress_bar: bool = True,
    model=None,
    emulator=None,
    chain_method: str = "vectorized",
    num_workers=1,
    checkpoint=None,
    checkpoint_every: int = 100,
):
    """Run NUTS on `lensing_model` (or `model`, same sites) given `shear_obs` (C, 2, N, N).

    init_strategy: default `init_to_median` (parameters near the prior median, z near 0 with a
    small scatter per chain). truth: optional {"theta", "kappa"} stored as constant_data.
    Returns `az.InferenceData` with posterior `theta` ("param",), `kappa` ("zbin","y","x"),
    sample_stats `lp` (= -potential energy, the log joint density in unconstrained space),
    `acceptance_rate`, `step_size`, `n_steps`, `tree_depth`, `diverging`, and attrs with the
    settings, timings and a convergence summary (max R-hat, min ESS over theta).
    `warmup_time_s` includes compilation; `sampling_time_s` (and the derived time per gradient
    and per effective sample) includes the sampling phase's own, shorter compilation.

    num_workers: processes that run the chains (1: this one, by NumPyro's `chain_method`
    "vectorized", "sequential" or "parallel"; N > 1 or "auto" = one per CPU core on a CPU:
    spawned processes (`runtime.processes`; the fastest on a multi-core CPU; needs a picklable
    model and a `__main__` guard), whose draws equal "sequential"'s). chain_method
    "processes" and "auto" are deprecated spellings of num_workers (`where_chains_run`).

    checkpoint: a directory to make the run resumable (`infer.nuts_segments`): NUTS then runs
    `checkpoint_every` iterations at a time (warmup included) and saves its state and draws
    after each; a rerun with the same arguments continues from there, one with another
    observation or settings is refused (ValueError). Its times add up over the resumed runs.
    """
    preset = get_preset(preset)
    if shear_obs is None:
        raise ValueError("shear_obs is required: NUTS samples the posterior given an observation")
    check_observation(shear_obs, mask, noise_std, preset=preset)
    shear_obs = np.asarray(shear_obs, dtype=np.float32)
    for name, value in (("num_warmup", num_warmup), ("num_samples", num_samples)):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if num_chains < 1:
        raise ValueError(f"num_chains must be >= 1, got {num_chains}")
    chain_method, workers = where_chains_run(chain_method, num_workers, num_chains)
    if model is None:
        from numpyro_diffprior.simulator.model import lensing_model as model
    job = dict(
        model=model,
        kernel_kwargs=dict(
            init_strategy=init_strategy or init_to_median(num_samples=15),
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            dense_mass=dense_mass,
        ),
        num_warmup=num_warmup,
        num_samples=num_samples,
        model_kwargs=dict(
            preset=preset, shear_obs=shear_obs, mask=mask, noise_std=noise_std, emulator=emulator
        ),
    )
    run = _run_nuts
    if checkpoint is not None:
        from numpyro_diffprior.infer.nuts_segments import checkpointed_runner

        run = checkpointed_runner(
            checkpoint, checkpoint_every, rng_key, job, num_chains, chain_method, workers
        )
    start = time.perf_counter()
    # The keys NumPyro's own chain methods give each chain ("processes" draws = "sequential"'s).
    keys = rng_key[None] if num_chains == 1 else jax.random.split(rng_key, num_chains)
    if chain_method == "processes":
        from numpyro_diffprior.runtime.processes import run_chains_in_processes

        # All chains' initial points are computed here, by the program "sequential" uses (one
        # batch of num_chains), and sent to the workers. Computed in a worker, a batch of 1 or
        # 2 chains rounds the initial gradient differently (XLA reduces in another order; 1
        # ulp), and NUTS, whose discrete choices (U-turns, multinomial picks) amplify any
        # difference, then gives different draws.
        _, init_keys = chain_keys(keys, num_chains)
        init = initial_params(
            init_keys, model, job["model_kwargs"], job["kernel_kwargs"]["init_strategy"]
        )
        per_chain = {"init": init}
        if checkpoint is not None:  # names each worker's checkpoint subdirectory
            per_chain["chain_index"] = np.arange(num_chains)
        runs = run_chains_in_processes(
            run, keys, num_workers=workers, progress_bar=progress_bar,
            chain_kwargs=per_chain, chain_method="sequential", **job,
        )  # fmt: skip
    else:
        keys = keys[0] if num_chains == 1 else keys
        runs = [run(keys, num_chains, progress_bar, chain_method=chain_method, **job)]
    total_time = time.perf_counter() - start
    if checkpoint is not None:  # times saved over all resumed runs
        total_time = max(r["warmup_time"] + r["sampling_time"] for r in runs)
    # Workers run side by side: the slowest one sets the sampling time; the rest of the wall
    # time (process start, imports, compilation, warmup) counts as warmup.
    sampling_time = max(r["sampling_time"] for r in runs)
    warmup_time = total_time - sampling_time
    lockstep_grads = max(r["lockstep_grads"] for r in runs)
    theta, kappa = (np.concatenate([r[k] for r in runs]) for k in ("theta", "kappa"))
    stats = {k: np.concatenate([r["stats"][k] for r in runs]) for k in runs[0]["stats"]}
    summary = convergence_summary(theta)
    attrs = {
        "preset": preset.name,
        "method": "nuts",
        "num_warmup": int(num_warmup),
        "num_samples": int(num_samples),
        "num_chains": int(num_chains),
        "target_accept_prob": float(target_accept_prob),
        "max_tree_depth": int(max_tree_depth),
        "chain_method": chain_method,
        "num_workers": int(workers),
        "wall_time_s": total_time,
        "warmup_time_s": warmup_time,
        "sampling_time_s": sampling_time,
        "num_gradients": float(np.sum(stats["n_steps"])),
        "time_per_gradient_s": sampling_time / max(lockstep_grads, 1.0),
        "mean_tree_depth": float(np.mean(stats["tree_depth"])),
        "num_divergent": int(np.sum(stats["diverging"])),
        "rhat_max": summary["rhat_max"],
        "ess_min": summary["ess_min"],
        "time_per_effective_sample_s": sampling_time / max(summary["ess_min"], 1e-12),
    }
    return baseline_inference_data(preset, theta, kappa, shear_obs, stats, attrs, truth, mask)


def _run_nuts(
    keys, num_chains, progress_bar, *, model, kernel_kwargs, num_warmup, num_samples,
    chain_method, model_kwargs, init=None,
) -> dict:  # fmt: skip
    """One NumPyro MCMC run: draws, sample stats (numpy), its sampling time and gradients.

    The chains start where NumPyro's model initialisation would put them, computed in one
    compiled program (`model_init`), or at `init` (their `ParamInfo`, batched like the keys)
    where given, and NUTS runs on the model's potential.
    """
    kernel_kwargs = dict(kernel_kwargs)
    init_strategy = kernel_kwargs.pop("init_strategy")
    run_keys, init_keys = chain_keys(keys, num_chains)
    if init is None:
        init = initial_params(init_keys, model, model_kwargs, init_strategy)
    kernel = NUTS(potential_fn=model_potential(model, model_kwargs), **kernel_kwargs)
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=progress_bar,
    )
    extra = tuple(EXTRA_FIELDS)
    mcmc.warmup(run_keys, init_params=init, extra_fields=extra, collect_warmup=False)
    jax.block_until_ready(mcmc.post_warmup_state)
    start = time.perf_counter()
    mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=extra)
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)
    sampling_time = time.perf_counter() - start
    samples = constrained_sites(model, model_kwargs, samples, ("theta", "kappa"))
    fields = mcmc.get_extra_fields(group_by_chain=True)
    stats, lockstep = sample_stats(fields, chain_method)
    return {
        "theta": samples["theta"],
        "kappa": samples["kappa"],
        "stats": stats,
        "sampling_time": sampling_time,
        "lockstep_grads": float(lockstep),
    }


def baseline_inference_data(preset, theta, kappa, shear_obs, stats, attrs, truth, mask):
    """InferenceData of an MCMC baseline (the mask, if any, is stored with the truth)."""
    truth = dict(truth or {})
    if mask is not None:
        truth["mask"] = broadcast_mask(mask, preset.shear_shape)
    return to_inference_data(
        theta,
        kappa,
        param_names=preset.param_names,
        shear_obs=shear_obs,
        sample_stats=stats,
        attrs=attrs,
        truth=truth or None,
    )
