"""Amortised posterior sampling: plain reverse diffusion with a conditional denoiser of
(theta, kappa) given the observed shear; no likelihood gradient, no guidance, no CG
(docs/sampling.md, "Amortised posterior"; docs/design.md §6).

- `AmortizedPosteriorSampler(model, ...)`: a kernel for `infer.runner.IIDSampler`, like
  `DiffusionPosteriorSampler`. It takes the same NumPyro model: the prior site must hold an
  `amortized.AmortizedPrior` (the conditional model), and the observation, mask and noise are
  read from the model's shear likelihood (`infer.model_tracing.linear_gaussian`).
- `sample_many(rng_key, prior, observations, num_draws)`: draws for K observations in one
  batched (vmapped, jitted) call, for calibration; `sample_with_keys` is the same with one key
  per observation (its draws then do not depend on the batch it is in); `sample_one` is the
  one-observation case; `infer.amortized_chunks.sample_with_keys_chunked` computes the same
  draws a few at a time, side by side in threads (faster on a CPU).

Inputs the model was not trained for are refused before sampling (`check_model_observation`,
`check_observation_range`): a likelihood whose mean is not `kaiser_squires(kappa)` (checked on a
random probe) or not Gaussian, shear maps of another preset's shape, a noise level or a masked
fraction outside the checkpoint's `ObservationRange`, a mask not shared by all bins and both
components.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.amortized.features import ShearObservation
from numpyro_diffprior.amortized.prior import (
    check_observation_range,
    require_amortized,
    shear_shape,
)
from numpyro_diffprior.diffusion import samplers as _samplers
from numpyro_diffprior.diffusion.samplers import denoiser_calls
from numpyro_diffprior.infer.algorithms import AMORTIZED_DEFAULTS
from numpyro_diffprior.infer.kernel import _ModelKernel
from numpyro_diffprior.infer.model_tracing import linear_gaussian, loc_values, probe_points
from numpyro_diffprior.simulator.shear import kaiser_squires

__all__ = [
    "AmortizedPosteriorSampler",
    "AMORTIZED_DEFAULTS",
    "SAMPLERS",
    "SOLVER_NAMES",
    "NoGuidance",
    "sample_many",
    "sample_with_keys",
    "sample_one",
    "observation_from_model",
    "check_observation_range",
]

# The reverse processes: Heun, DPM-Solver++(2M), (3M) (one call per step each), Euler-Maruyama.
_REVERSE = {
    "ode": _samplers.edm_sampler,
    "dpmpp-2m": _samplers.dpmpp_2m_sampler,
    "dpmpp-3m": _samplers.dpmpp_3m_sampler,
    "sde": _samplers.euler_maruyama_sampler,
}
SAMPLERS = tuple(_REVERSE)
SOLVER_NAMES = {"ode": "Heun", "dpmpp-2m": "DPM-Solver++(2M)", "dpmpp-3m": "DPM-Solver++(3M)",
                "sde": "Euler-Maruyama"}  # fmt: skip
_TOL = 1e-3  # relative slack of the forward-model check


@dataclasses.dataclass(frozen=True)
class NoGuidance:
    """The amortised sampler's guidance: none (the observation is an input of the denoiser)."""

    name: ClassVar[str] = "none"


def observation_from_model(model, info, model_kwargs, *, check=False) -> ShearObservation:
    """The (C, 2, N, N) shear observation of a model's linear Gaussian likelihood.

    With `check` (eager) the likelihood must be Gaussian with mean `kaiser_squires(kappa)`."""
    prior = info.prior
    try:
        lg = linear_gaussian(model, info, model_kwargs, check=check)
    except ValueError as err:
        raise ValueError(
            f"the amortised model was trained for Kaiser-Squires shear with Gaussian noise; the "
            f"model's likelihood is not of that form ({err})"
        ) from None
    shape = shear_shape(prior)
    if lg.y.shape != (math.prod(shape),):
        raise ValueError(
            f"the model's observed sites hold {lg.y.shape[0]} values, but the amortised model "
            f"(preset {prior.preset!r}) was trained on one shear map of shape {shape}"
        )
    if check:  # eager: numpy, no operation compiled on its own
        _check_kaiser_squires(model, info, model_kwargs)
    precision, xp = (np.asarray(lg.precision), np) if check else (lg.precision, jnp)
    observed = precision > 0
    std = xp.where(observed, 1.0 / xp.sqrt(xp.where(observed, precision, 1.0)), xp.inf)
    return ShearObservation(xp.reshape(lg.y, shape), std.reshape(shape))


_kaiser_squires = jax.jit(kaiser_squires)


def _check_kaiser_squires(model, info, model_kwargs):
    prior = info.prior
    x0, draws = probe_points(prior)
    loc_1, loc_0 = np.asarray(loc_values(model, info, model_kwargs, (draws[3], x0)))
    want = np.ravel(_kaiser_squires(prior.unpack(draws[3])[1]))
    rel = max(np.max(np.abs(loc_1 - want)), np.max(np.abs(loc_0))) / np.max(np.abs(want))
    if not rel <= _TOL:
        raise ValueError(
            "the model's shear likelihood is not the forward model the amortised model was "
            f"trained for: its mean differs from kaiser_squires(kappa) by {rel:.2g} (relative) "
            "on a random probe. AmortizedPosteriorSampler serves shear = KaiserSquires(kappa) "
            "+ Gaussian noise only; use DiffusionPosteriorSampler for other forward models"
        )


def _sample_normalized(rng_key, prior, context, num, *, place=None, sampler, num_steps,
                       sigma_min, sigma_max, rho):  # fmt: skip
    """num draws x_n (num, D) for one observation's (unbatched) context."""
    key_run = jax.random.split(rng_key)[1]
    x_init = initial_draws(rng_key, num, prior.dim, sigma_max)
    x_init = x_init if place is None else place(x_init)
    ctx = jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (num,) + c.shape), context)
    denoise = lambda x, s: prior.conditional_denoise_normalized(x, s, ctx)
    return _REVERSE[sampler](key_run, denoise, num, prior.dim, num_steps=num_steps,
                             sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
                             x_init=x_init)  # fmt: skip


def initial_draws(rng_key, num, dim, sigma_max):
    """The reverse process's initial points sigma_max * N(0, I), (num, dim), of one key."""
    return sigma_max * jax.random.normal(jax.random.split(rng_key)[0], (num, dim))


def _settings(sampler, num_steps, sigma_min, sigma_max, rho):
    if sampler not in SAMPLERS:
        raise ValueError(
            f"sampler must be one of {', '.join(map(repr, SAMPLERS))}, got {sampler!r}"
        )
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    return dict(sampler=sampler, num_steps=int(num_steps), sigma_min=float(sigma_min),
                sigma_max=float(sigma_max), rho=float(rho))  # fmt: skip


@functools.partial(jax.jit, static_argnums=(3, 4))
def _sample_keys(keys, prior, observations, num_draws, settings):
    """Draws (K, num_draws, D) for K observations, observation k with keys[k]."""
    contexts = prior.encode(observations)
    one = lambda key, ctx: _sample_normalized(key, prior, ctx, num_draws, **dict(settings))
    return prior.from_normalized(jax.vmap(one)(keys, contexts))


def _prepare(prior, observations, check, settings, keys=None):
    observations = ShearObservation(*(jnp.asarray(a, jnp.float32) for a in observations))
    if keys is not None and len(keys) != observations.shear.shape[0]:
        raise ValueError(
            f"got {len(keys)} keys for {observations.shear.shape[0]} observations; need one each"
        )
    if check and not isinstance(observations.shear, jax.core.Tracer):
        check_observation_range(prior, observations)
    else:
        require_amortized(prior)
    settings = _settings(**{**AMORTIZED_DEFAULTS, **settings})
    return observations, tuple(sorted(settings.items()))


def sample_many(rng_key, prior, observations, num_draws: int, *, check=True,
                **settings) -> jnp.ndarray:  # fmt: skip
    """Physical draws (K, num_draws, D) of p(theta, kappa | y_k) for K observations in one
    jitted call (vmapped over the observations).

    prior: an `AmortizedPrior`; observations: a `ShearObservation` with arrays
    (K, C, 2, N, N) (noise_std inf where masked); settings: `AMORTIZED_DEFAULTS` keys.
    Observation k uses the key `jax.random.split(rng_key, K)[k]`: its draws are those of
    `sample_one(split(rng_key, K)[k], prior, observation k, num_draws)`.
    With `check` (eager arrays) the observations must lie in the training range."""
    keys = jax.random.split(rng_key, np.shape(observations[0])[0])
    return sample_with_keys(keys, prior, observations, num_draws, check=check, **settings)


def sample_with_keys(keys, prior, observations, num_draws: int, *, check=True,
                     **settings) -> jnp.ndarray:  # fmt: skip
    """`sample_many` with one key per observation: keys (K,) (or raw (K, 2)); observation k's
    draws are `sample_one(keys[k], prior, observation k, num_draws)`, whatever else is in the
    batch (`diagnostics.calibrate_amortized` relies on it)."""
    observations, settings = _prepare(prior, observations, check, settings, keys)
    return _sample_keys(keys, prior, observations, int(num_draws), settings)


def sample_one(rng_key, prior, observation, num_draws: int, *, check=True,
               **settings) -> jnp.ndarray:  # fmt: skip
    """Physical draws (num_draws, D) for one (C, 2, N, N) observation (`sample_many`)."""
    batched = ShearObservation(*(jnp.asarray(a)[None] for a in observation))
    batched, settings = _prepare(prior, batched, check, settings)
    return _sample_keys(rng_key[None], prior, batched, int(num_draws), settings)[0]


_A = AMORTIZED_DEFAULTS


class AmortizedPosteriorSampler(_ModelKernel):
    """Plain reverse diffusion with the conditional denoiser of the model's `AmortizedPrior`:
    i.i.d. draws of p(theta, kappa | shear) with no likelihood gradient.

    Run it with `infer.runner.IIDSampler(sampler, num_samples, ...)`, as the other kernels;
    the model is theirs (`infer.models.shear_model` or yours: one `AmortizedPrior` site and a
    Gaussian shear likelihood with mean `kaiser_squires(kappa)`). sampler: "dpmpp-2m" (the
    default: DPM-Solver++(2M) on the probability-flow ODE, num_steps denoiser calls per draw),
    "ode" (Heun on the same ODE, 2 num_steps - 1 calls, as accurate step for step on the exact
    oracle), "dpmpp-3m" (third order, num_steps calls) or "sde" (Euler-Maruyama, num_steps
    calls), from sigma_max to sigma_min on the Karras rho ladder
    (`diffusion.samplers.edm_sigma_steps`; the default rho = inf: steps equal in log sigma).
    `infer.algorithms.AMORTIZED_FAST_SETTINGS` (3M, 12 steps) is a named faster choice.
    Before sampling, `IIDSampler.run` calls `check_inputs`: a model or observation the
    conditional model was not trained for is a ValueError naming the problem (module docstring).
    """

    method = "amortized"

    def __init__(self, model, *, sampler=_A["sampler"], num_steps=_A["num_steps"],
                 sigma_min=_A["sigma_min"], sigma_max=_A["sigma_max"], rho=_A["rho"]):  # fmt: skip
        self._sampling = _settings(sampler, num_steps, sigma_min, sigma_max, rho)
        self.sampler, self.num_steps = sampler, int(num_steps)
        self.sigma_min, self.sigma_max, self.rho = sigma_min, sigma_max, rho
        super().__init__(model, "annealed")  # the base's state; the guidance is replaced:
        self.guidance = NoGuidance()

    def settings(self) -> dict:
        calls = denoiser_calls(self.sampler, self.num_steps)
        return {**self._sampling, "denoiser_calls_per_draw": calls}

    def check_inputs(self, info, model_kwargs) -> None:
        """Eager checks of the model and its observation (called by `IIDSampler.run`)."""
        require_amortized(info.prior)
        obs = observation_from_model(self.model, info, model_kwargs, check=True)
        check_observation_range(info.prior, obs)

    def _draw(self, rng_key, model, info, model_kwargs, num, place):
        prior = info.prior
        require_amortized(prior)
        context = prior.encode(observation_from_model(model, info, model_kwargs))
        x_n = _sample_normalized(rng_key, prior, context, num, place=place, **self._sampling)
        return x_n, {}
