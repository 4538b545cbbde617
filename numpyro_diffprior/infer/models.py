"""The standard NumPyro model used by the CLI: joint diffusion prior + Gaussian shear likelihood.

Copy and edit it: any differentiable likelihood of (theta, kappa) works with the samplers;
masks and per-pixel noise maps need no retraining.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpyro

from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.model import MaskedShearNormal
from numpyro_diffprior.simulator.shear import expand_mask, kaiser_squires

__all__ = ["shear_model"]


def _noise_map(noise_std, shape):
    std = jnp.asarray(noise_std, jnp.float32)
    if std.ndim == 1 and std.shape == shape[:1]:
        std = std[:, None, None, None]
    elif std.ndim not in (0, 4) or (std.ndim == 4 and std.shape != shape):
        raise ValueError(f"noise_std must be a scalar, ({shape[0]},) or {shape}, got {std.shape}")
    return jnp.broadcast_to(std, shape)


def shear_model(prior, shear_obs=None, mask=None, noise_std=None):
    """theta_kappa ~ prior; shear ~ N(KaiserSquires(kappa), noise_std^2) on observed pixels.

    Args:
      prior: a `DiffusionPrior` over [theta, kappa (C, N, N)].
      shear_obs: (C, 2, N, N) observation, or None for prior-predictive draws; NaN allowed only
        in masked pixels.
      mask: bool (N, N), (C, N, N) or (C, 2, N, N), True = observed.
      noise_std: scalar, (C,) or (C, 2, N, N); default: the prior's preset pixel noise.
    Sites: `theta_kappa` (prior), deterministic `theta` (P,) and `kappa`, observed `shear`.
    """
    n_bins, ny, nx = prior.map_shape
    shape = (n_bins, 2, ny, nx)
    if noise_std is None:
        if prior.preset is None:
            raise ValueError("noise_std is required for a prior without a preset")
        noise_std = get_preset(prior.preset).noise_std()
    std = _noise_map(noise_std, shape)
    observed = jnp.isfinite(std) & (std > 0)
    if mask is not None:
        observed = observed & expand_mask(mask, n_bins, nx)
    if shear_obs is not None:
        if tuple(jnp.shape(shear_obs)) != shape:
            raise ValueError(f"shear_obs must have shape {shape}, got {jnp.shape(shear_obs)}")
        shear_obs = jnp.where(observed, jnp.asarray(shear_obs, jnp.float32), 0.0)
    x = numpyro.sample("theta_kappa", prior)
    theta, kappa = prior.unpack(x)
    numpyro.deterministic("theta", theta)
    numpyro.deterministic("kappa", kappa)
    std = jnp.where(observed, std, 1.0)
    numpyro.sample("shear", MaskedShearNormal(kaiser_squires(kappa), std, observed), obs=shear_obs)
