"""Pieces shared by the exact oracles: a periodic GRF covariance, dense linear operators,
observation masking and the Kolmogorov-Smirnov distance to a tabulated CDF."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["linear_operator_matrix", "ks_distance"]


def _grf_covariance(map_shape, slope, rng, corr):
    """Dense covariance (C*N*N, C*N*N) of a periodic GRF with P(k) ∝ (k^2 + k0^2)^(-slope/2),
    unit pixel variance, bins mixed by the correlation `corr` between neighbouring bins."""
    n_bins, ny, nx = map_shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    power = (ky**2 + kx**2 + (1.0 / max(ny, nx)) ** 2) ** (-slope / 2)
    xi = np.real(np.fft.ifft2(power))
    xi = xi / xi[0, 0]
    iy, ix = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    dy = (iy.ravel()[:, None] - iy.ravel()[None, :]) % ny
    dx = (ix.ravel()[:, None] - ix.ravel()[None, :]) % nx
    pix = xi[dy, dx] + 1e-3 * np.eye(ny * nx)
    bins = corr ** np.abs(np.arange(n_bins)[:, None] - np.arange(n_bins)[None, :])
    return np.kron(bins, pix) / (1 + 1e-3)


def linear_operator_matrix(forward_fn, in_shape):
    """Dense matrix (M, prod(in_shape)) of a linear map `forward_fn` (any output shape)."""
    size = int(np.prod(in_shape))
    flat = lambda v: jnp.ravel(forward_fn(v.reshape(in_shape)))
    return np.asarray(jax.jacfwd(flat)(jnp.zeros(size, jnp.float32)), np.float64)


def _observed(y, noise_std, mask):
    y = np.asarray(y, np.float64)
    noise = np.broadcast_to(np.asarray(noise_std, np.float64), y.shape).ravel()
    keep = np.ones(y.shape, bool) if mask is None else np.broadcast_to(mask, y.shape)
    return y.ravel(), noise, keep.ravel().astype(bool)


def ks_distance(draws, grid, cdf):
    """Kolmogorov-Smirnov distance between the empirical CDF of `draws` and a tabulated CDF."""
    draws = np.sort(np.ravel(np.asarray(draws, np.float64)))
    exact = np.interp(draws, grid, cdf)
    n = draws.size
    upper = np.arange(1, n + 1) / n - exact
    lower = exact - np.arange(n) / n
    return float(max(upper.max(), lower.max()))
