"""Correlated tomographic shifted log-normal convergence maps (docs/design.md §2.3).

The construction follows sbi_lens (Zeghal et al. 2024) and the log-normal model of
Hilbert, Hartlap & Schneider (2011), Xavier et al. (2016):

1. ``P_ij(k) = C_ij(|k|) (N/L)^2`` on the 2-D Fourier grid, ``k = 2 pi fftfreq(N, d=L/N)``,
   zero mode 0. With this convention ``xi = ifft2(P)`` is the pixel covariance function and a
   field ``ifft2(sqrt(P) fft2(z))`` with white ``z ~ N(0, 1)`` has angular power ``C_l``.
2. ``xi_G,ij = log(1 + xi_ij / (lambda_i lambda_j))``, ``P_G = fft2(xi_G)`` (real), ``P_G(0) = 0``.
3. ``g_hat(k) = S(k) z_hat(k)`` with ``S = P_G^{1/2}`` the symmetric PSD square root
   (negative eigenvalues clipped to 0) of the C x C matrix at each mode. ``P_G`` depends
   on ``|k_y|`` and ``|k_x|`` symmetrically, so the root is computed once per such pair of
   modes (153 of the 544 half-plane modes for N = 32, 2145 of 8320 for N = 128) and copied.
4. ``kappa_i = lambda_i [exp(g_i - var(g_i)/2) - 1]`` with the theoretical ``var(g_i)`` of step 3,
   so that ``E[kappa_i] = 0`` and ``kappa_i >= -lambda_i``.

Speed (docs/benchmarks.md): P and xi are even on the grid, so steps 1-2 run on the
(N/2+1)^2 quadrant as cosine transforms (two small matrix products per transform, for the
C (C + 1) / 2 distinct pairs), with every theta-independent index and matrix a cached numpy
constant; the eigen-decompositions of step 3 are cyclic Jacobi rotations vectorised over all
orbits (`jacobi_eigh`), and small matrix products are written out entry by entry.

Everything is pure ``jax.numpy``: jit, vmap and grad (in ``cl``, ``shift`` and ``z``) work. The
square root has a custom JVP (Daleckii-Krein divided differences written as
``1 / (s_i + s_j)``), so its gradient stays finite for degenerate eigenvalues, where the
gradient of ``eigh`` itself is ``inf * 0``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.simulator.psd_sqrt import (
    batch_matmul,
    batch_transpose,
    jacobi_eigh,
    psd_sqrt,
    psd_sqrt_batch_last,
)

__all__ = [
    "wavenumber_grid",
    "interpolate_cl",
    "power_grid",
    "psd_sqrt",
    "jacobi_eigh",
    "half_plane_orbits",
    "isotropic_psd_sqrt",
    "gaussian_field",
    "lognormal_kappa",
    "lognormal_theory_power",
    "simulate_kappa",
]

_TINY = 1e-30


def wavenumber_grid(npix: int, field_rad: float, *, half: bool = False):
    """|k| on the FFT grid, ``k = 2 pi fftfreq(N, d=L/N)``; shape (N, N) or (N, N//2+1) if half."""
    k_y = 2.0 * jnp.pi * jnp.fft.fftfreq(npix, d=field_rad / npix)
    k_x = 2.0 * jnp.pi * (jnp.fft.rfftfreq if half else jnp.fft.fftfreq)(npix, d=field_rad / npix)
    return jnp.sqrt(k_y[:, None] ** 2 + k_x[None, :] ** 2)


def interpolate_cl(cl, ell, k):
    """Evaluate a (C, C, L) table at multipoles ``k`` (any shape) -> (C, C, *k.shape).

    Auto-spectra are interpolated in log-log; cross-spectra through the correlation
    coefficient ``r_ij = C_ij / sqrt(C_ii C_jj)`` linear in log l (valid for any sign).
    Outside the table the end values are held; entries at ``k = 0`` are 0.
    """
    cl = jnp.asarray(cl)
    ell = jnp.asarray(ell, dtype=cl.dtype)
    log_ell = jnp.log(ell)
    safe_k = jnp.where(k > 0, k, 1.0)
    log_k = jnp.log(safe_k).ravel()
    diag = jnp.diagonal(cl, axis1=0, axis2=1).T  # (C, L)
    log_diag = jnp.log(jnp.maximum(diag, _TINY))
    norm = jnp.sqrt(jnp.maximum(diag[:, None, :] * diag[None, :, :], _TINY))
    corr = cl / norm  # (C, C, L)
    interp = jax.vmap(lambda f: jnp.interp(log_k, log_ell, f))
    n_bins = cl.shape[0]
    auto = jnp.exp(interp(log_diag))  # (C, K)
    r = interp(corr.reshape(n_bins * n_bins, -1)).reshape(n_bins, n_bins, -1)
    out = r * jnp.sqrt(auto[:, None, :] * auto[None, :, :])
    out = out.reshape((n_bins, n_bins) + k.shape)
    return jnp.where(k > 0, out, 0.0)


def power_grid(cl, ell, npix: int, field_rad: float, *, half: bool = False):
    """``P_ij(k) = C_ij(|k|) (N/L)^2`` on the full (N, N) FFT grid -> (C, C, N, N).

    ``half=True`` returns the ``rfft2`` half plane (C, C, N, N//2+1).
    """
    n2, inverse = _grid_radii(npix, half)
    k = jnp.asarray(2.0 * np.pi / field_rad * np.sqrt(n2), dtype=jnp.result_type(cl))
    return (interpolate_cl(cl, ell, k) * (npix / field_rad) ** 2)[..., inverse]


def _folded_index(npix: int):
    """``|k| L / 2 pi`` along one axis of the FFT grid: ``min(i, N - i)`` for index i."""
    return np.minimum(np.arange(npix), npix - np.arange(npix))


@functools.cache
def _grid_radii(npix: int, half: bool):
    """The distinct ``(|k| L / 2 pi)^2 = m_y^2 + m_x^2`` of the FFT grid (full or rfft2 half),
    and for every mode the index of its value: the spectrum is interpolated once per radius."""
    m = _folded_index(npix)
    m_x = m[: npix // 2 + 1] if half else m
    n2, inverse = np.unique(m[:, None] ** 2 + m_x[None, :] ** 2, return_inverse=True)
    return n2, inverse.reshape(npix, m_x.size)


@functools.cache
def half_plane_orbits(npix: int):
    """Modes of the rfft2 half plane (N, N//2+1) grouped by the symmetries of the square grid.

    A power spectrum that depends on ``|k|`` only, and everything computed from it mode by mode
    or by FFTs of it, takes one value on each set of modes ``{(+-k_y, +-k_x), (+-k_x, +-k_y)}``.
    Returns numpy arrays ``(rep_y, rep_x, inverse)``: one representative mode per set, and for
    every half-plane mode the index of its set (shape (N, N//2+1)). For N = 32: 153 of 544.
    The sets are ordered as the pairs ``a <= b`` of folded indices of ``np.triu_indices(N//2+1)``.
    """
    iy, ix = np.meshgrid(np.arange(npix), np.arange(npix // 2 + 1), indexing="ij")
    ky = _folded_index(npix)[iy]
    code = np.minimum(ky, ix) * npix + np.maximum(ky, ix)
    _, first, inverse = np.unique(code.ravel(), return_index=True, return_inverse=True)
    return iy.ravel()[first], ix.ravel()[first], inverse.reshape(code.shape)


@functools.cache
def _quadrant(npix: int):
    """Theta-independent constants of the folded quadrant ``0 <= a, b <= N//2`` (numpy).

    An even function on the N x N grid is fixed by its values on the quadrant, and its 2-D DFT
    is ``W f W^T`` there (a cosine transform, ``W[u, a] = mult(a) cos(2 pi a u / N) / N`` for
    the inverse DFT, ``N W`` for the forward one), which costs two (N/2+1)^3 products.
    Returns ``w``, the distinct radii ``n2 = a^2 + b^2`` and the quadrant's index into them,
    the orbit pairs ``(a, b)``, ``a <= b`` (`half_plane_orbits` order), and the number of
    full-grid modes in each orbit.
    """
    m = npix // 2 + 1
    idx = np.arange(m)
    mult = np.where((idx == 0) | ((npix % 2 == 0) & (idx == npix // 2)), 1.0, 2.0)
    w = np.cos(2.0 * np.pi * np.outer(idx, idx) / npix) * mult[None, :] / npix
    n2, radius = np.unique(idx[:, None] ** 2 + idx[None, :] ** 2, return_inverse=True)
    orb_a, orb_b = np.triu_indices(m)
    orbit_modes = mult[orb_a] * mult[orb_b] * np.where(orb_a == orb_b, 1.0, 2.0)
    return w, n2, radius.reshape(m, m), orb_a, orb_b, orbit_modes


def _orbit_gaussian_power(cl, ell, shift, npix, field_rad):
    """Power of the Gaussian field, one C x C matrix per orbit (`half_plane_orbits`): (C, C, K).

    Steps 1-2 of the module docstring on the quadrant, for the C (C + 1) / 2 distinct pairs.
    """
    w, n2, radius, orb_a, orb_b, _ = _quadrant(npix)
    dtype = jnp.result_type(cl)
    n_bins = jnp.shape(cl)[0]
    iu, ju = np.triu_indices(n_bins)
    k = jnp.asarray(2.0 * np.pi / field_rad * np.sqrt(n2), dtype=dtype)
    p = interpolate_cl(cl, ell, k)[iu, ju] * (npix / field_rad) ** 2  # (T, R)
    w_t = jnp.asarray(w.T, dtype=dtype)

    def cos2(f):
        # W f W^T as two plain matrix products over the last axis (one GEMM each on a CPU;
        # a three-operand einsum becomes batched small products, 1.6x slower)
        return jnp.swapaxes(jnp.swapaxes(f @ w_t, -1, -2) @ w_t, -1, -2)

    xi = cos2(p[:, radius])  # (T, M, M): the pixel covariance, xi = ifft2(P)
    lam = (shift[iu] * shift[ju])[:, None, None]
    xi_g = jnp.log(jnp.maximum(1.0 + xi / lam, 1e-6))
    p_g = (npix * npix) * cos2(xi_g)[:, orb_a, orb_b]  # (T, K): P_G = fft2(xi_G)
    p_g = p_g.at[:, 0].set(0.0)
    pair = np.zeros((n_bins, n_bins), dtype=int)
    pair[iu, ju] = pair[ju, iu] = np.arange(len(iu))
    return p_g[pair]


def _orbit_sqrt(cl, ell, shift, npix, field_rad):
    """Colouring matrices S (C, C, K), one per orbit: ``psd_sqrt`` of the Gaussian power.

    The eigenvalue-clipped symmetric root for all of them: in the emulators' boxes up to a fifth
    of the orbits (all at the corners of lsst-y10-jade's) have negative eigenvalues, too many
    for a Cholesky factor with an eigen fallback of fixed size.
    """
    return psd_sqrt_batch_last(_orbit_gaussian_power(cl, ell, shift, npix, field_rad))


def _gaussian_power(cl, ell, shift, npix, field_rad):
    """Half-plane power of the Gaussian field, (N, N//2+1, C, C)."""
    p_g = _orbit_gaussian_power(cl, ell, shift, npix, field_rad)
    return jnp.moveaxis(p_g[:, :, half_plane_orbits(npix)[2]], (0, 1), (-2, -1))


def isotropic_psd_sqrt(p_half):
    """``psd_sqrt`` of a half-plane power (N, N//2+1, C, C) that is isotropic on the grid
    (`half_plane_orbits`): one square root per set of equivalent modes, then copied."""
    rep_y, rep_x, inverse = half_plane_orbits(p_half.shape[0])
    return psd_sqrt(p_half[rep_y, rep_x])[inverse]


def half_plane_weights(npix: int):
    """Multiplicity of each rfft2 column in the full grid (1 for k_x = 0 and Nyquist, else 2)."""
    w = jnp.full(npix // 2 + 1, 2.0).at[0].set(1.0)
    return w.at[-1].set(1.0) if npix % 2 == 0 else w


def _colour(z, s_half):
    """``irfft2(S rfft2(z))`` with s_half (C, C, N, N//2+1) (batch-last)."""
    z_hat = jnp.fft.rfft2(z)  # (C, N, M)
    g_hat = sum(s_half[:, j] * z_hat[j] for j in range(z.shape[0]))
    return jnp.fft.irfft2(g_hat, s=z.shape[-2:])


def gaussian_field(z, sqrt_power):
    """Colour white noise: ``g = irfft2(S(k) rfft2(z))``.

    z: (C, N, N); sqrt_power: (N, N//2+1, C, C) matrix square root of the half-plane power.
    """
    return _colour(z, jnp.moveaxis(sqrt_power, (-2, -1), (0, 1)))


def _check_shapes(z, cl, ell, shift, npix):
    n_bins = jnp.shape(cl)[0]
    n_ell = jnp.shape(ell)[-1]
    if jnp.shape(cl) != (n_bins, n_bins, n_ell):
        raise ValueError(f"cl must have shape (C, C, L) with L = len(ell), got {jnp.shape(cl)}")
    if jnp.shape(z) != (n_bins, npix, npix):
        raise ValueError(f"z must have shape {(n_bins, npix, npix)}, got {jnp.shape(z)}")
    if jnp.shape(shift) != (n_bins,):
        raise ValueError(f"shift must have shape {(n_bins,)}, got {jnp.shape(shift)}")


def lognormal_kappa(z, cl, ell, shift, *, npix: int, field_rad: float):
    """Shifted log-normal tomographic convergence from white noise (docs/design.md §2.3).

    Args:
      z: (C, N, N) standard-normal white noise (the non-centred latent).
      cl: (C, C, L) angular power spectra C_l^{ij} of kappa at multipoles ``ell`` (L,).
      shift: (C,) log-normal shifts lambda_i > 0.
      npix, field_rad: grid size N and side L in radians.
    Returns:
      kappa (C, N, N) with kappa_i >= -lambda_i and two-point function ~C_l.
    """
    shift = jnp.asarray(shift)
    _check_shapes(z, cl, ell, shift, npix)
    s = _orbit_sqrt(cl, ell, shift, npix, field_rad)  # (C, C, K)
    g = _colour(z, s[:, :, half_plane_orbits(npix)[2]])
    # var(g_i) = (1/N^2) sum_k (S S^T)_ii(k) over the full grid (orbits with multiplicity).
    orbit_modes = jnp.asarray(_quadrant(npix)[5], dtype=s.dtype)
    var_g = jnp.sum(orbit_modes * sum(s[:, j] ** 2 for j in range(s.shape[1])), axis=-1) / npix**2
    return shift[:, None, None] * jnp.expm1(g - 0.5 * var_g[:, None, None])


def lognormal_theory_power(cl, ell, shift, *, npix: int, field_rad: float):
    """Exact expected power of ``lognormal_kappa`` maps on the grid, (C, C, N, N).

    ``cov_ij(r) = lambda_i lambda_j (exp(xi'_G,ij(r)) - 1)`` with ``xi'_G`` the covariance of
    the Gaussian field actually generated (zero mode removed, negative eigenvalues clipped).
    It differs from ``power_grid`` only by those two effects (quantified in the tests/docs).
    """
    shift = jnp.asarray(shift)
    s = _orbit_sqrt(cl, ell, shift, npix, field_rad)
    p_g = batch_matmul(s, batch_transpose(s))[:, :, half_plane_orbits(npix)[2]]
    xi_g = jnp.fft.irfft2(p_g, s=(npix, npix))
    lam = shift[:, None] * shift[None, :]
    cov = lam[..., None, None] * jnp.expm1(xi_g)
    return jnp.fft.fft2(cov).real


def simulate_kappa(theta, z, emulator, preset):
    """kappa (C, N, N) at parameters theta (P,) from white noise z (C, N, N).

    The shifts follow `preset.shift_model` (`cosmology.shifts.preset_shift`).
    theta is clipped to the emulator's box inside the traced function (so samplers that step
    outside never crash); user-facing callers should run ``check_in_range`` eagerly first.
    Compiled as one program: called eagerly (as NumPyro's initialisation traces a model, and
    differentiates it, op by op) it costs one compilation instead of hundreds.
    """
    return _simulate_kappa(theta, z, emulator, preset=preset)


@functools.partial(jax.jit, static_argnames=("preset",))
def _simulate_kappa(theta, z, emulator, *, preset):
    from numpyro_diffprior.cosmology.emulator import emulate_cl
    from numpyro_diffprior.cosmology.shifts import preset_shift

    bounds = jnp.asarray(emulator.bounds)
    theta = jnp.clip(theta, bounds[:, 0], bounds[:, 1])
    cl = emulate_cl(emulator, theta)
    shift = preset_shift(preset, theta)
    return lognormal_kappa(z, cl, emulator.ell, shift, npix=preset.npix, field_rad=preset.field_rad)
