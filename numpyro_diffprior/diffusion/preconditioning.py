"""EDM preconditioning of a raw network F (Karras et al. 2022, "Elucidating the design
space of diffusion-based generative models", Table 1 and Eq. 7).

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))

applied to the flat normalised joint vector x = [theta_n, kappa_n] (theta first). In
normalised coordinates every coordinate has roughly unit scale, so sigma_data = 1 by default.
The Tweedie score of the noisy prior is (D(x; sigma) - x) / sigma^2 (docs/design.md §2.5).
"""

from __future__ import annotations

import jax.numpy as jnp

from numpyro_diffprior.diffusion.normalization import pack, unpack

__all__ = [
    "c_skip",
    "c_out",
    "c_in",
    "c_noise",
    "loss_weight",
    "precondition",
    "make_denoise_fn",
    "score_from_denoiser",
]


def c_skip(sigma, sigma_data=1.0):
    """sigma_data^2 / (sigma^2 + sigma_data^2)."""
    return sigma_data**2 / (sigma**2 + sigma_data**2)


def c_out(sigma, sigma_data=1.0):
    """sigma sigma_data / sqrt(sigma^2 + sigma_data^2)."""
    return sigma * sigma_data / jnp.sqrt(sigma**2 + sigma_data**2)


def c_in(sigma, sigma_data=1.0):
    """1 / sqrt(sigma^2 + sigma_data^2)."""
    return 1.0 / jnp.sqrt(sigma**2 + sigma_data**2)


def c_noise(sigma):
    """ln(sigma) / 4."""
    return jnp.log(sigma) / 4.0


def loss_weight(sigma, sigma_data=1.0):
    """EDM loss weight lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def precondition(raw_fn, x, sigma, *, sigma_data=1.0):
    """D(x; sigma) for a raw network `raw_fn(x_in (B, D), c_noise (B,)) -> F (B, D)`.

    x: (B, D); sigma: (B,) (or a scalar, broadcast over the batch).
    """
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    s = sigma[:, None]
    F = raw_fn(c_in(s, sigma_data) * x, c_noise(sigma))
    return c_skip(s, sigma_data) * x + c_out(s, sigma_data) * F


def make_denoise_fn(apply_fn, params, n_params, map_shape, *, sigma_data=1.0):
    """Wrap a network `apply_fn(params, theta_in, kappa_in, c_noise) -> (F_theta, F_kappa)`
    into the package-wide `denoise_fn(x (B, D), sigma (B,)) -> x_hat (B, D)`."""

    def raw_fn(x_in, cn):
        theta_in, kappa_in = unpack(x_in, n_params, map_shape)
        F_theta, F_kappa = apply_fn(params, theta_in, kappa_in, cn)
        return pack(F_theta, F_kappa)

    def denoise_fn(x, sigma):
        return precondition(raw_fn, x, sigma, sigma_data=sigma_data)

    return denoise_fn


def score_from_denoiser(denoise_fn, x, sigma):
    """Tweedie: grad log p_sigma(x) = (D(x; sigma) - x) / sigma^2, x (B, D), sigma (B,)."""
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return (denoise_fn(x, sigma) - x) / sigma[:, None] ** 2
