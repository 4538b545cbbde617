"""Calibration of an amortised (conditional) model: TARP and MIRA over K simulated observations,
sampled `obs_per_batch` observations per batched call.

`run_amortized_calibration` is `diagnostics.calibrate.run_calibration` for an
`amortized.AmortizedPrior`, with two differences:

- observations: the truths are drawn as there (theta from the prior in the emulator box, maps
  from the preset's simulator; or from `model`), but each observation gets its own mask and
  per-bin noise level from the model's training family (its `observation_range`: mask kinds,
  maximum masked fraction, noise range), drawn by the training code itself
  (`amortized.simulate.draw_observations`), without the no-data examples (`uncond_prob` set
  to 0: a calibration of the posterior, not of the prior). The calibration then covers what
  the model claims to serve, not one fixed mask and noise level;
- sampling: `infer.amortized_chunks.sample_with_keys_chunked` per batch of `obs_per_batch`
  observations (the last batch padded, so the run compiles once): on a CPU the batch's draws
  run `chunk_size` at a time, side by side in threads (4x faster than one vmapped program of
  800 maps); on an accelerator as one vmapped program (`infer.amortized.sample_with_keys`).

Observation k uses the k-th split of `rng_key` for its truth, mask, noise and draws, so its
result does not depend on `obs_per_batch` and a resumed run equals an uninterrupted one. The
command is `numpyro-diffprior calibrate --method amortized` (`commands.calibrate`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from numpyro_diffprior.atomic import Autosave, atomic_savez
from numpyro_diffprior.diagnostics.calibrate import _key_bytes

__all__ = ["run_amortized_calibration"]

_FIELDS = ("theta_samples", "kappa_samples", "theta_true", "kappa_true", "mask", "noise_std")


def run_amortized_calibration(
    rng_key,
    prior,
    num_obs: int,
    *,
    num_draws: int,
    obs_per_batch: int = 8,
    chunk_size="auto",
    num_threads="auto",
    observation_range=None,
    preset=None,
    emulator=None,
    model=None,
    progress: bool = True,
    seed: int = 0,
    progress_file=None,
    run_label: str = "",
    save_every_s: float = 60.0,
    **settings,
) -> dict:
    """Simulate `num_obs` observations from the training family of `prior` (an
    `AmortizedPrior`), draw `num_draws` posterior samples of each with `sample_with_keys` in
    batches of `obs_per_batch`, and score TARP and MIRA (module docstring). chunk_size,
    num_threads: as in `sample_with_keys_chunked` ("auto": 5 draws per program and one thread
    per core on a CPU; each batch as one program on an accelerator); the draws do not depend
    on them beyond float rounding.

    observation_range: the family of masks and noise levels (default `prior.observation_range`;
    one is needed). preset: the simulator's preset (default `prior.preset`). emulator, model:
    as in `run_calibration` (truths from `model`'s "theta" and "kappa" sites, which must have
    `lensing_model`'s signature; it gets `preset`, which may then be None). settings:
    `infer.amortized.AMORTIZED_DEFAULTS` keys (sampler, num_steps, sigma_min, sigma_max, rho).

    With `progress_file` (an .npz path) the results so far are saved atomically when at least
    `save_every_s` seconds have passed since the last save (0: after every batch), and when the
    run ends or stops on an error or an interrupt; a rerun with the same key, prior preset,
    `num_obs`, `num_draws`, settings, observation range and `run_label` resumes after the last
    finished observation (with any `obs_per_batch`); a file written for another run is a
    ValueError.

    Returns the dict of `run_calibration` ("theta_samples" (K, M, P), "kappa_samples"
    (K, M, C, N, N), "theta_true", "kappa_true", "summary", "wall_time_s") plus, per
    observation, "mask" (K, N, N) (True = observed), "masked_fraction" (K,), "noise_std"
    (K, C) (pixel noise per bin) and "noise_factor" (K,) (noise_std / the preset's pixel noise).
    """
    from numpyro_diffprior.amortized.prior import AmortizedPrior
    from numpyro_diffprior.diagnostics.calibration import calibration_summary
    from numpyro_diffprior.infer.amortized import AMORTIZED_DEFAULTS
    from numpyro_diffprior.infer.amortized_chunks import (
        resolve_chunk_size,
        sample_with_keys_chunked,
    )
    from numpyro_diffprior.presets import get_preset
    from numpyro_diffprior.runtime.processes import resolve_num_workers

    if not isinstance(prior, AmortizedPrior):
        raise ValueError(
            f"amortised calibration needs an AmortizedPrior (a conditional model), got a "
            f"{type(prior).__name__}; use run_calibration for a joint prior"
        )
    if num_obs < 2 or obs_per_batch < 1 or num_draws < 2:
        raise ValueError(
            f"need num_obs >= 2, obs_per_batch >= 1, num_draws >= 2; got {num_obs}, "
            f"{obs_per_batch}, {num_draws}"
        )
    chunk = resolve_chunk_size(chunk_size)
    resolve_num_workers(num_threads, 1)  # a bad value fails here, before any work
    unknown = sorted(set(settings) - set(AMORTIZED_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown sampler settings {unknown}; known: {list(AMORTIZED_DEFAULTS)}")
    obs_range = _training_family(prior, observation_range)
    preset = preset if preset is not None else prior.preset
    preset = None if preset is None else get_preset(preset)
    if preset is None and model is None:
        raise ValueError("the prior names no preset: pass preset= (or a model= to draw truths)")
    if preset is not None and (preset.map_shape, preset.n_params) != (
        tuple(prior.map_shape),
        prior.n_params,
    ):
        raise ValueError(
            f"preset {preset.name!r} simulates maps {preset.map_shape} and {preset.n_params} "
            f"parameters; the prior has {tuple(prior.map_shape)} and {prior.n_params}"
        )
    if emulator is None and model is None:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        emulator = load_emulator(preset)
    simulate = _simulator(preset, model, obs_range)
    start = time.perf_counter()
    sampling = {**AMORTIZED_DEFAULTS, **settings}
    run_id = {
        "preset": "none" if preset is None else preset.name,
        "num_obs": int(num_obs),
        "num_draws": int(num_draws),
        "key": _key_bytes(rng_key),
        "settings": json.dumps(sampling, sort_keys=True),
        "observation_range": json.dumps(obs_range.to_dict(), sort_keys=True),
        "run_label": str(run_label),
        "truths": "prior in the emulator box" if emulator is not None else "model prior",
    }
    done, elapsed = _load_progress(progress_file, run_id)
    keys = jax.random.split(rng_key, num_obs)
    batch = min(int(obs_per_batch), num_obs)

    def save():
        _save_progress(progress_file, run_id, done, elapsed + time.perf_counter() - start)

    autosave = Autosave(save if progress_file is not None else None, save_every_s, len(done))
    bar = tqdm(total=num_obs, initial=len(done), desc="calibration", disable=not progress)
    try:
        while len(done) < num_obs:
            first = len(done)
            count = min(batch, num_obs - first)
            idx = np.minimum(np.arange(first, first + batch), num_obs - 1)  # pad with the last
            pairs = _split2(keys[idx])
            theta_t, kappa_t, obs = simulate(pairs[:, 0], emulator)
            draws = sample_with_keys_chunked(pairs[:, 1], prior, obs, num_draws,
                                             chunk_size=chunk, num_threads=num_threads,
                                             **settings)  # fmt: skip
            theta_s, kappa_s = prior.unpack(draws)
            std = np.asarray(obs.noise_std)
            new = (theta_s, kappa_s, theta_t, kappa_t, np.isfinite(std[:, :, 0]).all(1),
                   np.min(std, axis=(2, 3, 4)))  # fmt: skip
            done.extend(list(zip(*(np.asarray(a)[:count] for a in new), strict=True)))
            autosave(len(done))
            bar.update(count)
    finally:
        autosave(len(done), final=True)  # the end, an error, a ^C
    bar.close()
    out = {f: np.stack([row[i] for row in done]) for i, f in enumerate(_FIELDS)}
    out["kappa_samples"] = out["kappa_samples"].astype(np.float32)
    out["masked_fraction"] = 1.0 - out["mask"].mean(axis=(1, 2))
    out["noise_factor"] = out["noise_std"][:, 0] / obs_range.reference_noise[0]
    out["summary"] = calibration_summary(
        seed, out["theta_samples"], out["kappa_samples"], out["theta_true"], out["kappa_true"]
    )
    out["wall_time_s"] = elapsed + time.perf_counter() - start
    return out


def _training_family(prior, observation_range):
    """The prior's `ObservationRange` (or the one given), without the no-data examples."""
    obs_range = observation_range if observation_range is not None else prior.observation_range
    if obs_range is None:
        raise ValueError(
            "the amortised prior records no observation_range (the family of masks and noise "
            "levels it was trained on); pass observation_range="
        )
    if len(obs_range.reference_noise) != prior.map_shape[0]:
        raise ValueError(
            f"observation_range has {len(obs_range.reference_noise)} noise level(s); the prior "
            f"has {prior.map_shape[0]} tomographic bins"
        )
    return dataclasses.replace(obs_range, uncond_prob=0.0)


def _split2(keys):
    """(B, 2) keys: each observation's key split into (simulation, posterior draws)."""
    return jax.vmap(lambda k: jax.random.split(k, 2))(keys)


def _simulator(preset, model, obs_range):
    """jitted (keys (B,), emulator) -> (theta (B, P), kappa (B, C, N, N), ShearObservation)."""
    from numpyro import handlers

    from numpyro_diffprior.amortized.simulate import draw_observations
    from numpyro_diffprior.simulator import sample_prior_in_box

    if model is None:
        from numpyro_diffprior.simulator.model import lensing_model as model

    def one(key, emulator):
        k_truth, k_obs = jax.random.split(key)
        values = {}
        if emulator is not None:  # as run_calibration: theta in the emulator's box
            k_truth, k_theta = jax.random.split(k_truth)
            bounds = jax.numpy.asarray(emulator.bounds)
            theta = sample_prior_in_box(k_theta, preset.param_names, bounds)
            values = {name: theta[i] for i, name in enumerate(preset.param_names)}
        seeded = handlers.seed(handlers.condition(model, data=values), k_truth)
        trace = handlers.trace(seeded).get_trace(
            preset=preset, shear_obs=None, mask=None, noise_std=None, emulator=emulator
        )
        kappa = trace["kappa"]["value"]
        obs = draw_observations(k_obs, kappa[None], obs_range)  # the training draw, batch of 1
        return trace["theta"]["value"], kappa, jax.tree.map(lambda a: a[0], obs)

    return jax.jit(jax.vmap(one, in_axes=(0, None)))


def _load_progress(path, run_id) -> tuple[list, float]:
    """([(one row per field), ...] per finished observation, seconds spent), or ([], 0)."""
    if path is None or not os.path.exists(path):
        return [], 0.0
    with np.load(path) as old:
        found = {k: old[k].item() if k in old.files else None for k in run_id}
        if found != run_id:
            differ = sorted(k for k in run_id if found[k] != run_id[k])
            raise ValueError(
                f"progress file {path} was written for another amortised calibration run "
                f"(it differs in {', '.join(differ)}); remove it or write elsewhere"
            )
        rows = list(zip(*(old[f] for f in _FIELDS), strict=True))
        return rows, float(old["wall_time_s"])


def _save_progress(path, run_id, rows, wall_time_s) -> None:
    arrays = {f: np.stack([row[i] for row in rows]) for i, f in enumerate(_FIELDS)}
    arrays["kappa_samples"] = arrays["kappa_samples"].astype(np.float32)
    atomic_savez(path, wall_time_s=wall_time_s, **arrays, **run_id)
