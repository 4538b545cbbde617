"""Exact oracles for testing diffusion priors and posterior samplers (DESIGN §2.7).

Two joint priors p(theta, kappa) whose noisy densities p_sigma(x) = p * N(0, sigma^2 I) are known
in closed form, in the package's *normalised* flat coordinates x = [theta_n, kappa_n]:

- **Gaussian joint**: theta_n ~ N(0, I), kappa_n = M theta_n + g, g ~ GRF (a stationary Gaussian
  field, Fourier-diagonal per bin, correlated between bins). Denoiser
  D(x; sigma) = mu + Sigma (Sigma + sigma^2 I)^-1 (x - mu); exact posterior under any linear
  Gaussian observation by Gaussian conditioning.
- **Amplitude**: theta = A ~ LogNormal, kappa_n | A ~ N(0, A^2 K). Non-Gaussian joint; the
  denoiser is a 1-D quadrature over A (Tweedie: E[x | x_sigma]); the exact posterior p(A | y) is a
  1-D integral and kappa | A, y is a Wiener filter.

`gaussian_denoise(oracle, x, sigma)` and `amplitude_denoise(oracle, x, sigma)` have the
`apply_fn(params, x (B, D), sigma (B,))` signature, so an oracle plugs into `DiffusionPrior` in
place of a trained network. Exact posteriors are computed eagerly in float64 NumPy.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from numpyro_diffprior.diffusion.normalization import Normalizer

__all__ = [
    "gaussian_oracle_prior",
    "GaussianOracle",
    "AmplitudeOracle",
    "GaussianPosterior",
    "AmplitudePosterior",
    "gaussian_joint_oracle",
    "amplitude_oracle",
    "gaussian_denoise",
    "amplitude_denoise",
    "gaussian_log_density",
    "gaussian_prior_moments",
    "gaussian_posterior",
    "amplitude_posterior",
    "linear_operator_matrix",
    "ks_distance",
]


class GaussianOracle(NamedTuple):
    """N(mean, U diag(eigvals) U^T) in normalised coordinates (arrays only: a pytree)."""

    mean: jnp.ndarray  # (D,)
    eigvals: jnp.ndarray  # (D,)
    eigvecs: jnp.ndarray  # (D, D)


class AmplitudeOracle(NamedTuple):
    """A ~ LogNormal(log_amp_loc, log_amp_scale); theta_n = (A - amp_mean)/amp_std;
    kappa_n | A ~ N(0, A^2 V diag(eigvals) V^T)."""

    log_amp_loc: jnp.ndarray
    log_amp_scale: jnp.ndarray
    amp_mean: jnp.ndarray
    amp_std: jnp.ndarray
    eigvals: jnp.ndarray  # (K,)
    eigvecs: jnp.ndarray  # (K, K)


class GaussianPosterior(NamedTuple):
    mean: np.ndarray  # (D,) physical flat joint
    cov: np.ndarray  # (D, D)


class AmplitudePosterior(NamedTuple):
    grid: np.ndarray  # (G,) amplitude values
    pdf: np.ndarray  # (G,) density of A given y
    cdf: np.ndarray  # (G,)
    mean: float
    std: float
    kappa_mean: np.ndarray  # (C, N, N) physical


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


def gaussian_joint_oracle(n_params=2, map_shape=(1, 8, 8), *, coupling=0.6, slope=2.0, seed=0):
    """Gaussian joint oracle: theta_n ~ N(0, I), kappa_n = M theta_n + g (DESIGN §2.7).

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


def ks_distance(draws, grid, cdf):
    """Kolmogorov-Smirnov distance between the empirical CDF of `draws` and a tabulated CDF."""
    draws = np.sort(np.ravel(np.asarray(draws, np.float64)))
    exact = np.interp(draws, grid, cdf)
    n = draws.size
    upper = np.arange(1, n + 1) / n - exact
    lower = exact - np.arange(n) / n
    return float(max(upper.max(), lower.max()))


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
