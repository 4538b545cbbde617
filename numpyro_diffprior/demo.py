"""The main job: simulate an observation, sample its joint posterior three ways, compare.

1. Simulate an LSST-Y10-like shear observation at the fiducial cosmology (log-normal simulator).
2. Sample p(theta, kappa | shear) with the diffusion posterior sampler and with the BlackJAX
   annealed-Langevin sampler, both on the shipped diffusion prior.
3. Run the NumPyro NUTS field-level baseline on the explicit log-normal model.
4. Write InferenceData (netCDF), PNG figures and a markdown report to `out_dir`.
"""

from __future__ import annotations

import os
import time
import warnings

import jax

from numpyro_diffprior.infer.algorithms import SHIPPED_NETWORK_SETTINGS
from numpyro_diffprior.presets import get_preset

__all__ = [
    "DemoSettings",
    "run_demo",
    "diffusion_sampler",
    "diffusion_guidance",
    "langevin_sampler",
    "nuts_reference",
    "QUICK",
    "FULL",
]


class DemoSettings(dict):
    """Sizes of the demo's runs (a plain dict with attribute access)."""

    __getattr__ = dict.__getitem__


FULL = DemoSettings(
    num_draws=32,
    # MMPS on the reverse SDE with the kappa-block Tweedie covariance and the guidance clip: the
    # settings measured against NUTS and calibrated over 200 observations (docs/validation.md).
    diffusion_draws=40,
    diffusion_guidance="mmps",
    # (`DiffusionPosteriorSampler.for_shipped_network`: `SHIPPED_NETWORK_SETTINGS`)
    diffusion_sampler=SHIPPED_NETWORK_SETTINGS["sampler"],
    diffusion_steps=SHIPPED_NETWORK_SETTINGS["num_steps"],
    diffusion_corrector_steps=0,
    diffusion_sigma_max=SHIPPED_NETWORK_SETTINGS["sigma_max"],
    diffusion_mmps_covariance=SHIPPED_NETWORK_SETTINGS["guidance"].covariance,
    diffusion_guidance_clip=SHIPPED_NETWORK_SETTINGS["guidance"].clip,
    diffusion_cg_maxiter=SHIPPED_NETWORK_SETTINGS["guidance"].cg_maxiter,
    # draws per compiled MMPS batch; "auto": 5 on a CPU, 64 on an accelerator
    diffusion_chunk_size="auto",
    # processes that compute the diffusion and Langevin draws: one per core on a CPU
    sampler_workers="auto",
    langevin_sigma_max=1.0,
    # 100 x 5 (500 denoiser calls per draw): about a third of the 40 x 4 ladder's bias
    # against NUTS on the demo observation (docs/validation.md).
    langevin_levels=100,
    langevin_steps_per_level=5,
    nuts_warmup=120,
    nuts_samples=120,
    nuts_chains=4,
    nuts_max_tree_depth=7,
    nuts_chain_method="vectorized",  # within one process (with nuts_workers 1)
    nuts_workers="auto",  # processes that run the chains: one per core on a CPU
)
QUICK = DemoSettings(
    {
        **FULL,
        "num_draws": 16,
        "diffusion_draws": 8,
        "diffusion_steps": 16,
        "diffusion_corrector_steps": 1,
        "langevin_levels": 4,
        "langevin_steps_per_level": 2,
        "nuts_warmup": 10,
        "nuts_samples": 10,
        "nuts_max_tree_depth": 3,
        "sampler_workers": 1,
    }
)


def diffusion_guidance(settings: dict):
    """The guidance object of the demo's `settings` (keys as in `FULL`)."""
    from numpyro_diffprior.infer.algorithms import DPS, MMPS, Annealed

    s = DemoSettings({**FULL, **settings})
    if s.diffusion_guidance == "mmps":
        return MMPS(
            covariance=s.diffusion_mmps_covariance,
            cg_maxiter=s.diffusion_cg_maxiter,
            clip=s.diffusion_guidance_clip,
        )
    if s.diffusion_guidance == "annealed":
        return Annealed(clip=s.diffusion_guidance_clip)
    return DPS()


def diffusion_sampler(settings: dict, *, progress_bar=True):
    """The demo's diffusion run: an `IIDSampler` of `diffusion_draws` draws of
    `DiffusionPosteriorSampler.for_shipped_network` with `settings` (keys as in `FULL`)."""
    from numpyro_diffprior.infer.models import shear_model
    from numpyro_diffprior.infer.posterior import DiffusionPosteriorSampler
    from numpyro_diffprior.infer.runner import IIDSampler

    s = DemoSettings({**FULL, **settings})
    sampler = DiffusionPosteriorSampler.for_shipped_network(
        shear_model,  # the prior goes in as a model argument: weights stay traced inputs
        guidance=diffusion_guidance(s),
        sampler=s.diffusion_sampler,
        num_steps=s.diffusion_steps,
        num_corrector_steps=s.diffusion_corrector_steps,
        sigma_max=s.diffusion_sigma_max,
    )
    return IIDSampler(
        sampler,
        s.diffusion_draws,
        chunk_size=diffusion_chunk_size(s.diffusion_chunk_size),
        progress_bar=progress_bar,
        num_workers=s.sampler_workers,
    )


def diffusion_chunk_size(setting) -> int:
    """Draws per compiled MMPS batch. "auto": 5 on a CPU, where batches of 5 draws ran 13 %
    faster than batches of 20 (40 draws in 2 workers: 186 s against 213 s; the network's
    activations fit the caches), and 64 on an accelerator, where batches fill the device."""
    if setting == "auto":
        return 5 if jax.default_backend() == "cpu" else 64
    if not isinstance(setting, int) or isinstance(setting, bool) or setting < 1:
        raise ValueError(f"diffusion_chunk_size must be a positive int or 'auto', got {setting!r}")
    return setting


def langevin_sampler(settings: dict, *, progress_bar=True):
    """The demo's Langevin run: an `IIDSampler` of `num_draws` draws of
    `AnnealedLangevinSampler` with `settings` (keys as in `FULL`)."""
    from numpyro_diffprior.infer.langevin import AnnealedLangevinSampler
    from numpyro_diffprior.infer.models import shear_model
    from numpyro_diffprior.infer.runner import IIDSampler

    s = DemoSettings({**FULL, **settings})
    sampler = AnnealedLangevinSampler(
        shear_model,
        sigma_max=s.langevin_sigma_max,
        num_levels=s.langevin_levels,
        num_steps_per_level=s.langevin_steps_per_level,
    )
    return IIDSampler(
        sampler, s.num_draws, chunk_size=128, progress_bar=progress_bar,
        num_workers=s.sampler_workers,
    )  # fmt: skip


def nuts_reference(rng_key, preset, obs: dict, settings: dict, *, truth=None, progress_bar=True):
    """The demo's NUTS baseline on `obs` (`observations.simulate_observation`'s dict) for
    `settings` (keys as in `FULL`) -> InferenceData."""
    from numpyro_diffprior.infer.nuts import nuts_baseline

    s = DemoSettings({**FULL, **settings})
    return nuts_baseline(
        rng_key,
        preset=preset,
        shear_obs=obs["shear"],
        noise_std=obs["noise_std"],
        num_warmup=s.nuts_warmup,
        num_samples=s.nuts_samples,
        num_chains=s.nuts_chains,
        max_tree_depth=s.nuts_max_tree_depth,
        chain_method=s.nuts_chain_method,
        num_workers=s.nuts_workers,
        truth=truth,
        progress_bar=progress_bar,
    )


def _log(msg):
    print(f"[demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_demo(
    out_dir="results",
    *,
    preset="lsst-y10-coarse",
    checkpoint=None,
    seed=0,
    settings: dict | None = None,
    progress_bar=True,
) -> dict:
    """Run the whole demo and return {"report": path, "timings": {...}, "idata": {...}}.

    checkpoint: a checkpoint directory (default: the model shipped for `preset`).
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
