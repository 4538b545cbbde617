"""The main job: simulate an observation, sample its joint posterior four ways, compare.

1. Simulate an LSST-Y10-like shear observation at the fiducial cosmology (log-normal simulator).
2. Sample p(theta, kappa | shear) with the diffusion posterior sampler and with the BlackJAX
   annealed-Langevin sampler, both on the shipped diffusion prior, and with the amortised
   sampler on the shipped conditional model (where one ships for the preset).
3. Run the NumPyro NUTS field-level baseline on the explicit log-normal model.
4. Write InferenceData (netCDF), PNG figures and a markdown report to `out_dir`.
"""

from __future__ import annotations

import os
import time
import warnings

import jax

from numpyro_diffprior.demo_samplers import (
    FULL,
    QUICK,
    DemoSettings,
    amortized_chunk_size,
    amortized_sampler,
    diffusion_chunk_size,
    diffusion_guidance,
    diffusion_sampler,
    langevin_sampler,
    nuts_reference,
    shipped_amortized,
)
from numpyro_diffprior.presets import get_preset

__all__ = [
    "DemoSettings",
    "run_demo",
    "diffusion_sampler",
    "diffusion_guidance",
    "langevin_sampler",
    "nuts_reference",
    "amortized_sampler",
    "diffusion_chunk_size",
    "amortized_chunk_size",
    "QUICK",
    "FULL",
]


def _log(msg):
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_demo(
    out_dir="results",
    *,
    preset="lsst-y10-coarse",
    checkpoint=None,
    amortized_checkpoint=None,
    seed=0,
    settings: dict | None = None,
    progress_bar=True,
) -> dict:
    """Run the whole demo and return {"report": path, "timings": {...}, "idata": {...}}.

    checkpoint: a checkpoint directory (default: the model shipped for `preset`).
    amortized_checkpoint: a conditional checkpoint directory (default: the conditional model
    shipped for `preset`; where none ships, the amortised run is skipped with a message).
    settings: overrides of `FULL` (see `QUICK` for a smoke-test configuration).
    """
    from numpyro_diffprior.checkpoints import load_checkpoint, load_pretrained
    from numpyro_diffprior.diagnostics.report import write_report
    from numpyro_diffprior.infer.inference_data import save_inference_data
    from numpyro_diffprior.observations import save_observation, simulate_observation
    from numpyro_diffprior.prior import DiffusionPrior
    from numpyro_diffprior.strict_json import dump_json

    s = DemoSettings({**FULL, **(settings or {})})
    preset = get_preset(preset)
    os.makedirs(out_dir, exist_ok=True)
    key_obs, key_diff, key_lang, key_nuts = jax.random.split(jax.random.key(seed), 4)
    key_amortized = jax.random.fold_in(key_obs, 1)
    timings = {}

    _log(f"loading the diffusion prior for {preset.name}")
    with warnings.catch_warnings():  # the report states the prior's shift model
        warnings.simplefilter("ignore", UserWarning)
        ckpt = load_pretrained(preset.name) if checkpoint is None else load_checkpoint(checkpoint)
    if not ckpt.preset.same_spectra(preset):
        raise ValueError(f"checkpoint is for preset {ckpt.preset.name!r}, not {preset.name!r}")
    prior = DiffusionPrior.from_checkpoint(ckpt)
    # observation and NUTS use the maps the prior was trained on (its shift model)
    preset = ckpt.preset

    _log("simulating an observation at the fiducial cosmology")
    obs = simulate_observation(key_obs, preset, theta="fiducial")
    save_observation(
        os.path.join(out_dir, "observation.npz"),
        obs["shear"],
        preset=preset,
        noise_std=obs["noise_std"],
        theta_true=obs["theta_true"],
        kappa_true=obs["kappa_true"],
    )
    truth = {"theta": obs["theta_true"], "kappa": obs["kappa_true"]}
    idatas = {}

    _log(
        f"diffusion posterior sampler ({s.diffusion_guidance} guidance, {s.diffusion_sampler}, "
        f"{s.diffusion_steps} steps x {1 + s.diffusion_corrector_steps}, {s.diffusion_draws} draws)"
    )
    t0 = time.perf_counter()
    sampler = diffusion_sampler(s, progress_bar=progress_bar)
    sampler.run(key_diff, prior=prior, shear_obs=obs["shear"])
    idatas["diffusion"] = sampler.to_inference_data(truth=truth)
    timings["diffusion_s"] = time.perf_counter() - t0

    _log(f"annealed Langevin (BlackJAX, {s.langevin_levels} levels)")
    t0 = time.perf_counter()
    langevin = langevin_sampler(s, progress_bar=progress_bar)
    langevin.run(key_lang, prior=prior, shear_obs=obs["shear"])
    idatas["langevin"] = langevin.to_inference_data(truth=truth)
    timings["langevin_s"] = time.perf_counter() - t0

    amortized, why_not = shipped_amortized(preset, amortized_checkpoint)
    if amortized is None:
        _log(f"amortised sampler skipped: {why_not}")
    else:
        from numpyro_diffprior.infer.amortized import SOLVER_NAMES

        solver = SOLVER_NAMES[s.amortized_solver]
        _log(f"amortised sampler ({s.amortized_steps} {solver} steps, {s.amortized_draws} draws)")
        t0 = time.perf_counter()
        runner = amortized_sampler(s, progress_bar=progress_bar)
        runner.run(key_amortized, prior=amortized, shear_obs=obs["shear"],
                   noise_std=obs["noise_std"])  # fmt: skip
        idatas["amortized"] = runner.to_inference_data(truth=truth)
        timings["amortized_s"] = time.perf_counter() - t0

    _log(f"NUTS field-level baseline ({s.nuts_chains} chains x {s.nuts_samples} draws)")
    t0 = time.perf_counter()
    idatas["nuts"] = nuts_reference(
        key_nuts, preset, obs, s, truth=truth, progress_bar=progress_bar
    )
    timings["nuts_s"] = time.perf_counter() - t0

    for name, idata in idatas.items():
        save_inference_data(idata, os.path.join(out_dir, f"idata_{name}.nc"))
    _log("writing the report and figures")
    report = write_report(out_dir, idatas, truth=truth, preset=preset, reference="nuts")
    with open(os.path.join(out_dir, "timings.json"), "w") as fh:
        dump_json({**timings, "settings": dict(s)}, fh, indent=2)
    _log(f"done: {report}")
    return {"report": report, "timings": timings, "idata": idatas}
