"""The Gaussian-joint oracle: theta_n ~ N(0, I), kappa_n = M theta_n + g, g ~ GRF, in the
package's normalised flat coordinates. Denoiser D(x; sigma) = mu + Sigma (Sigma + sigma^2 I)^-1
(x - mu) (`gaussian_denoise`, an `apply_fn`); exact prior moments, log density and posterior
under any linear Gaussian observation (Gaussian conditioning, float64 NumPy)."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.diffusion.normalization import Normalizer
from numpyro_diffprior.testing.common import _grf_covariance, _observed

__all__ = [
    "GaussianOracle",
    "GaussianPosterior",
    "gaussian_joint_oracle",
    "gaussian_denoise",
    "gaussian_prior_moments",
    "gaussian_log_density",
    "gaussian_posterior",
    "gaussian_oracle_prior",
]


class GaussianOracle(NamedTuple):
    """N(mean, U diag(eigvals) U^T) in normalised coordinates (arrays only: a pytree)."""

    mean: jnp.ndarray  # (D,)
    eigvals: jnp.ndarray  # (D,)
    eigvecs: jnp.ndarray  # (D, D)


class GaussianPosterior(NamedTuple):
    mean: np.ndarray  # (D,) physical flat joint
    cov: np.ndarray  # (D, D)


def gaussian_joint_oracle(n_params=2, map_shape=(1, 8, 8), *, coupling=0.6, slope=2.0, seed=0):
    """Gaussian joint oracle: theta_n ~ N(0, I), kappa_n = M theta_n + g (docs/design.md §2.7).

    M holds smooth random templates scaled so that theta explains a fraction `coupling`^2 of
    the pixel variance; pixel variances of kappa_n are 1.
    """
    rng = np.random.default_rng(seed)
    n_bins, ny, nx = map_shape
    k = n_bins * ny * nx
    grf = _grf_covariance(map_shape, slope, rng, corr=0.5)
    chol = np.linalg.cholesky(grf)
    templates = chol @ rng.standard_normal((k, n_params))
    templates /= np.sqrt(np.mean(templates**2, axis=0, keepdims=True) * n_params)
    m = coupling * templates
    cov_k = m @ m.T + (1 - coupling**2) * grf
    cov = np.block([[np.eye(n_params), m.T], [m, cov_k]])
    eigvals, eigvecs = np.linalg.eigh(cov)
    return GaussianOracle(
        jnp.zeros(n_params + k, jnp.float32),
        jnp.asarray(np.clip(eigvals, 1e-8, None), jnp.float32),
        jnp.asarray(eigvecs, jnp.float32),
    )


def gaussian_denoise(oracle: GaussianOracle, x, sigma):
    """Exact denoiser E[x | x_sigma] of the Gaussian oracle; x (B, D), sigma (B,)."""
    u, lam = oracle.eigvecs, oracle.eigvals
    coef = (x - oracle.mean) @ u
    shrink = lam / (lam + sigma[:, None] ** 2)
    return oracle.mean + (coef * shrink) @ u.T


def _scales(normalizer: Normalizer, map_shape):
    n_bins, ny, nx = map_shape
    kappa_scale = np.repeat(np.asarray(normalizer.kappa_std, np.float64), ny * nx)
    scale = np.concatenate([np.asarray(normalizer.theta_std, np.float64), kappa_scale])
    offset = np.concatenate(
        [np.asarray(normalizer.theta_mean, np.float64), np.zeros(n_bins * ny * nx)]
    )
    return scale, offset


def gaussian_prior_moments(oracle: GaussianOracle, normalizer: Normalizer, map_shape):
    """Exact prior mean (D,) and covariance (D, D) in physical coordinates."""
    scale, offset = _scales(normalizer, map_shape)
    u = np.asarray(oracle.eigvecs, np.float64)
    cov_n = (u * np.asarray(oracle.eigvals, np.float64)) @ u.T
    mean = scale * np.asarray(oracle.mean, np.float64) + offset
    return mean, cov_n * np.outer(scale, scale)


def gaussian_log_density(oracle: GaussianOracle, normalizer: Normalizer, map_shape, x_phys):
    """Exact log density of the physical flat vector x_phys (..., D) under the Gaussian oracle."""
    scale, offset = _scales(normalizer, map_shape)
    x_n = (np.asarray(x_phys, np.float64) - offset) / scale
    u = np.asarray(oracle.eigvecs, np.float64)
    lam = np.asarray(oracle.eigvals, np.float64)
    coef = (x_n - np.asarray(oracle.mean, np.float64)) @ u
    log_n = -0.5 * np.sum(coef**2 / lam + np.log(2 * np.pi * lam), axis=-1)
    return log_n - np.sum(np.log(scale))


def gaussian_posterior(oracle, normalizer, map_shape, operator, y, noise_std, mask=None):
    """Exact posterior of the physical joint given y = operator @ kappa_phys + noise.

    operator: dense (M, C*N*N) acting on the flattened physical kappa; noise_std broadcastable
    to y's shape; mask (True = observed) broadcastable to y's shape.
    """
    mean0, cov0 = gaussian_prior_moments(oracle, normalizer, map_shape)
    y, noise, keep = _observed(y, noise_std, mask)
    n_params = normalizer.theta_mean.shape[0]
    h = np.zeros((y.size, mean0.size))
    h[:, n_params:] = operator
    h, y, noise = h[keep], y[keep], noise[keep]
    s = h @ cov0 @ h.T + np.diag(noise**2)
    gain = np.linalg.solve(s, h @ cov0).T
    mean = mean0 + gain @ (y - h @ mean0)
    cov = cov0 - gain @ h @ cov0
    return GaussianPosterior(mean, 0.5 * (cov + cov.T))


def gaussian_oracle_prior(map_shape, *, n_params=2, seed=0, kappa_std=0.02, **prior_kwargs):
    """A `DiffusionPrior` whose denoiser is the exact Gaussian-joint oracle (for tests/benchmarks).

    Physical theta has mean (0.3, 0.8)[:n_params] and std (0.1, 0.2)[:n_params]; kappa has per-bin
    std `kappa_std`. Returns (prior, oracle, normalizer); prior_kwargs go to DiffusionPrior.
    """
    from numpyro_diffprior.prior import DiffusionPrior

    oracle = gaussian_joint_oracle(n_params, map_shape, seed=seed)
    n_bins = map_shape[0]
    normalizer = Normalizer(
        jnp.array([0.3, 0.8][:n_params]),
        jnp.array([0.1, 0.2][:n_params]),
        jnp.full((n_bins,), kappa_std),
    )
    prior = DiffusionPrior(
        apply_fn=gaussian_denoise,
        params=oracle,
        normalizer=normalizer,
        n_params=n_params,
        map_shape=map_shape,
        **prior_kwargs,
    )
    return prior, oracle, normalizer
