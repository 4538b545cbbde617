"""The blackjax-style annealed Langevin kernel on an analytic noisy score."""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.infer import langevin

VAR = jnp.array([0.04, 0.25, 1.0])  # target N(0, diag(VAR))


def score_fn(x, sigma):
    return -x / (VAR + sigma**2)


def test_api_layers():
    algorithm = langevin.as_top_level_api(score_fn, step_size=0.1)
    assert isinstance(algorithm, blackjax.base.SamplingAlgorithm)
    state = algorithm.init(jnp.zeros((4, 3)))
    assert isinstance(state, langevin.AnnealedLangevinState)
    new_state, info = algorithm.step(jax.random.PRNGKey(0), state, 0.5)
    assert isinstance(info, langevin.AnnealedLangevinInfo)
    np.testing.assert_allclose(info.step_size, 0.1 * 0.25)
    kernel = langevin.build_kernel(score_fn)
    same, _ = kernel(jax.random.PRNGKey(0), state, 0.5, 0.1 * 0.25)
    np.testing.assert_allclose(same.position, new_state.position)


@pytest.mark.parametrize("use_jit", [False, True])
def test_annealed_langevin_moments(use_jit):
    algorithm = langevin.as_top_level_api(score_fn, step_size=0.2)
    sigmas = langevin.sigma_ladder(20.0, 0.01, 100)
    init = 20 * jax.random.normal(jax.random.PRNGKey(1), (4000, 3))
    run = lambda key, x: langevin.annealed_langevin(key, algorithm, x, sigmas, 30)
    if use_jit:
        run = jax.jit(run)
    x = np.asarray(run(jax.random.PRNGKey(2), init).position)
    # unadjusted Langevin on N(0, v) with step h has stationary variance v / (1 - h / (2 v))
    h = 0.2 * 0.01**2
    expected = (VAR + 0.01**2) / (1 - h / (2 * (VAR + 0.01**2)))
    np.testing.assert_allclose(x.mean(0) / np.sqrt(expected), 0, atol=5 / np.sqrt(4000))
    np.testing.assert_allclose(x.var(0) / expected, 1, atol=0.08)


def test_sigma_ladder_is_geometric():
    s = np.asarray(langevin.sigma_ladder(10.0, 0.1, 5))
    np.testing.assert_allclose(s, [10, 10 / 10**0.5, 1, 10**-0.5, 0.1], rtol=1e-5)
    with pytest.raises(ValueError):
        langevin.sigma_ladder(0.1, 1.0, 5)
