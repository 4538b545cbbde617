"""The exact conditional denoiser of the Gaussian-joint oracle under a linear Gaussian shear
likelihood (docs/design.md §6): the oracle of the amortised posterior.

For the prior N(mu, S) (normalised coordinates; `testing.gaussian`) and y = H x + noise with
H = [0 | A diag(kappa_std)] (A: Kaiser-Squires, dense) and noise N(0, R), masked pixels having
infinite variance (precision 0), the posterior is N(m_y, S_y),
S_y = (S^-1 + H^T R^-1 H)^-1, and the exact conditional denoiser is

    E[x | x + sigma n, y] = m_y + S_y (S_y + sigma^2 I)^-1 (x_sigma - m_y).

`encode` computes (m_y, eigen-decomposition of S_y) per observation in the Woodbury form
S_y = S - S H^T W^1/2 (I + W^1/2 H S H^T W^1/2)^-1 W^1/2 H S (W = R^-1, 0 where masked),
which stays well conditioned in float32. `gaussian_amortized_prior` puts it in an
`amortized.AmortizedPrior`, so the amortised sampler can be checked against
`testing.gaussian_posterior`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_diffprior.testing.common import linear_operator_matrix
from numpyro_diffprior.testing.gaussian import (
    GaussianOracle,
    gaussian_denoise,
    gaussian_oracle_prior,
)

__all__ = ["ConditionalOracleParams", "GaussianConditionalOracle", "gaussian_amortized_prior"]


class ConditionalOracleParams(NamedTuple):
    prior: GaussianOracle  # N(mean, U diag(eigvals) U^T), normalised coordinates
    operator: jnp.ndarray  # (M, C*N*N) physical linear operator (Kaiser-Squires), M = C*2*N*N


@dataclasses.dataclass(frozen=True)
class GaussianConditionalOracle:
    """Conditional denoiser (`amortized.denoiser` interface) of the Gaussian oracle."""

    def encode(self, params: ConditionalOracleParams, obs, normalizer):
        batch = obs.shear.shape[:-4]
        flat = lambda a: a.reshape((-1, a.shape[-4] * a.shape[-3] * a.shape[-2] * a.shape[-1]))
        y, std = flat(obs.shear), flat(obs.noise_std)
        mean, cov_y, root = jax.vmap(lambda yy, ss: _posterior(params, normalizer, yy, ss))(y, std)
        del cov_y
        vals, vecs = root
        unflat = lambda a: a.reshape(batch + a.shape[1:])
        return unflat(mean), unflat(vals), unflat(vecs)

    def __call__(self, params, x, sigma, context):
        mean, vals, vecs = context
        coef = jnp.einsum("bd,bdk->bk", x - mean, vecs)
        shrink = vals / (vals + sigma[:, None] ** 2)
        return mean + jnp.einsum("bk,bdk->bd", coef * shrink, vecs)

    def denoise_prior(self, params, x, sigma):
        return gaussian_denoise(params.prior, x, sigma)


def _posterior(params, normalizer, y, noise_std):
    """(m_y (D,), S_y (D, D), (eigvals, eigvecs) of S_y) for one flat observation."""
    prior = params.prior
    u, lam = prior.eigvecs, prior.eigvals
    cov = (u * lam) @ u.T
    n_params = normalizer.theta_mean.shape[0]
    npix = params.operator.shape[1] // normalizer.kappa_std.shape[0]
    scale_k = jnp.repeat(normalizer.kappa_std, npix)
    h_k = params.operator * scale_k[None, :]
    h = jnp.concatenate([jnp.zeros((h_k.shape[0], n_params), h_k.dtype), h_k], axis=1)
    observed = jnp.isfinite(noise_std) & (noise_std > 0)
    w_half = jnp.where(observed, 1.0 / jnp.where(observed, noise_std, 1.0), 0.0)
    y = jnp.where(observed, y, 0.0)
    b = w_half[:, None] * (h @ cov)  # W^1/2 H S, (M, D)
    inner = jnp.eye(h.shape[0], dtype=cov.dtype) + b @ (h.T * w_half[None, :])
    resid = w_half * (y - h @ prior.mean)
    # One solve for both right-hand sides: two independent batched LAPACK solves in one
    # program can deadlock XLA's CPU thread pool (each waits for pool threads the other holds).
    solved = jnp.linalg.solve(inner, jnp.concatenate([b, resid[:, None]], axis=1))
    gain = solved[:, :-1]  # (I + W^1/2 H S H^T W^1/2)^-1 W^1/2 H S
    cov_y = cov - b.T @ gain
    cov_y = 0.5 * (cov_y + cov_y.T)
    mean = prior.mean + (cov @ h.T) @ (w_half * solved[:, -1])
    vals, vecs = jnp.linalg.eigh(cov_y)
    return mean, cov_y, (jnp.clip(vals, 0.0, None), vecs)


def gaussian_amortized_prior(map_shape, *, n_params=2, seed=0, kappa_std=0.02,
                             observation_range=None, **prior_kwargs):  # fmt: skip
    """An `AmortizedPrior` whose conditional denoiser is exact for the Gaussian-joint oracle
    of `testing.gaussian_oracle_prior` (same arguments) under a Kaiser-Squires likelihood.

    Returns (amortized prior, oracle, normalizer); observation_range: None (any observation)
    or an `amortized.ObservationRange` to test the sampler's refusals.
    """
    from numpyro_diffprior.amortized.prior import AmortizedPrior
    from numpyro_diffprior.simulator.shear import kaiser_squires

    _, oracle, normalizer = gaussian_oracle_prior(
        map_shape, n_params=n_params, seed=seed, kappa_std=kappa_std
    )
    operator = jnp.asarray(linear_operator_matrix(kaiser_squires, map_shape), jnp.float32)
    prior = AmortizedPrior(
        GaussianConditionalOracle(),
        params=ConditionalOracleParams(oracle, operator),
        observation_range=observation_range,
        normalizer=normalizer,
        n_params=n_params,
        map_shape=map_shape,
        **prior_kwargs,
    )
    return prior, oracle, normalizer
