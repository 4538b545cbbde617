"""Normalised joint coordinates x = [theta_n, kappa_n] (docs/design.md §2.5).

theta_n = (theta - mean_prior) / std_prior, kappa_n,i = kappa_i / std_i, and the flat joint
vector puts the P parameters first, then the C*N*N map pixels in (bin, y, x) order.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

__all__ = ["Normalizer", "pack", "unpack", "normalize", "denormalize", "scale_vector"]


class Normalizer(NamedTuple):
    """Affine map between physical (theta, kappa) and normalised coordinates."""

    theta_mean: jnp.ndarray  # (P,)
    theta_std: jnp.ndarray  # (P,)
    kappa_std: jnp.ndarray  # (C,)

    def to_dict(self) -> dict:
        return {k: [float(v) for v in jnp.ravel(getattr(self, k))] for k in self._fields}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        return cls(*(jnp.asarray(d[k], dtype=jnp.float32) for k in cls._fields))


def pack(theta, kappa):
    """(..., P), (..., C, N, N) -> (..., P + C*N*N)."""
    batch = theta.shape[:-1]
    return jnp.concatenate([theta, kappa.reshape(batch + (-1,))], axis=-1)


def unpack(x, n_params: int, map_shape):
    """(..., D) -> (theta (..., P), kappa (..., C, N, N))."""
    batch = x.shape[:-1]
    return x[..., :n_params], x[..., n_params:].reshape(batch + tuple(map_shape))


def normalize(normalizer: Normalizer, theta, kappa):
    """Physical (theta, kappa) -> flat normalised joint vector x."""
    theta_n = (theta - normalizer.theta_mean) / normalizer.theta_std
    kappa_n = kappa / normalizer.kappa_std[:, None, None]
    return pack(theta_n, kappa_n)


def denormalize(normalizer: Normalizer, x, map_shape):
    """Flat normalised joint vector x -> physical (theta, kappa)."""
    theta_n, kappa_n = unpack(x, normalizer.theta_mean.shape[0], map_shape)
    theta = theta_n * normalizer.theta_std + normalizer.theta_mean
    kappa = kappa_n * normalizer.kappa_std[:, None, None]
    return theta, kappa


def scale_vector(normalizer: Normalizer, map_shape):
    """Per-coordinate scale s with x_phys = s * x_n + offset, shape (D,)."""
    n_bins, ny, nx = map_shape
    kappa_scale = jnp.broadcast_to(normalizer.kappa_std[:, None, None], (n_bins, ny, nx))
    return jnp.concatenate([normalizer.theta_std, kappa_scale.reshape(-1)])
