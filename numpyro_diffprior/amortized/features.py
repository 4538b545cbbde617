"""Observation inputs of the amortised (conditional) denoiser: pure jnp, no Haiku.

A shear observation is a `ShearObservation(shear, noise_std)` in physical units, each
(..., C, 2, N, N): the noisy shear (any value in masked pixels; it is zeroed here), and the
per-pixel noise std, `inf` where a pixel is masked (the convention of
`simulator.shear.noise_std_map`). `observation_features` turns it into the network's
4 C input maps per observation, in this layout (`FEATURE_LAYOUT`):

    [E_1 .. E_C, B_1 .. B_C, mask_1 .. mask_C, noise_1 .. noise_C]

- E_i, B_i: the Kaiser-Squires E- and B-mode reconstructions (`kaiser_squires_inverse`) of bin
  i's shear with masked pixels set to 0, divided by the bin's kappa scale (the normaliser's
  `kappa_std`);
- mask_i: the fraction of bin i's two shear components observed at the pixel (1 observed,
  0 masked);
- noise_i: the pixel noise std divided by kappa_std (mean over the observed components), 0 where
  masked.

An empty observation (every pixel masked) has all features 0: the input a conditional network
sees when it is used as a plain prior (`nets` feeds zeros when no observation is given).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from numpyro_diffprior.simulator.shear import kaiser_squires_inverse

__all__ = [
    "ShearObservation",
    "FEATURE_LAYOUT",
    "FEATURES_PER_BIN",
    "num_feature_channels",
    "observed_pixels",
    "observation_features",
    "empty_observation",
]

FEATURE_LAYOUT = "E,B,mask,noise per bin (kappa_std units)"
FEATURES_PER_BIN = 4


class ShearObservation(NamedTuple):
    """A (batch of) shear observation(s) in physical units, each array (..., C, 2, N, N)."""

    shear: jnp.ndarray  # noisy shear; masked pixels are ignored
    noise_std: jnp.ndarray  # > 0 where observed, inf where masked

    @property
    def observed(self):
        return observed_pixels(self.noise_std)


def num_feature_channels(n_bins: int) -> int:
    """`NetworkConfig.obs_channels` of a conditional network for `n_bins` tomographic bins."""
    return FEATURES_PER_BIN * int(n_bins)


def observed_pixels(noise_std):
    """True where a pixel carries data: a finite, positive noise std."""
    return jnp.isfinite(noise_std) & (noise_std > 0)


def observation_features(obs: ShearObservation, kappa_std):
    """(..., C, 2, N, N) observation -> (..., 4 C, N, N) feature maps (module docstring).

    kappa_std: (C,) per-bin kappa scale of the normaliser.
    """
    observed = obs.observed
    shear = jnp.where(observed, obs.shear, 0.0)
    std = jnp.where(observed, obs.noise_std, 0.0)
    scale = jnp.asarray(kappa_std, shear.dtype)[:, None, None]
    e_mode, b_mode = kaiser_squires_inverse(shear, b_mode=True)
    frac = jnp.mean(observed.astype(shear.dtype), axis=-3)
    noise = jnp.sum(std, axis=-3) / jnp.maximum(jnp.sum(observed, axis=-3), 1) / scale
    return jnp.concatenate([e_mode / scale, b_mode / scale, frac, noise], axis=-3)


def empty_observation(shear_shape, batch=(), dtype=jnp.float32) -> ShearObservation:
    """An observation with every pixel masked (its features are all 0)."""
    shape = tuple(batch) + tuple(shear_shape)
    return ShearObservation(jnp.zeros(shape, dtype), jnp.full(shape, jnp.inf, dtype))
