"""EDM preconditioning identities (Karras et al. 2022, Table 1 / App. B.6) and Tweedie score."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.diffusion import preconditioning as pc

SIGMAS = jnp.logspace(-3, 2, 11)


@pytest.mark.parametrize("sigma_data", [0.5, 1.0, 2.0])
def test_coefficient_identities(sigma_data):
    s, sd = SIGMAS, sigma_data
    # c_in normalises the noisy input to unit variance: c_in^2 (s^2 + sd^2) = 1
    np.testing.assert_allclose(pc.c_in(s, sd) ** 2 * (s**2 + sd**2), 1.0, rtol=1e-6)
    # the effective training target (x - c_skip y) / c_out has unit variance (App. B.6)
    target_var = ((1 - pc.c_skip(s, sd)) ** 2 * sd**2 + pc.c_skip(s, sd) ** 2 * s**2) / pc.c_out(
        s, sd
    ) ** 2
    np.testing.assert_allclose(target_var, 1.0, rtol=1e-5)
    # lambda(sigma) c_out(sigma)^2 = 1 (uniform effective weight)
    np.testing.assert_allclose(pc.loss_weight(s, sd) * pc.c_out(s, sd) ** 2, 1.0, rtol=1e-5)
    np.testing.assert_allclose(pc.c_noise(s), np.log(np.asarray(s)) / 4, rtol=1e-6)


def test_denoiser_tends_to_identity_at_small_sigma():
    x = jax.random.normal(jax.random.key(0), (3, 7))
    raw = lambda x_in, cn: 10.0 * jnp.sin(x_in) + cn[:, None]  # any bounded-ish F
    for sigma, tol in [(1e-2, 2e-1), (1e-4, 2e-3), (1e-6, 2e-5)]:
        d = pc.precondition(raw, x, jnp.full(3, sigma))
        np.testing.assert_allclose(d, x, atol=tol)


@pytest.mark.parametrize("sigma", [0.01, 0.3, 1.0, 5.0, 80.0])
def test_zero_network_is_exact_gaussian_denoiser_and_score(sigma):
    # For data N(0, sd^2 I) the exact denoiser is sd^2/(sd^2+s^2) x = c_skip x, i.e. F = 0,
    # and the Tweedie score equals the analytic score -x / (sd^2 + s^2).
    sd = 0.7
    x = jax.random.normal(jax.random.key(1), (5, 4)) * 3.0
    denoise = lambda x, s: pc.precondition(lambda xi, cn: jnp.zeros_like(xi), x, s, sigma_data=sd)
    d = denoise(x, jnp.full(5, sigma))
    np.testing.assert_allclose(d, sd**2 / (sd**2 + sigma**2) * x, rtol=1e-6)
    score = pc.score_from_denoiser(denoise, x, jnp.full(5, sigma))
    # float32 cancellation in (D - x) / sigma^2: absolute error ~ eps |x| / sigma^2
    atol = 4e-7 * float(jnp.max(jnp.abs(x))) / sigma**2
    np.testing.assert_allclose(score, -x / (sd**2 + sigma**2), rtol=1e-4, atol=atol)
