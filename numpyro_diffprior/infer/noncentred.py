"""Non-centred HMC refinement of diffusion posterior draws with the learned score.

Reverse diffusion with MMPS guidance shrinks variance-like parameters (sigma_8, Omega_c)
towards their prior mean for observations far from it (benchmarks/results/oracle_shrinkage.md):
in the centred coordinates (theta, kappa) the posterior is a funnel, and the Gaussian
approximation of p(y | x_sigma) gives theta little of the data's variance information. The
field-level literature samples such models in non-centred coordinates (Porqueres et al. 2022;
Betancourt & Girolami 2015). We do the same with the diffusion prior:

    kappa_n = T_theta(w),   log pi(theta_n, w) = log p_sigma(x) + log |det dT_theta/dw|
                                                 + log p(y | x),   x = (theta_n, T_theta(w)),

with the gradient of log p_sigma from Tweedie's formula, (D(x; sigma) - x) / sigma^2, at a small
sigma (`sigma`), chained through T by a vjp. T_theta is only a change of variables: any smooth
invertible family leaves the target unchanged, and a good one (the colouring by the theory power
spectrum, `spectral_whitening`) makes the posterior nearly isotropic, so that HMC moves theta
and the whole map together. The chain is unadjusted (there is no tractable density to accept
against); its bias shrinks with `step_size` and with `sigma`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "Whitening",
    "identity_whitening",
    "spectral_whitening",
    "gaussian_log_likelihood",
    "noncentred_hmc",
]


class Whitening(NamedTuple):
    """to_map(theta_n, w) -> (kappa_n, log |det d kappa_n / d w|); to_latent(theta_n, kappa_n)
    -> w, its inverse; flat kappa_n and w (K,), theta_n (P,), normalised coordinates.

    The map and its log-determinant come from one function, so that a factorisation is computed
    once per evaluation.
    """

    to_map: object
    to_latent: object


def identity_whitening() -> Whitening:
    """T_theta(w) = w: plain (centred) HMC on the joint."""
    return Whitening(lambda theta, w: (w, 0.0), lambda theta, kappa: kappa)


def spectral_whitening(prior, emulator=None, *, floor=1e-4) -> Whitening:
    """Colouring by the theory spectrum: kappa_hat_n(k) = L_theta(k) w_hat(k), with L the
    Cholesky factor of the C x C normalised power P_ij(k) / (std_i std_j) + floor I
    (`simulator.lognormal.power_grid`, C_l from the preset's emulator); L(0) = I. The factors
    and the triangular solves are written out entry by entry (`simulator.psd_sqrt`), with no
    LAPACK call.

    log |det| = sum over the full k grid of log det L(k) (the map is block-diagonal in k).
    `floor` (normalised units) keeps L invertible where the spectrum vanishes.
    """
    from numpyro_diffprior.cosmology.emulator import emulate_cl, load_emulator
    from numpyro_diffprior.presets import get_preset
    from numpyro_diffprior.simulator.lognormal import half_plane_weights, power_grid
    from numpyro_diffprior.simulator.psd_sqrt import (
        cholesky_batch_last,
        matvec_batch_last,
        solve_lower_batch_last,
    )

    if prior.preset is None:
        raise ValueError("spectral_whitening needs a prior with a preset; pass a Whitening")
    preset = get_preset(prior.preset)
    emulator = load_emulator(preset) if emulator is None else emulator
    norm = prior.normalizer
    n_bins, npix = preset.n_bins, preset.npix
    bounds = jnp.asarray(emulator.bounds)
    eye = jnp.eye(n_bins)
    mult = half_plane_weights(npix)[None, :]

    def factor(theta_n):
        theta = jnp.clip(theta_n * norm.theta_std + norm.theta_mean, bounds[:, 0], bounds[:, 1])
        p = power_grid(emulate_cl(emulator, theta), emulator.ell, npix, preset.field_rad, half=True)
        p = p / (norm.kappa_std[:, None] * norm.kappa_std[None, :])[..., None, None]
        p = (p + floor * eye[..., None, None]).at[:, :, 0, 0].set(eye)
        return cholesky_batch_last(0.5 * (p + jnp.swapaxes(p, 0, 1)))

    def to_map(theta_n, w):
        chol = factor(theta_n)
        w_hat = jnp.fft.rfft2(w.reshape(preset.map_shape))
        kappa = jnp.fft.irfft2(matvec_batch_last(chol, w_hat), s=(npix, npix))
        log_det = jnp.sum(mult * jnp.sum(jnp.log(jnp.diagonal(chol, 0, 0, 1)), axis=-1))
        return kappa.reshape(-1), log_det

    def to_latent(theta_n, kappa_n):
        chol = factor(theta_n)
        k_hat = jnp.fft.rfft2(kappa_n.reshape(preset.map_shape))
        w_hat = solve_lower_batch_last(chol, k_hat)
        return jnp.fft.irfft2(w_hat, s=(npix, npix)).reshape(-1)

    return Whitening(to_map, to_latent)


def gaussian_log_likelihood(obs):
    """log N(y; A x + b, Sigma_n) up to a constant for a `guidance.NormalisedObservation`."""

    def log_likelihood_n(x_n):
        resid = obs.y - obs.forward(x_n) - obs.offset
        return -0.5 * jnp.sum(obs.precision * resid**2)

    return log_likelihood_n


def noncentred_hmc(
    rng_key,
    x_n,
    *,
    score_fn,
    log_likelihood_n,
    whitening: Whitening,
    n_params: int,
    sigma=0.02,
    num_iterations=10,
    num_leapfrog=16,
    step_size=0.05,
):
    """Refine draws x_n (B, D) by `num_iterations` unadjusted HMC trajectories each, in the
    non-centred coordinates (theta_n, w) of `whitening`, targeting p_sigma(x) p(y | x).

    score_fn(x (B, D), sigma (B,)) is the prior's score (`DiffusionPrior.score_normalized`);
    log_likelihood_n(x (D,)) the log-likelihood in normalised coordinates. Returns the refined
    x_n (B, D).
    """
    num = x_n.shape[0]
    sig = sigma * jnp.ones((num,), x_n.dtype)
    grad_lik = jax.vmap(jax.grad(log_likelihood_n))
    to_map = jax.vmap(whitening.to_map)

    def transform(q):
        theta = q[:, :n_params]
        kappa, log_det = to_map(theta, q[:, n_params:])
        return jnp.concatenate([theta, kappa], axis=1), log_det

    def grad_log_target(q):
        (x, _), pullback = jax.vjp(transform, q)
        g_x = score_fn(x, sig) + grad_lik(x)
        return pullback((g_x, jnp.ones((num,), x.dtype)))[0]

    def leapfrog(i, carry):
        # One gradient per step: a new trajectory starts every num_leapfrog steps with fresh
        # momentum; inside one, the two momentum half-steps between position steps merge.
        q, p = carry
        g = grad_log_target(q)
        fresh = jax.random.normal(jax.random.fold_in(rng_key, i), q.shape, q.dtype)
        p = jnp.where(i % num_leapfrog == 0, fresh + 0.5 * step_size * g, p + step_size * g)
        return q + step_size * p, p

    theta0 = x_n[:, :n_params]
    w0 = jax.vmap(whitening.to_latent)(theta0, x_n[:, n_params:])
    q0 = jnp.concatenate([theta0, w0], axis=1)
    q, _ = jax.lax.fori_loop(0, num_iterations * num_leapfrog, leapfrog, (q0, jnp.zeros_like(q0)))
    return transform(q)[0]
