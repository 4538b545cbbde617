"""EDM denoising score-matching loss on the joint vector (Karras et al. 2022, Eq. 2 and 8,
training noise distribution ln sigma ~ N(P_mean, P_std^2), weight lambda = 1 / c_out^2).

Balance of the two parts (docs/design.md §2.5): theta has P ~ 2-6 coordinates against C*N*N ~ 5000
map pixels, so a plain sum over coordinates would all but ignore theta. The loss is

    L = E_sigma,x,n[ lambda(sigma) (mean_kappa |D - x|^2 + theta_weight * mean_theta |D - x|^2) ]

i.e. the map and the parameter vector each count as one block, and `theta_weight` (default 1)
sets their ratio. The per-part terms are returned for monitoring.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_diffprior.diffusion.preconditioning import loss_weight

__all__ = ["LossParts", "sample_sigma", "denoising_loss", "weighted_errors"]


class LossParts(NamedTuple):
    total: jnp.ndarray
    theta: jnp.ndarray
    kappa: jnp.ndarray


def sample_sigma(rng_key, num, *, P_mean=-1.2, P_std=1.2):
    """ln sigma ~ N(P_mean, P_std^2), shape (num,)."""
    return jnp.exp(P_mean + P_std * jax.random.normal(rng_key, (num,)))


def weighted_errors(denoise_fn, x, sigma, noise, n_params, *, sigma_data=1.0):
    """Per-example lambda-weighted mean squared errors of theta and kappa, each (B,)."""
    x_hat = denoise_fn(x + sigma[:, None] * noise, sigma)
    err = (x_hat - x) ** 2
    w = loss_weight(sigma, sigma_data)
    return w * jnp.mean(err[:, :n_params], axis=1), w * jnp.mean(err[:, n_params:], axis=1)


def denoising_loss(
    rng_key,
    denoise_fn,
    x,
    n_params,
    *,
    P_mean=-1.2,
    P_std=1.2,
    sigma_data=1.0,
    theta_weight=1.0,
):
    """Monte-Carlo EDM loss for a batch of clean normalised vectors x (B, D) -> LossParts.

    `denoise_fn(x (B, D), sigma (B,))` is the preconditioned denoiser D.
    """
    key_sigma, key_noise = jax.random.split(rng_key)
    sigma = sample_sigma(key_sigma, x.shape[0], P_mean=P_mean, P_std=P_std).astype(x.dtype)
    noise = jax.random.normal(key_noise, x.shape, x.dtype)
    l_theta, l_kappa = weighted_errors(denoise_fn, x, sigma, noise, n_params, sigma_data=sigma_data)
    theta, kappa = jnp.mean(l_theta), jnp.mean(l_kappa)
    return LossParts(kappa + theta_weight * theta, theta, kappa)
