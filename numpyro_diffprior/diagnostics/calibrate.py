"""Calibration runs: TARP and MIRA over K simulated observations with known truth.

`run_calibration` simulates K observations (theta from the prior) with `lensing_model`, runs any
`sampler_fn(rng_key, observation) -> (theta_draws (M, P), kappa_draws (M, C, N, N))` on each and
scores the draws with `diagnostics.calibration.calibration_summary`. Built-in samplers
(`diagnostics.calibration_samplers`): "diffusion" (`infer.posterior.DiffusionPosteriorSampler`)
and "langevin" (`infer.langevin.AnnealedLangevinSampler`) on `infer.models.shear_model` with the
trained prior, and "nuts" (`infer.nuts.nuts_baseline` on the explicit model; recompiles per
observation).
With `num_workers > 1` the observations are sampled in that many spawned processes
(`runtime.processes.imap_in_processes`), and with `scheduler` on a Dask cluster
(`runtime.executors`); `calibration_samplers.LazySamplerFn` makes a picklable sampler_fn that
each worker builds once. The command is `numpyro-diffprior calibrate`
(`commands.calibrate`).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from numpyro_diffprior.atomic import Autosave, atomic_savez
from numpyro_diffprior.runtime.executors import check_scheduler, resolve_executor
from numpyro_diffprior.runtime.processes import keys_from_numpy, keys_to_numpy

__all__ = ["run_calibration"]


def run_calibration(
    rng_key,
    preset,
    sampler_fn,
    num_obs: int,
    *,
    mask=None,
    noise_std=None,
    emulator=None,
    model=None,
    progress: bool = True,
    seed: int = 0,
    progress_file=None,
    run_label: str = "",
    num_workers=1,
    scheduler=None,
    save_every_s: float = 60.0,
) -> dict:
    """Simulate `num_obs` observations, sample each posterior, score TARP and MIRA.

    Truths come from the prior restricted to the emulator's box
    (`simulator.sample_prior_in_box`, as for the training data: outside it the tabulated
    spectra are extrapolated); with `model` and no `emulator`, from the model's own prior.

    With `progress_file` (an .npz path) the draws so far are saved atomically when at least
    `save_every_s` seconds have passed since the last save (0: after every observation), and
    when the run ends or stops on an error or an interrupt; a rerun with the same key, preset,
    `num_obs` and `run_label` (say, the sampler's settings) resumes after the last finished one.
    Observation k always uses the k-th split of `rng_key`, so a resumed run equals an
    uninterrupted one. A file written for another run is a ValueError.

    `num_workers` > 1 (or "auto": one per CPU core on a CPU, 1 on an accelerator) samples the
    observations in that many spawned processes, one XLA thread each; the observations are
    simulated here first, results are saved in order as they come, and `sampler_fn` must be
    picklable (`LazySamplerFn`). The draws equal a one-process run's up to floating-point
    reordering (they are identical for a sampler that does not use XLA's threads).

    `scheduler` runs the observations' sampling on Dask instead (`runtime.executors`): "local"
    starts a `LocalCluster` for the run (`num_workers` processes; "auto", None or 1: one per
    core), an address ("tcp://host:8786") or a `distributed.Client` uses a running cluster.
    Observation k gets the same key as in one process, so the results are the same.

    Returns {"theta_samples" (K, M, P), "kappa_samples" (K, M, C, N, N), "theta_true" (K, P),
    "kappa_true" (K, C, N, N), "summary" (calibration_summary output), "wall_time_s"}.
    """
    from numpyro_diffprior.diagnostics.calibration import calibration_summary
    from numpyro_diffprior.observations import draw_observation, finish_observation
    from numpyro_diffprior.presets import get_preset

    preset = get_preset(preset)
    check_scheduler(scheduler)
    if num_obs < 2:
        raise ValueError(f"num_obs must be >= 2, got {num_obs}")
    if emulator is None and model is None:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        emulator = load_emulator(preset)

    def draw(key, emulator):
        theta = None
        if emulator is not None:
            from numpyro_diffprior.simulator import sample_prior_in_box

            key, k_theta = jax.random.split(key)
            bounds = jax.numpy.asarray(emulator.bounds)
            theta = sample_prior_in_box(k_theta, preset.param_names, bounds)
        return draw_observation(
            key, preset, theta=theta, mask=mask, noise_std=noise_std, emulator=emulator,
            model=model,
        )  # fmt: skip

    draw = jax.jit(draw)
    start = time.perf_counter()
    run_id = {
        "preset": preset.name,
        "num_obs": num_obs,
        "key": _key_bytes(rng_key),
        "run_label": str(run_label),
        "truths": "prior in the emulator box" if emulator is not None else "model prior",
    }
    done, elapsed = _load_progress(progress_file, run_id)
    theta_s, kappa_s, theta_t, kappa_t = (list(done.get(k, [])) for k in _FIELDS)

    def save():
        fields, spent = (theta_s, kappa_s, theta_t, kappa_t), elapsed + time.perf_counter() - start
        _save_progress(progress_file, run_id, fields, spent)

    autosave = Autosave(save if progress_file is not None else None, save_every_s, len(theta_s))
    keys = jax.random.split(rng_key, num_obs)

    def simulated():
        for key in keys[len(theta_s) :]:
            k_sim, k_post = jax.random.split(key)
            obs = finish_observation(preset, *draw(k_sim, emulator), mask=mask, noise_std=noise_std)
            yield k_post, obs

    def sampled_elsewhere(executor):
        tasks = [(*keys_to_numpy(k_post), obs) for k_post, obs in simulated()]
        sampled = executor.imap(_SampleWithKeyData(sampler_fn), tasks)
        yield from zip((obs for *_, obs in tasks), sampled, strict=True)

    executor = resolve_executor(num_workers, scheduler, num_tasks=num_obs - len(theta_s))
    if executor.backend == "in-process":
        results = ((obs, sampler_fn(k_post, obs)) for k_post, obs in simulated())
    else:
        results = sampled_elsewhere(executor)
    bar = tqdm(total=num_obs, initial=len(theta_s), desc="calibration", disable=not progress)
    try:
        for obs, (theta, kappa) in results:
            theta, kappa = np.asarray(theta), np.asarray(kappa)
            if theta.ndim != 2 or theta.shape[1] != preset.n_params:
                raise ValueError(f"sampler_fn returned theta of shape {theta.shape}; need (M, P)")
            if kappa.shape != (theta.shape[0],) + preset.map_shape:
                raise ValueError(
                    f"sampler_fn returned kappa of shape {kappa.shape}; need (M, C, N, N)"
                )
            theta_s.append(theta)
            kappa_s.append(kappa)
            theta_t.append(obs["theta_true"])
            kappa_t.append(obs["kappa_true"])
            autosave(len(kappa_t))
            bar.update()
    finally:
        autosave(len(kappa_t), final=True)  # the end, an error, a ^C
        results.close()  # stops the workers of a failed run
        executor.close()  # a cluster started for the run
    bar.close()
    out = {
        "theta_samples": np.stack(theta_s),
        "kappa_samples": np.stack(kappa_s).astype(np.float32),
        "theta_true": np.stack(theta_t),
        "kappa_true": np.stack(kappa_t),
    }
    out["summary"] = calibration_summary(
        seed, out["theta_samples"], out["kappa_samples"], out["theta_true"], out["kappa_true"]
    )
    out["wall_time_s"] = elapsed + time.perf_counter() - start
    return out


class _SampleWithKeyData:
    """Calls sampler_fn in a worker with the key rebuilt from its raw data."""

    def __init__(self, sampler_fn):
        self.sampler_fn = sampler_fn

    def __call__(self, key_data, typed, obs):
        theta, kappa = self.sampler_fn(keys_from_numpy(key_data, typed), obs)
        return np.asarray(theta), np.asarray(kappa)


_FIELDS = ("theta_samples", "kappa_samples", "theta_true", "kappa_true")


def _key_bytes(rng_key) -> str:
    return np.asarray(jax.random.key_data(rng_key)).tobytes().hex()


def _load_progress(path, run_id) -> tuple[dict, float]:
    """({field: (done, ...) array}, seconds spent) from a progress file, or ({}, 0) if none."""
    if path is None or not os.path.exists(path):
        return {}, 0.0
    with np.load(path) as old:
        found = {k: old[k].item() for k in run_id}
        if found != run_id:
            raise ValueError(
                f"progress file {path} was written for another calibration run "
                f"(preset {found['preset']!r}, num_obs {found['num_obs']}, sampler "
                f"{found['run_label']!r}, or another key); "
                "remove it or write elsewhere"
            )
        return {k: old[k] for k in _FIELDS}, float(old["wall_time_s"])


def _save_progress(path, run_id, fields, wall_time_s) -> None:
    done = min(len(f) for f in fields)  # an interrupt can fall between the appends
    arrays = dict(zip(_FIELDS, (np.stack(f[:done]) for f in fields), strict=True))
    arrays["kappa_samples"] = arrays["kappa_samples"].astype(np.float32)
    atomic_savez(path, wall_time_s=wall_time_s, **arrays, **run_id)
