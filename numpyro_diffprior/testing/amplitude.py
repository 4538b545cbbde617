"""The amplitude oracle: theta = A ~ LogNormal, kappa_n | A ~ N(0, A^2 K), a non-Gaussian joint.
The denoiser is a 1-D quadrature over A (Tweedie: E[x | x_sigma]; `amplitude_denoise`, an
`apply_fn`); the exact posterior p(A | y) is a 1-D integral and kappa | A, y is a Wiener filter
(`amplitude_posterior`, float64 NumPy)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from numpyro_diffprior.diffusion.normalization import Normalizer
from numpyro_diffprior.testing.common import _grf_covariance, _observed

__all__ = [
    "AmplitudeOracle",
    "AmplitudePosterior",
    "amplitude_oracle",
    "amplitude_denoise",
    "amplitude_whitening",
    "amplitude_posterior",
]


class AmplitudeOracle(NamedTuple):
    """A ~ LogNormal(log_amp_loc, log_amp_scale); theta_n = (A - amp_mean)/amp_std;
    kappa_n | A ~ N(0, A^2 V diag(eigvals) V^T)."""

    log_amp_loc: jnp.ndarray
    log_amp_scale: jnp.ndarray
    amp_mean: jnp.ndarray
    amp_std: jnp.ndarray
    eigvals: jnp.ndarray  # (K,)
    eigvecs: jnp.ndarray  # (K, K)


class AmplitudePosterior(NamedTuple):
    grid: np.ndarray  # (G,) amplitude values
    pdf: np.ndarray  # (G,) density of A given y
    cdf: np.ndarray  # (G,)
    mean: float
    std: float
    kappa_mean: np.ndarray  # (C, N, N) physical


def amplitude_oracle(
    map_shape=(1, 8, 8), *, log_amp_loc=0.0, log_amp_scale=0.3, slope=2.0, kappa_std=0.02
):
    """Amplitude oracle and its normaliser (theta normalised by the exact LogNormal moments;
    physical kappa = kappa_std * kappa_n with kappa_n of unit prior variance)."""
    grf = _grf_covariance(map_shape, slope, None, corr=0.5)
    eigvals, eigvecs = np.linalg.eigh(grf)
    d = stats.lognorm(s=log_amp_scale, scale=np.exp(log_amp_loc))
    amp_mean, amp_std = float(d.mean()), float(d.std())
    rms_amp = np.sqrt(np.exp(2 * log_amp_loc + 2 * log_amp_scale**2))  # sqrt(E[A^2])
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    oracle = AmplitudeOracle(
        f32(log_amp_loc),
        f32(log_amp_scale),
        f32(amp_mean),
        f32(amp_std),
        f32(eigvals / rms_amp**2),
        f32(eigvecs),
    )
    normalizer = Normalizer(f32([amp_mean]), f32([amp_std]), f32(np.full(map_shape[0], kappa_std)))
    return oracle, normalizer


def amplitude_denoise(oracle: AmplitudeOracle, x, sigma, *, num_nodes=192):
    """Exact (quadrature) denoiser E[x | x_sigma] of the amplitude oracle; x (B, D), sigma (B,).

    The quadrature runs on a log-uniform grid over the prior range of A, narrowed to
    A* ± 10 amp_std sigma (A* read off theta_sigma) so that small sigma stays resolved.
    """
    return jax.vmap(lambda xi, si: _amplitude_denoise_one(oracle, xi, si, num_nodes))(x, sigma)


def _amplitude_denoise_one(o: AmplitudeOracle, x, sigma, num_nodes):
    t_sigma, q = x[0], o.eigvecs.T @ x[1:]
    a_lo = jnp.exp(o.log_amp_loc - 7 * o.log_amp_scale)
    a_hi = jnp.exp(o.log_amp_loc + 7 * o.log_amp_scale)
    a_star = o.amp_mean + o.amp_std * t_sigma
    lo = jnp.maximum(a_lo, a_star - 10 * o.amp_std * sigma)
    hi = jnp.minimum(a_hi, a_star + 10 * o.amp_std * sigma)
    lo, hi = jnp.where(lo < hi, lo, a_lo), jnp.where(lo < hi, hi, a_hi)
    u = jnp.linspace(jnp.log(lo), jnp.log(hi), num_nodes)
    amp = jax.lax.stop_gradient(jnp.exp(u))
    log_prior = -0.5 * ((u - o.log_amp_loc) / o.log_amp_scale) ** 2  # density in log A
    t_of_a = (amp - o.amp_mean) / o.amp_std
    var = amp[:, None] ** 2 * o.eigvals + sigma**2  # (G, K)
    log_w = (
        log_prior
        - 0.5 * (t_sigma - t_of_a) ** 2 / sigma**2
        - 0.5 * jnp.sum(q**2 / var + jnp.log(var), axis=-1)
    )
    w = jax.nn.softmax(log_w)
    theta_hat = jnp.sum(w * t_of_a)
    shrink = jnp.sum(w[:, None] * (amp[:, None] ** 2 * o.eigvals) / var, axis=0)
    return jnp.concatenate([theta_hat[None], o.eigvecs @ (shrink * q)])


def amplitude_whitening(oracle: AmplitudeOracle):
    """The oracle's exact non-centring, kappa_n = A V diag(eigvals)^(1/2) w (an
    `infer.noncentred.Whitening`): w ~ N(0, I) independent of A under the prior."""
    from numpyro_diffprior.infer.noncentred import Whitening

    root = jnp.sqrt(oracle.eigvals)
    amp = lambda theta_n: oracle.amp_mean + oracle.amp_std * theta_n[0]

    def to_map(theta_n, w):
        log_det = jnp.sum(jnp.log(root)) + root.shape[0] * jnp.log(jnp.abs(amp(theta_n)))
        return amp(theta_n) * (oracle.eigvecs @ (root * w)), log_det

    return Whitening(
        to_map, lambda theta_n, kappa_n: (oracle.eigvecs.T @ kappa_n) / (root * amp(theta_n))
    )


def amplitude_posterior(oracle, normalizer, map_shape, operator, y, noise_std, mask=None):
    """Exact p(A | y) on a fine grid and the posterior mean of kappa (physical), for
    y = operator @ kappa_phys + noise (1-D quadrature + Wiener filter)."""
    y, noise, keep = _observed(y, noise_std, mask)
    scale_k = np.repeat(np.asarray(normalizer.kappa_std, np.float64), map_shape[1] * map_shape[2])
    v = np.asarray(oracle.eigvecs, np.float64)
    base = (v * np.asarray(oracle.eigvals, np.float64)) @ v.T * np.outer(scale_k, scale_k)
    h = np.asarray(operator, np.float64)[keep] / noise[keep, None]  # whitened
    z0 = y[keep] / noise[keep]
    mu, w = np.linalg.eigh(h @ base @ h.T)
    mu = np.clip(mu, 0, None)
    z = w.T @ z0
    loc, sc = float(oracle.log_amp_loc), float(oracle.log_amp_scale)
    grid = np.exp(np.linspace(loc - 7 * sc, loc + 7 * sc, 4001))
    a2 = grid[:, None] ** 2
    log_like = -0.5 * np.sum(z**2 / (a2 * mu + 1) + np.log(a2 * mu + 1), axis=1)
    log_post = log_like + stats.lognorm(s=sc, scale=np.exp(loc)).logpdf(grid)
    pdf = np.exp(log_post - log_post.max())
    pdf /= np.trapezoid(pdf, grid)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    mean = float(np.trapezoid(grid * pdf, grid))
    std = float(np.sqrt(np.trapezoid((grid - mean) ** 2 * pdf, grid)))
    # E[kappa | A, y] = A^2 B H^T (A^2 H B H^T + I)^-1 z0, averaged over p(A | y)
    weights = pdf * np.gradient(grid)
    weights /= weights.sum()
    coef = np.sum(weights[:, None] * a2 / (a2 * mu + 1), axis=0) * z
    kappa_mean = base @ h.T @ (w @ coef)
    return AmplitudePosterior(grid, pdf, cdf, mean, std, kappa_mean.reshape(map_shape))
