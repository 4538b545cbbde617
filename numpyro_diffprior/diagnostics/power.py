"""Binned angular power spectra of flat-sky maps, auto and cross, with cosmic variance.

Normalisation matches ``simulator.lognormal.power_grid``: for a map kappa of N x N pixels on a
side L (radians), ``C(k) = |fft2(kappa)(k)|^2 (L/N)^2 / N^2``, so a field generated from C_l
has measured power C_l. A bin averages C(k) over the modes of the full FFT grid with
``edges[b] <= |k| < edges[b+1]``. Mode k and -k carry the same complex amplitude of a real map,
so a bin of ``n_modes`` grid modes holds ``n_modes / 2`` independent complex modes, each with
``var(Re a_i a_j^*) = (C_ii C_jj + C_ij^2) / 2``; hence
``var(C_ij) = (C_ii C_jj + C_ij^2) / n_modes`` (the real-field analogue of 2 C^2 / (2l + 1);
also exact for the self-conjugate real modes).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = [
    "ell_bin_edges",
    "modes_per_bin",
    "power_spectrum",
    "binned_theory",
    "cosmic_variance",
    "cross_correlation_coefficient",
]


def _abs_k(npix: int, field_rad: float) -> np.ndarray:
    k = 2.0 * np.pi * np.fft.fftfreq(npix, d=field_rad / npix)
    return np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)


def ell_bin_edges(npix: int, field_rad: float, n_bins: int | None = None) -> np.ndarray:
    """Log-spaced edges (n_bins + 1,) from the fundamental 2 pi / L to the Nyquist pi N / L.

    The default ``n_bins`` is the largest count up to ``max(4, npix // 4)`` whose bins all hold
    modes of the grid (8 at 32 pixels; fewer than ``npix // 4`` above, where the lowest log
    bins would fall between the discrete |k|). The edges are widened by 0.1% so that the
    fundamental and the axis Nyquist modes fall inside.
    """
    if npix < 2 or field_rad <= 0:
        raise ValueError(f"need npix >= 2 and field_rad > 0, got {npix}, {field_rad}")
    if n_bins is not None:
        if int(n_bins) < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        return _log_edges(npix, field_rad, int(n_bins))
    for n in range(max(4, npix // 4), 1, -1):
        edges = _log_edges(npix, field_rad, n)
        if np.all(modes_per_bin(npix, field_rad, edges) > 0):
            return edges
    return _log_edges(npix, field_rad, 1)


def _log_edges(npix, field_rad, n_bins):
    edges = np.geomspace(2.0 * np.pi / field_rad, np.pi * npix / field_rad, n_bins + 1)
    edges[0] *= 0.999
    edges[-1] *= 1.001
    return edges


def _bin_index(npix, field_rad, ell_edges):
    ell_edges = np.asarray(ell_edges, dtype=float)
    if ell_edges.ndim != 1 or len(ell_edges) < 2 or np.any(np.diff(ell_edges) <= 0):
        raise ValueError("ell_edges must be a 1-D increasing array with at least 2 entries")
    k = _abs_k(npix, field_rad)
    idx = np.digitize(k, ell_edges) - 1  # -1 below, B above the range
    n_bins = len(ell_edges) - 1
    onehot = (idx[None] == np.arange(n_bins)[:, None, None]).astype(np.float32)  # (B, N, N)
    return k, onehot


def modes_per_bin(npix: int, field_rad: float, ell_edges) -> np.ndarray:
    """Number of full-grid Fourier modes in each bin, (B,) (= real degrees of freedom)."""
    _, onehot = _bin_index(npix, field_rad, ell_edges)
    return onehot.sum(axis=(1, 2))


def _bin_average(grid, onehot):
    counts = onehot.sum(axis=(1, 2))
    if np.any(counts == 0):
        raise ValueError(f"empty ell bin(s) {np.flatnonzero(counts == 0).tolist()}; use wider bins")
    return jnp.einsum("...xy,bxy->...b", grid, jnp.asarray(onehot)) / jnp.asarray(counts)


def power_spectrum(maps, field_rad: float, ell_edges):
    """Auto and cross spectra of maps (..., C, N, N) -> (ell_centers (B,), cl (..., C, C, B)).

    ``ell_centers`` is the mean |k| of the modes in each bin.
    """
    maps = jnp.asarray(maps)
    if maps.ndim < 3 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"maps must have shape (..., C, N, N), got {maps.shape}")
    npix = maps.shape[-1]
    k, onehot = _bin_index(npix, field_rad, ell_edges)
    m_hat = jnp.fft.fft2(maps)
    grid = (m_hat[..., :, None, :, :] * jnp.conj(m_hat[..., None, :, :, :])).real
    grid = grid * (field_rad / npix) ** 2 / npix**2
    centers = (onehot * k[None]).sum(axis=(1, 2)) / np.maximum(onehot.sum(axis=(1, 2)), 1)
    return centers, _bin_average(grid, onehot)


def binned_theory(power_grid_values, npix: int, field_rad: float, ell_edges):
    """Bin a grid power P (..., N, N) (``power_grid`` convention) like ``power_spectrum``.

    Returns (..., B) binned C_l = mean over the bin's modes of ``P(k) (L/N)^2``.
    """
    _, onehot = _bin_index(npix, field_rad, ell_edges)
    return _bin_average(jnp.asarray(power_grid_values) * (field_rad / npix) ** 2, onehot)


def cosmic_variance(cl, n_modes):
    """Variance of a binned C_ij estimate from one map, (..., C, C, B) with n_modes (B,)."""
    cl = jnp.asarray(cl)
    diag = jnp.diagonal(cl, axis1=-3, axis2=-2)  # (..., B, C)
    diag = jnp.moveaxis(diag, -1, -2)  # (..., C, B)
    prod = diag[..., :, None, :] * diag[..., None, :, :]
    return (prod + cl**2) / jnp.asarray(n_modes)


def cross_correlation_coefficient(a, b, field_rad: float, ell_edges):
    """r_i(l) = C_ab / sqrt(C_aa C_bb) per bin i of maps a, b (..., C, N, N) -> (..., C, B)."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {a.shape} and {b.shape}")
    npix = a.shape[-1]
    _, onehot = _bin_index(npix, field_rad, ell_edges)
    a_hat, b_hat = jnp.fft.fft2(a), jnp.fft.fft2(b)
    c_ab = _bin_average((a_hat * jnp.conj(b_hat)).real, onehot)
    c_aa = _bin_average(jnp.abs(a_hat) ** 2, onehot)
    c_bb = _bin_average(jnp.abs(b_hat) ** 2, onehot)
    return c_ab / jnp.sqrt(c_aa * c_bb)
