"""Kaiser-Squires shear operator, shape noise, masks and the Gaussian shear likelihood.

Kaiser & Squires (1993), spin-2 operator in Fourier space (docs/design.md §2.4), with
``k1`` along x (last axis) and ``k2`` along y:
``gamma1_hat = (k1^2 - k2^2)/k^2 kappa_hat``, ``gamma2_hat = 2 k1 k2 / k^2 kappa_hat``, 0 at k = 0.

On the Nyquist row/column of an even grid the mode k and its conjugate -k coincide in k1 (or
k2), so ``2 k1 k2 / k^2`` is odd there and cannot act on a real map; we set D2 = 0 and
D1 = +-1 (the sign of k1^2 - k2^2) on those lines. Then ``D1^2 + D2^2 = 1`` at every k != 0 and
the operator A is exactly an isometry on zero-mean maps: ``A^T A = I`` and its inverse is its
adjoint (the E-mode reconstruction); ``kaiser_squires_inverse(..., b_mode=True)`` also
returns the B-mode map.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "kaiser_squires_kernel",
    "kaiser_squires",
    "kaiser_squires_adjoint",
    "kaiser_squires_inverse",
    "add_shape_noise",
    "expand_mask",
    "noise_std_map",
    "shear_log_likelihood",
]

_LOG_2PI = float(np.log(2.0 * np.pi))


def kaiser_squires_kernel(npix: int):
    """(D1, D2) on the (N, N) FFT grid (dimensionless, so independent of the field size)."""
    freq = np.fft.fftfreq(npix)
    k2, k1 = np.meshgrid(freq, freq, indexing="ij")  # k2 along y (axis -2), k1 along x
    ksq = k1**2 + k2**2
    safe = np.where(ksq > 0, ksq, 1.0)
    d1 = np.where(ksq > 0, (k1**2 - k2**2) / safe, 0.0)
    d2 = np.where(ksq > 0, 2.0 * k1 * k2 / safe, 0.0)
    if npix % 2 == 0:
        nyquist = (np.abs(k1) == 0.5) | (np.abs(k2) == 0.5)
        d1 = np.where(nyquist, np.where(k1**2 >= k2**2, 1.0, -1.0), d1)
        d2 = np.where(nyquist, 0.0, d2)
    return jnp.asarray(d1, jnp.float32), jnp.asarray(d2, jnp.float32)


def kaiser_squires(kappa):
    """Convergence (..., C, N, N) -> shear (..., C, 2, N, N)."""
    d1, d2 = kaiser_squires_kernel(kappa.shape[-1])
    k_hat = jnp.fft.fft2(kappa)
    g1 = jnp.fft.ifft2(d1 * k_hat).real
    g2 = jnp.fft.ifft2(d2 * k_hat).real
    return jnp.stack([g1, g2], axis=-3)


def kaiser_squires_adjoint(gamma):
    """Adjoint A^T: shear (..., C, 2, N, N) -> convergence (..., C, N, N)."""
    d1, d2 = kaiser_squires_kernel(gamma.shape[-1])
    g_hat = jnp.fft.fft2(gamma)
    return jnp.fft.ifft2(d1 * g_hat[..., 0, :, :] + d2 * g_hat[..., 1, :, :]).real


def kaiser_squires_inverse(gamma, *, b_mode: bool = False):
    """Zero-mean E-mode convergence from shear (equal to the adjoint: A is unitary).

    With ``b_mode=True`` returns ``(kappa_E, kappa_B)``; kappa_B = 0 for pure E-mode shear.
    """
    kappa_e = kaiser_squires_adjoint(gamma)
    if not b_mode:
        return kappa_e
    d1, d2 = kaiser_squires_kernel(gamma.shape[-1])
    g_hat = jnp.fft.fft2(gamma)
    kappa_b = jnp.fft.ifft2(-d2 * g_hat[..., 0, :, :] + d1 * g_hat[..., 1, :, :]).real
    return kappa_e, kappa_b


def _broadcast_std(noise_std, shear_shape):
    std = jnp.asarray(noise_std, dtype=jnp.float32)
    if std.ndim == 1:
        if std.shape[0] != shear_shape[-4]:
            raise ValueError(
                f"noise_std of shape {std.shape} does not match {shear_shape[-4]} bins"
            )
        std = std[:, None, None, None]
    elif std.ndim not in (0, 4) or (std.ndim == 4 and std.shape != tuple(shear_shape[-4:])):
        raise ValueError(
            f"noise_std must be a scalar, (C,) or {tuple(shear_shape[-4:])}, got shape {std.shape}"
        )
    return jnp.broadcast_to(std, shear_shape[-4:])


def add_shape_noise(rng_key, gamma, noise_std):
    """gamma + independent Gaussian noise of std ``noise_std`` (scalar, (C,) or (C, 2, N, N))."""
    std = _broadcast_std(noise_std, gamma.shape[-4:])
    return gamma + std * jax.random.normal(rng_key, gamma.shape, gamma.dtype)


def expand_mask(mask, n_bins: int, npix: int):
    """Boolean mask of shape (N, N), (C, N, N) or (C, 2, N, N) -> (C, 2, N, N); True = observed.

    A concrete mask stays a numpy array (usable in eager checks even inside a trace).
    """
    if mask is None:
        return None
    concrete = not isinstance(mask, jax.core.Tracer)
    m = np.asarray(mask) if concrete else mask
    if m.dtype != bool:
        raise ValueError(f"mask must be boolean (True = observed), got dtype {m.dtype}")
    shape = (n_bins, 2, npix, npix)
    if m.shape == (npix, npix):
        m = m[None, None]
    elif m.shape == (n_bins, npix, npix):
        m = m[:, None]
    elif m.shape != shape:
        raise ValueError(
            f"mask must have shape {(npix, npix)}, {(n_bins, npix, npix)} or {shape}, "
            f"got {tuple(m.shape)}"
        )
    return np.broadcast_to(m, shape) if concrete else jnp.broadcast_to(m, shape)


def noise_std_map(preset, mask=None, noise_std=None):
    """Per-pixel noise std (C, 2, N, N); masked pixels get +inf (no information).

    ``noise_std`` defaults to ``preset.noise_std()`` = sigma_e / sqrt(n_i A_pix) per bin; it may
    also be a scalar, (C,) or a per-pixel (C, 2, N, N) map (must be > 0 where observed).
    """
    shape = preset.shear_shape
    std = _broadcast_std(preset.noise_std() if noise_std is None else noise_std, shape)
    if not isinstance(std, jax.core.Tracer) and not bool(jnp.all((std > 0) | jnp.isinf(std))):
        raise ValueError("noise_std must be positive")
    m = expand_mask(mask, preset.n_bins, preset.npix)
    return std if m is None else jnp.where(m, std, jnp.inf)


def _observed(shape, noise_std, mask):
    std = _broadcast_std(noise_std, shape)
    observed = jnp.isfinite(std) & (std > 0)
    if mask is not None:
        observed = observed & expand_mask(mask, shape[-4], shape[-1])
    return std, observed


def shear_log_likelihood(kappa, shear_obs, noise_std, mask=None):
    """Gaussian log-likelihood ``sum_obs log N(shear_obs; A kappa, noise_std^2)``.

    kappa (C, N, N); shear_obs (C, 2, N, N); noise_std scalar, (C,) or (C, 2, N, N) (inf =
    unobserved). Masked pixels contribute exactly 0; NaN/garbage in them never reaches the
    value or the gradient (the data are sanitised with ``where`` before any arithmetic).
    """
    shear_obs = jnp.asarray(shear_obs)
    if shear_obs.shape[-4:] != kappa.shape[:-2] + (2,) + kappa.shape[-2:]:
        raise ValueError(
            f"shear_obs shape {shear_obs.shape} does not match kappa shape {kappa.shape}"
        )
    std, observed = _observed(shear_obs.shape[-4:], noise_std, mask)
    return _masked_normal_log_prob(shear_obs, kaiser_squires(kappa), std, observed)


def _masked_normal_log_prob(value, loc, scale, observed):
    """Sum over the last 4 axes of log N(value; loc, scale) on observed pixels only."""
    value = jnp.where(observed, value, 0.0)
    scale = jnp.where(observed, scale, 1.0)
    resid = jnp.where(observed, (value - loc) / scale, 0.0)
    terms = jnp.where(observed, -0.5 * resid**2 - jnp.log(scale) - 0.5 * _LOG_2PI, 0.0)
    return jnp.sum(terms, axis=(-4, -3, -2, -1))
