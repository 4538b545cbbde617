"""A cheap synthetic joint (theta, kappa) source for tests: kappa | theta is a Gaussian random
field whose amplitude depends on theta (the 'amplitude model' shape of docs/design.md §2.7)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_diffprior.cosmology.params import prior_mean_std


def synthetic_source(preset):
    """sample_batch(rng_key, B) -> theta (B, P) ~ N(prior mean, prior std), kappa (B, C, N, N)."""
    mean, std = prior_mean_std(preset.param_names)
    c, n, _ = preset.map_shape
    k = jnp.sqrt(jnp.fft.fftfreq(n)[:, None] ** 2 + jnp.fft.fftfreq(n)[None, :] ** 2)
    amp = jnp.where(k > 0, (k + 0.05) ** -1.0, 0.0)
    scale = 0.01 * (1.0 + jnp.arange(c))[:, None, None]

    def sample_batch(rng_key, batch_size):
        k1, k2 = jax.random.split(rng_key)
        z = jax.random.normal(k1, (batch_size, preset.n_params))
        theta = mean + std * z
        white = jax.random.normal(k2, (batch_size, c, n, n))
        g = jnp.fft.ifft2(jnp.fft.fft2(white) * amp).real
        g = g / jnp.std(g, axis=(-2, -1), keepdims=True)
        a = jnp.exp(0.3 * z[:, :1] + 0.2 * z[:, 1:2])[:, :, None, None]
        return theta.astype(jnp.float32), (scale * a * g).astype(jnp.float32)

    return sample_batch
