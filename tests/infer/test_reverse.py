"""guided_reverse_diffusion against a closed-form posterior.

Prior x ~ N(0, s^2) per coordinate, observation y = x + n, n ~ N(0, tau^2). Then the denoiser
D(x; sigma) = s^2 / (s^2 + sigma^2) x and the guidance grad log p_sigma(y | x_sigma) =
dD/dx (y - D) / (tau^2 + V), V = sigma^2 dD/dx, are exact, so every sampler must return the
posterior N(y s^2 / (s^2 + tau^2), s^2 tau^2 / (s^2 + tau^2)) up to discretisation and
Monte Carlo error.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.infer.reverse import guided_reverse_diffusion

S, TAU, Y = 1.0, 0.5, 1.0
POST_MEAN = Y * S**2 / (S**2 + TAU**2)  # 0.8
POST_VAR = S**2 * TAU**2 / (S**2 + TAU**2)  # 0.2
NUM, DIM = 2000, 2  # 4000 scalar draws: the mean is known to 0.007, the variance to 2.2 %


def denoise(x, sigma):
    return S**2 / (S**2 + sigma[:, None] ** 2) * x


def guidance(x, sigma):
    gain = S**2 / (S**2 + sigma[:, None] ** 2)
    return gain * (Y - denoise(x, sigma)) / (TAU**2 + sigma[:, None] ** 2 * gain)


@pytest.mark.parametrize(
    "settings",
    [
        # From sigma_max the ODE maps the start N(0, sigma_max^2) linearly, so the start's
        # missing mean y s^2 / (s^2 + tau^2) leaves a bias of sd_post / sigma_max times it:
        # 0.018 from sigma_max 20, 0.0045 from 80. The SDE forgets its start.
        dict(sampler="ode", num_steps=32, sigma_max=80.0),
        dict(sampler="sde", num_steps=256, sigma_max=20.0),
        dict(sampler="sde", num_steps=64, num_corrector_steps=2, sigma_max=20.0),
    ],
    ids=["heun-ode", "euler-maruyama-sde", "sde+langevin-corrector"],
)
def test_exact_guidance_gives_the_gaussian_posterior(settings):
    run = jax.jit(lambda key: guided_reverse_diffusion(
        key, denoise, guidance, NUM, DIM, **settings
    ))  # fmt: skip
    x = np.asarray(run(jax.random.key(3))).ravel()
    assert abs(x.mean() - POST_MEAN) < 0.025  # 3.5 standard errors
    # 4.5 standard errors; measured discretisation bias over 3 x 40000 draws: ODE +1 %,
    # SDE +3 %, SDE with correctors +5 %
    assert abs(x.var() / POST_VAR - 1) < 0.1


def test_without_guidance_it_samples_the_prior_and_starts_from_x_init():
    zero = lambda x, sigma: jnp.zeros_like(x)
    x = guided_reverse_diffusion(jax.random.key(0), denoise, zero, NUM, DIM, num_steps=32)
    assert abs(float(jnp.var(x)) / S**2 - 1) < 0.1
    # the ODE is deterministic given its start: the same x_init gives the same draws
    x0 = 20.0 * jax.random.normal(jax.random.key(1), (4, DIM))
    a = guided_reverse_diffusion(jax.random.key(5), denoise, zero, 4, DIM, sigma_max=20.0,
                                 x_init=x0)  # fmt: skip
    b = guided_reverse_diffusion(jax.random.key(6), denoise, zero, 4, DIM, sigma_max=20.0,
                                 x_init=x0)  # fmt: skip
    np.testing.assert_allclose(a, b, rtol=1e-6)
    # and x_init is used: the ODE maps x to s / sqrt(s^2 + sigma_max^2) x
    np.testing.assert_allclose(a, x0 * S / np.sqrt(S**2 + 20.0**2), rtol=2e-2, atol=1e-4)


def test_unknown_sampler_is_rejected():
    with pytest.raises(ValueError, match="sampler must be 'ode' or 'sde'"):
        guided_reverse_diffusion(jax.random.key(0), denoise, guidance, 2, 1, sampler="euler")
