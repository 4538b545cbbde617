"""Diffusion posterior sampling of a user's NumPyro model with a `DiffusionPrior` site.

The posterior score at noise level sigma is the prior score plus a likelihood guidance term
(`infer.guidance`, built from the model by `make_guidance`); equivalently a posterior denoiser
D_post = D + sigma^2 guidance drives the reverse process of Karras et al. (2022)
(`infer.reverse.guided_reverse_diffusion`: Heun ODE or Euler-Maruyama SDE, optional Langevin
correctors).

Draws are i.i.d.; `infer.runner` produces them in jitted chunks and converts them to
InferenceData.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_diffprior.diffusion.samplers import sample_theta_given_kappa
from numpyro_diffprior.infer.guidance import (
    annealed_guidance,
    clip_guidance,
    dps_guidance,
    mmps_guidance,
    normalised_observation,
)
from numpyro_diffprior.infer.model_tracing import linear_gaussian, make_log_likelihood
from numpyro_diffprior.infer.noncentred import (
    Whitening,
    identity_whitening,
    noncentred_hmc,
    spectral_whitening,
)
from numpyro_diffprior.infer.reverse import guided_reverse_diffusion
from numpyro_diffprior.infer.runner import GUIDANCE, _ModelSampler

__all__ = [
    "DiffusionPosteriorSampler",
    "guided_reverse_diffusion",
    "make_guidance",
    "GUIDANCE",
    "EXACT_SETTINGS",
]
MMPS_COVARIANCE = ("joint", "kappa", "cross")
# Settings under which MMPS is exact for a Gaussian prior (the oracle tests and tables of
# docs/sampling.md); the class defaults are the ones measured to match NUTS with trained networks.
EXACT_SETTINGS = dict(
    sampler="ode", sigma_max=80.0, mmps_covariance="joint", guidance_clip=None, cg_maxiter=10
)


def make_guidance(guidance, model, info, model_kwargs, *, dps_scale=1.0, cg_maxiter=10,
                  mmps_covariance="joint", clip=None):  # fmt: skip
    """(guidance(x_n (B, D), sigma (B,)) score term, correction or None) for a traced model.

    clip: if set, the score term is bounded by `guidance.clip_guidance(., clip)`."""
    score, correction = _make_guidance(
        guidance, model, info, model_kwargs, dps_scale=dps_scale, cg_maxiter=cg_maxiter,
        mmps_covariance=mmps_covariance,
    )  # fmt: skip
    return (score if clip is None else clip_guidance(score, clip)), correction


def _make_guidance(guidance, model, info, model_kwargs, *, dps_scale, cg_maxiter,
                   mmps_covariance):  # fmt: skip
    prior = info.prior
    if guidance == "dps":
        zero = lambda x, sigma: jnp.zeros_like(x)
        try:
            lg = linear_gaussian(model, info, model_kwargs, check=False)
        except ValueError:
            log_lik = make_log_likelihood(model, info, model_kwargs)
            log_lik_n = lambda x_n: log_lik(prior.from_normalized(x_n))
            correction = dps_guidance(
                prior.denoise_normalized, log_likelihood_n=log_lik_n, scale=dps_scale
            )
            return zero, correction

        def residual_norm_n(x_n):
            resid = lg.y - lg.loc_fn(prior.from_normalized(x_n))
            return jnp.sqrt(jnp.sum(lg.precision * resid**2) + 1e-12)

        return zero, dps_guidance(prior.denoise_normalized, residual_norm_n, scale=dps_scale)
    if guidance not in GUIDANCE:
        raise ValueError(f"unknown guidance {guidance!r}; valid: {', '.join(GUIDANCE)}")
    lg = linear_gaussian(model, info, model_kwargs, check=False)
    obs = normalised_observation(prior, lg, row_norms=guidance == "annealed")
    if guidance == "annealed":
        return annealed_guidance(obs), None
    return mmps_guidance(
        prior.denoise_normalized, obs, cg_maxiter=cg_maxiter, covariance=mmps_covariance,
        n_params=prior.n_params,
    ), None  # fmt: skip


class DiffusionPosteriorSampler(_ModelSampler):
    """Guided reverse diffusion for a NumPyro model with one DiffusionPrior site.

    guidance: "annealed" (Remy et al. 2023), "dps" (Chung et al. 2023) or "mmps" (Rozet et al.
    2024; exact for Gaussian priors). Denoiser calls per draw: (2 num_steps - 1) x
    (1 + num_corrector_steps) (num_steps with sampler="sde"); DPS adds one vjp per call, MMPS
    one linearisation, up to cg_maxiter jvps and one vjp per call.

    The defaults (MMPS on the reverse SDE from sigma_max 5, mmps_covariance="kappa", 3 CG
    iterations, guidance_clip=2) are measured against NUTS with the shipped network and
    calibrated over 200 observations (docs/sampling.md, docs/validation.md). mmps_covariance:
    "joint" uses the whole Tweedie covariance (exact for a Gaussian prior, but with a trained
    network the vjp through the theta inputs destabilises theta); "kappa" keeps its kappa block
    (the shear likelihood sees kappa alone) and leaves theta unguided, which shrinks theta
    towards the prior mean for observations far from it; "cross" solves with the kappa block and
    guides theta through the theta-kappa cross block by one more jvp (`guidance.mmps_guidance`;
    equal to "joint" for a symmetric Jacobian, so exact on the Gaussian oracle where "kappa" is
    not, but not measurably better than "kappa" with the shipped network). guidance_clip bounds
    each draw's guidance (`infer.guidance.clip_guidance`) against a single-step Jacobian
    blow-up. For exact (oracle) denoisers `EXACT_SETTINGS` (Heun ODE, joint covariance, no clip)
    make MMPS exact for a Gaussian prior.

    theta_refresh_steps > 0 ends each draw with a Gibbs step theta ~ p(theta | kappa) of the
    prior (`diffusion.samplers.sample_theta_given_kappa`, 2 theta_refresh_steps - 1 more
    denoiser calls): exact because the likelihood sees kappa only, and it makes theta agree with
    the drawn map (docs/sampling.md: with the shipped model it moves sigma_8 onto NUTS).

    noncentred_steps > 0 refines each draw by that many unadjusted HMC trajectories of
    noncentred_leapfrog steps (size noncentred_step_size) on p_sigma(x) p(y | x) at
    sigma = noncentred_sigma, in non-centred coordinates (`infer.noncentred`; one denoiser call
    per leapfrog step). With an exact score it removes MMPS' shrinkage of theta towards the
    prior mean far from it; with the shipped network the chain is unstable (docs/sampling.md),
    hence off by default.
    whitening: "spectral" (the preset's theory spectrum; the default for priors with a preset),
    "identity", or an `infer.noncentred.Whitening`.
    num_workers: processes that compute the chunks of draws (1: this one; "auto": one per CPU
    core; `infer.runner`).
    """

    method = "diffusion"

    def __init__(
        self,
        model,
        *,
        guidance="mmps",
        num_steps=64,
        sigma_min=0.002,
        sigma_max=5.0,
        rho=7.0,
        sampler="sde",
        num_corrector_steps=0,
        corrector_step_size=0.1,
        dps_scale=1.0,
        cg_maxiter=3,
        mmps_covariance="kappa",
        guidance_clip=2.0,
        theta_refresh_steps=0,
        noncentred_steps=0,
        noncentred_leapfrog=16,
        noncentred_step_size=0.05,
        noncentred_sigma=0.02,
        whitening=None,
        chunk_size=256,
        num_chains=4,
        progress_bar=True,
        shard=False,
        num_workers=1,
    ):
        if sampler not in ("ode", "sde"):
            raise ValueError(f"sampler must be 'ode' or 'sde', got {sampler!r}")
        self.num_steps, self.sigma_min, self.sigma_max, self.rho = (
            num_steps,
            sigma_min,
            sigma_max,
            rho,
        )
        self.sampler, self.num_corrector_steps = sampler, num_corrector_steps
        self.corrector_step_size, self.dps_scale, self.cg_maxiter = (
            corrector_step_size,
            dps_scale,
            cg_maxiter,
        )
        if mmps_covariance not in MMPS_COVARIANCE:
            raise ValueError(
                f"mmps_covariance must be one of {MMPS_COVARIANCE}, got {mmps_covariance!r}"
            )
        if guidance_clip is not None and not guidance_clip > 0:
            raise ValueError(f"guidance_clip must be > 0 or None, got {guidance_clip}")
        self.mmps_covariance, self.guidance_clip = mmps_covariance, guidance_clip
        if theta_refresh_steps < 0:
            raise ValueError(f"theta_refresh_steps must be >= 0, got {theta_refresh_steps}")
        self.theta_refresh_steps = int(theta_refresh_steps)
        if noncentred_steps < 0 or noncentred_leapfrog < 1:
            raise ValueError(
                f"noncentred_steps must be >= 0 and noncentred_leapfrog >= 1, got "
                f"{noncentred_steps} and {noncentred_leapfrog}"
            )
        if not (noncentred_step_size > 0 and noncentred_sigma > 0):
            raise ValueError("noncentred_step_size and noncentred_sigma must be > 0")
        if not (whitening is None or whitening in ("spectral", "identity")
                or isinstance(whitening, Whitening)):  # fmt: skip
            raise ValueError(
                f"whitening must be 'spectral', 'identity' or a Whitening, got {whitening!r}"
            )
        self.noncentred_steps, self.noncentred_leapfrog = int(noncentred_steps), noncentred_leapfrog
        self.noncentred_step_size, self.noncentred_sigma = noncentred_step_size, noncentred_sigma
        self.whitening = whitening
        super().__init__(
            model,
            guidance=guidance,
            chunk_size=chunk_size,
            num_chains=num_chains,
            progress_bar=progress_bar,
            shard=shard,
            num_workers=num_workers,
        )

    def settings(self) -> dict:
        steps = 2 * self.num_steps - 1 if self.sampler == "ode" else self.num_steps
        calls = steps * (1 + self.num_corrector_steps)
        if self.theta_refresh_steps:
            calls += 2 * self.theta_refresh_steps - 1
        calls += self.noncentred_steps * self.noncentred_leapfrog
        return {
            "sampler": self.sampler,
            "num_steps": self.num_steps,
            "num_corrector_steps": self.num_corrector_steps,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "theta_refresh_steps": self.theta_refresh_steps,
            "mmps_covariance": self.mmps_covariance,
            "guidance_clip": "none" if self.guidance_clip is None else float(self.guidance_clip),
            "noncentred_steps": self.noncentred_steps,
            "noncentred_leapfrog": self.noncentred_leapfrog,
            "noncentred_step_size": float(self.noncentred_step_size),
            "noncentred_sigma": float(self.noncentred_sigma),
            "denoiser_calls_per_draw": calls,
        }

    def _draw(self, rng_key, model, info, model_kwargs, num):
        prior = info.prior
        guidance, correction = make_guidance(
            self.guidance,
            model,
            info,
            model_kwargs,
            dps_scale=self.dps_scale,
            cg_maxiter=self.cg_maxiter,
            mmps_covariance=self.mmps_covariance,
            clip=self.guidance_clip,
        )
        x_n = guided_reverse_diffusion(
            rng_key,
            prior.denoise_normalized,
            guidance,
            num,
            prior.dim,
            num_steps=self.num_steps,
            sigma_min=self.sigma_min,
            sigma_max=self.sigma_max,
            rho=self.rho,
            sampler=self.sampler,
            num_corrector_steps=self.num_corrector_steps,
            corrector_step_size=self.corrector_step_size,
            correction_fn=correction,
            x_init=self._initial(jax.random.fold_in(rng_key, 7), num, prior.dim, self.sigma_max),
        )
        if self.theta_refresh_steps:
            x_n = sample_theta_given_kappa(
                jax.random.fold_in(rng_key, 8),
                prior.denoise_normalized,
                x_n,
                prior.n_params,
                num_steps=self.theta_refresh_steps,
            )
        if self.noncentred_steps:
            log_lik = make_log_likelihood(model, info, model_kwargs)
            x_n = noncentred_hmc(
                jax.random.fold_in(rng_key, 9),
                x_n,
                score_fn=prior.score_normalized,
                log_likelihood_n=lambda v: log_lik(prior.from_normalized(v)),
                whitening=self._whitening(prior),
                n_params=prior.n_params,
                sigma=self.noncentred_sigma,
                num_iterations=self.noncentred_steps,
                num_leapfrog=self.noncentred_leapfrog,
                step_size=self.noncentred_step_size,
            )
        return x_n, {}

    def _whitening(self, prior) -> Whitening:
        if isinstance(self.whitening, Whitening):
            return self.whitening
        if self.whitening == "identity" or (self.whitening is None and prior.preset is None):
            return identity_whitening()
        return spectral_whitening(prior)
