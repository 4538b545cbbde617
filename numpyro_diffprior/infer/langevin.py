"""Annealed Langevin dynamics on BlackJAX (Song & Ermon 2019, Algorithm 1; Remy et al. 2023).

A geometric ladder sigma_max > ... > sigma_min; at each level `num_steps_per_level` unadjusted
Langevin steps x <- x + h s(x, sigma) + sqrt(2 h) z with h = step_size * sigma^2, driven by the
noisy posterior score s = prior score + annealed likelihood score (`infer.guidance`). The
stationary law at level sigma is p_sigma(x) N(y; A x, Sigma_n + sigma^2 diag(A A^T)), which tends
to the posterior as sigma -> sigma_min. Only a score is used: no Metropolis step, no fake density.

blackjax three-layer API: `init(position)`, `build_kernel(score_fn) -> kernel(rng_key, state,
sigma, step_size)`, and `as_top_level_api(score_fn, step_size) -> SamplingAlgorithm` whose
`step(rng_key, state, sigma)` uses h = step_size * sigma^2. The integrator is
`blackjax.sgmcmc.diffusions.overdamped_langevin` (the one behind `blackjax.sgld`), with sigma
passed through. Positions are (B, D) arrays: B chains run in parallel.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from blackjax.base import SamplingAlgorithm
from blackjax.sgmcmc.diffusions import overdamped_langevin

from numpyro_diffprior.infer.algorithms import LANGEVIN_DEFAULTS
from numpyro_diffprior.infer.kernel import _ModelKernel
from numpyro_diffprior.infer.legacy import guidance_from_legacy, split_run_options
from numpyro_diffprior.infer.posterior import make_guidance

__all__ = [
    "AnnealedLangevinState",
    "AnnealedLangevinInfo",
    "init",
    "build_kernel",
    "as_top_level_api",
    "sigma_ladder",
    "annealed_langevin",
    "AnnealedLangevinSampler",
]


class AnnealedLangevinState(NamedTuple):
    position: jnp.ndarray  # (B, D)


class AnnealedLangevinInfo(NamedTuple):
    sigma: jnp.ndarray
    step_size: jnp.ndarray


def init(position) -> AnnealedLangevinState:
    return AnnealedLangevinState(jnp.asarray(position))


def build_kernel(score_fn):
    """score_fn(position (B, D), sigma scalar) -> (B, D)."""
    integrator = overdamped_langevin()

    def kernel(rng_key, state: AnnealedLangevinState, sigma, step_size):
        grad = score_fn(state.position, sigma)
        position = integrator(rng_key, state.position, grad, step_size)
        return AnnealedLangevinState(position), AnnealedLangevinInfo(sigma, step_size)

    return kernel


def as_top_level_api(score_fn, step_size=0.1) -> SamplingAlgorithm:
    """Kernel with h = step_size * sigma^2 at noise level sigma."""
    kernel = build_kernel(score_fn)

    def init_fn(position, rng_key=None):
        del rng_key
        return init(position)

    def step_fn(rng_key, state, sigma):
        return kernel(rng_key, state, sigma, step_size * sigma**2)

    return SamplingAlgorithm(init_fn, step_fn)


def sigma_ladder(sigma_max, sigma_min, num_levels):
    """Geometric ladder of `num_levels` noise levels from sigma_max down to sigma_min."""
    if not 0 < sigma_min < sigma_max or num_levels < 2:
        raise ValueError("need 0 < sigma_min < sigma_max and num_levels >= 2")
    return jnp.geomspace(sigma_max, sigma_min, num_levels)


def annealed_langevin(
    rng_key, algorithm: SamplingAlgorithm, position, sigmas, num_steps_per_level, step_callback=None
):
    """Run `num_steps_per_level` kernel steps at each sigma; returns the final state.

    `step_callback(i)`, if given, is called on the host after each level (a progress bar)."""
    state = algorithm.init(position)

    def level(state, inputs):
        i, sigma = inputs

        def one(j, state):
            key = jax.random.fold_in(jax.random.fold_in(rng_key, i), j)
            return algorithm.step(key, state, sigma)[0]

        state = jax.lax.fori_loop(0, num_steps_per_level, one, state)
        if step_callback is not None:
            jax.debug.callback(step_callback, i)
        return state, None

    state, _ = jax.lax.scan(level, state, (jnp.arange(sigmas.shape[0]), sigmas))
    return state


_L = LANGEVIN_DEFAULTS


class AnnealedLangevinSampler(_ModelKernel):
    """Annealed Langevin posterior sampling of a NumPyro model with one DiffusionPrior site.

    Run it with `infer.runner.IIDSampler(sampler, num_samples, ...)`. guidance: `Annealed()`
    (the default; exact for the stationary law at each level) or `MMPS(...)`
    (`infer.algorithms`). Denoiser calls per draw: num_levels x num_steps_per_level. Chains
    start from N(0, (sigma_max^2 + 1) I) in normalised coordinates. The defaults (sigma_max 1,
    100 levels x 5 steps) are the ladder measured against NUTS with the shipped network
    (docs/sampling.md); the exact-oracle tests use sigma_max 10 with 200 levels x 10 steps.
    """

    method = "langevin"

    def __init__(
        self,
        model,
        *,
        guidance="annealed",
        sigma_max=_L["sigma_max"],
        sigma_min=_L["sigma_min"],
        num_levels=_L["num_levels"],
        num_steps_per_level=_L["num_steps_per_level"],
        step_size=_L["step_size"],
        **deprecated,
    ):
        name = type(self).__name__
        run_options = split_run_options(name, deprecated)
        guidance = guidance_from_legacy(name, guidance, deprecated)
        if deprecated:
            raise TypeError(f"{name}() got unexpected keyword arguments {sorted(deprecated)}")
        sigma_ladder(sigma_max, sigma_min, num_levels)  # validates
        self.sigma_max, self.sigma_min = sigma_max, sigma_min
        self.num_levels, self.num_steps_per_level = num_levels, num_steps_per_level
        self.step_size = step_size
        super().__init__(model, guidance, run_options)
        if self.guidance.name == "dps":
            raise ValueError("AnnealedLangevinSampler needs guidance Annealed() or MMPS(), not DPS")

    def settings(self) -> dict:
        return {
            "sigma_max": self.sigma_max,
            "sigma_min": self.sigma_min,
            "num_levels": self.num_levels,
            "num_steps_per_level": self.num_steps_per_level,
            "step_size": self.step_size,
            "denoiser_calls_per_draw": self.num_levels * self.num_steps_per_level,
        }

    @property
    def progress_steps(self) -> int:
        return self.num_levels

    def _draw(self, rng_key, model, info, model_kwargs, num, place):
        prior = info.prior
        guidance, correction = make_guidance(self.guidance, model, info, model_kwargs)
        if correction is not None:
            raise ValueError("AnnealedLangevinSampler needs guidance Annealed() or MMPS()")

        def score_fn(x, sigma):
            sig = sigma * jnp.ones((x.shape[0],), x.dtype)
            return prior.score_normalized(x, sig) + guidance(x, sig)

        algorithm = as_top_level_api(score_fn, self.step_size)
        key_init, key_run = jax.random.split(rng_key)
        scale = jnp.sqrt(self.sigma_max**2 + 1.0)
        position = place(scale * jax.random.normal(key_init, (num, prior.dim)))
        sigmas = sigma_ladder(self.sigma_max, self.sigma_min, self.num_levels)
        state = annealed_langevin(
            key_run, algorithm, position, sigmas, self.num_steps_per_level, self._progress
        )
        final_step = jnp.full((num,), self.step_size * self.sigma_min**2)
        return state.position, {"final_step_size": final_step}
