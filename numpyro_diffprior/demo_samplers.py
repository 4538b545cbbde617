"""The demo's settings and its sampler factories: `FULL` (the demo), `QUICK` (a smoke test),
and the diffusion, Langevin, amortised and NUTS runs that `demo.run_demo` makes from them.
"""

from __future__ import annotations

from numpyro_diffprior.infer.algorithms import AMORTIZED_DEFAULTS, SHIPPED_NETWORK_SETTINGS
from numpyro_diffprior.runtime.processes import CPU_CHUNK_SIZE, resolve_chunk_size

__all__ = [
    "DemoSettings",
    "FULL",
    "QUICK",
    "diffusion_guidance",
    "diffusion_sampler",
    "diffusion_chunk_size",
    "amortized_chunk_size",
    "langevin_sampler",
    "amortized_sampler",
    "shipped_amortized",
    "nuts_reference",
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
    # the amortised sampler on the probability-flow ODE (AMORTIZED_DEFAULTS), its chunks
    # computed by one thread per core; "auto": chunks of 5 on a CPU, one batch on an accelerator
    amortized_draws=200,
    amortized_chunk_size="auto",
    amortized_steps=AMORTIZED_DEFAULTS["num_steps"],
    amortized_solver=AMORTIZED_DEFAULTS["sampler"],
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
        "amortized_draws": 16,
        "amortized_steps": 8,
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
    return resolve_chunk_size("diffusion_chunk_size", setting, cpu=CPU_CHUNK_SIZE, accelerator=64)


def amortized_chunk_size(setting, num_draws: int) -> int:
    """Draws per compiled amortised batch. "auto": 5 on a CPU, where 200 draws in chunks of
    4-10 computed by 2 threads cost 0.045-0.049 s each, compiled, against 0.077 s in two
    chunks of 100 (the network's activations fit the caches); on an accelerator all
    `num_draws` in one batch."""
    return resolve_chunk_size(
        "amortized_chunk_size", setting, cpu=CPU_CHUNK_SIZE, accelerator=num_draws
    )


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


def amortized_sampler(settings: dict, *, progress_bar=True):
    """The demo's amortised run: an `IIDSampler` of `amortized_draws` draws of
    `AmortizedPosteriorSampler` with `settings` (keys as in `FULL`), in chunks of
    `amortized_chunk_size` computed by one thread per CPU core side by side."""
    from numpyro_diffprior.infer.amortized import AmortizedPosteriorSampler
    from numpyro_diffprior.infer.models import shear_model
    from numpyro_diffprior.infer.runner import IIDSampler

    s = DemoSettings({**FULL, **settings})
    sampler = AmortizedPosteriorSampler(
        shear_model, sampler=s.amortized_solver, num_steps=s.amortized_steps
    )
    chunk = amortized_chunk_size(s.amortized_chunk_size, s.amortized_draws)
    return IIDSampler(sampler, s.amortized_draws, chunk_size=chunk,
                      progress_bar=progress_bar, num_threads="auto")  # fmt: skip


def shipped_amortized(preset, amortized_checkpoint):
    """The conditional model for the demo, or None (with the reason) where none ships."""
    from numpyro_diffprior.amortized.prior import AmortizedPrior

    if amortized_checkpoint is not None:
        return AmortizedPrior.load(amortized_checkpoint), ""
    try:
        return AmortizedPrior.from_pretrained(preset.name), ""
    except ValueError as err:
        return None, str(err)


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
