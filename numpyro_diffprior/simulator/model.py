"""The explicit field-level NumPyro model (the "HMC field-level baseline" of docs/design.md §1).

theta ~ prior, z ~ N(0, I) (non-centred latent, as in Porqueres et al. 2022 and sbi_lens'
field-level models), kappa = lognormal(theta, z), shear ~ N(A kappa, sigma_n^2) on the observed
pixels, with A the Kaiser-Squires operator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from numpyro_diffprior.cosmology.params import prior_distribution
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.lognormal import simulate_kappa
from numpyro_diffprior.simulator.shear import (
    _masked_normal_log_prob,
    expand_mask,
    kaiser_squires,
    noise_std_map,
)

__all__ = ["MaskedShearNormal", "lensing_model", "validate_observation"]


class MaskedShearNormal(dist.Distribution):
    """Independent Normal over a (C, 2, N, N) shear map whose unobserved pixels carry no
    information: ``log_prob`` sums over observed pixels only (exactly 0 elsewhere, NaN-safe);
    ``sample`` puts 0 in unobserved pixels."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.independent(constraints.real, 4)
    pytree_data_fields = ("loc", "scale", "observed")

    def __init__(self, loc, scale, observed=None, *, validate_args=None):
        self.loc = loc
        self.scale = jnp.broadcast_to(scale, jnp.shape(loc))
        if observed is None:
            observed = jnp.isfinite(self.scale)
        self.observed = jnp.broadcast_to(observed, jnp.shape(loc)) & jnp.isfinite(self.scale)
        shape = jnp.shape(loc)
        super().__init__(
            batch_shape=shape[:-4], event_shape=shape[-4:], validate_args=validate_args
        )

    def sample(self, key, sample_shape=()):
        shape = sample_shape + self.batch_shape + self.event_shape
        scale = jnp.where(self.observed, self.scale, 0.0)
        draw = self.loc + scale * jax.random.normal(key, shape)
        return jnp.where(self.observed, draw, 0.0)

    def log_prob(self, value):
        return _masked_normal_log_prob(value, self.loc, self.scale, self.observed)

    @property
    def mean(self):
        return jnp.where(self.observed, self.loc, 0.0)


def validate_observation(preset, shear_obs=None, mask=None):
    """Eager checks of a shear observation against a preset; returns the (C, 2, N, N) mask.

    The checks are `validation.check_observation`'s (shape, dtype, mask, NaN/inf in an observed
    pixel; non-finite values are allowed only where the mask is False), so the model raises the
    same ValueError as the samplers and the CLI. Traced arrays are checked by shape only.
    """
    from numpyro_diffprior.validation import check_observation

    preset = get_preset(preset)
    if shear_obs is not None:
        check_observation(shear_obs, mask, None, preset)
    return expand_mask(mask, preset.n_bins, preset.npix)


def lensing_model(
    preset="lsst-y10-coarse", shear_obs=None, mask=None, noise_std=None, emulator=None
):
    """Field-level log-normal weak-lensing model.

    Sites: one per sampled parameter (``preset.param_names``, with its prior restricted to the
    emulator's box, as for the simulator's training maps and calibration truths), ``z`` (C, N, N)
    standard normal, deterministic ``theta`` (P,) and ``kappa`` (C, N, N), and ``shear``
    (C, 2, N, N) observed at ``shear_obs`` (pass None for prior-predictive mocks).

    Args:
      preset: preset name or Preset.
      shear_obs: (C, 2, N, N) observed shear; NaN allowed only in masked pixels.
      mask: bool (N, N), (C, N, N) or (C, 2, N, N), True = observed.
      noise_std: scalar, (C,) or (C, 2, N, N); default sigma_e / sqrt(n_i A_pix).
      emulator: a ClEmulator (default ``load_emulator(preset)``).
    """
    preset = get_preset(preset)
    full_mask = validate_observation(preset, shear_obs, mask)
    if emulator is None:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        emulator = load_emulator(preset)
    bounds = jnp.asarray(emulator.bounds)
    theta = jnp.stack(
        [
            numpyro.sample(name, prior_distribution(name, bounds[i, 0], bounds[i, 1]))
            for i, name in enumerate(preset.param_names)
        ],
        axis=-1,
    )
    theta = numpyro.deterministic("theta", theta)
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand(preset.map_shape).to_event(3))
    kappa = numpyro.deterministic("kappa", simulate_kappa(theta, z, emulator, preset))
    std = noise_std_map(preset, full_mask, noise_std)
    observed = jnp.isfinite(std)
    if shear_obs is not None:
        shear_obs = jnp.where(observed, jnp.asarray(shear_obs, jnp.float32), 0.0)
    numpyro.sample("shear", MaskedShearNormal(kaiser_squires(kappa), std, observed), obs=shear_obs)
