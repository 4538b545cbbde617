"""Samplers with the exact Gaussian denoiser reproduce N(0, diag(sd^2)) moments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.diffusion.samplers import (
    dpmpp_2m_sampler,
    dpmpp_3m_sampler,
    edm_sampler,
    edm_sigma_steps,
    euler_maruyama_sampler,
)

SD = jnp.array([0.3, 1.0, 2.5, 1.0])
NUM = 4000


def exact_denoiser(x, sigma):
    return SD**2 / (SD**2 + sigma[:, None] ** 2) * x


def check_moments(x):
    # std error of a sample std is sd / sqrt(2 NUM) ~ 1.1%; allow 4.5% (4 sigma)
    np.testing.assert_allclose(jnp.std(x, axis=0) / SD, 1.0, atol=0.045)
    np.testing.assert_allclose(jnp.mean(x, axis=0) / SD, 0.0, atol=4 / NUM**0.5)


def test_sigma_steps_karras_eq5():
    t = edm_sigma_steps(18)
    assert t.shape == (19,) and t[-1] == 0
    np.testing.assert_allclose([t[0], t[-2]], [80.0, 0.002], rtol=1e-5)
    assert bool(jnp.all(jnp.diff(t) < 0))
    with pytest.raises(ValueError, match="sigma_min"):
        edm_sigma_steps(5, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="rho must be > 0"):
        edm_sigma_steps(5, rho=0.0)


def test_sigma_steps_log_uniform_limit():
    # rho = inf: sigma_i = 80 (0.002 / 80)^(i / 19), equal ratios; the limit of large rho
    t = np.asarray(edm_sigma_steps(20, rho=float("inf")))
    want = 80.0 * (0.002 / 80.0) ** (np.arange(20) / 19)
    np.testing.assert_allclose(t[:-1], want, rtol=1e-5)
    assert t[-1] == 0
    np.testing.assert_allclose(t[1:-1] / t[:-2], (0.002 / 80.0) ** (1 / 19), rtol=1e-5)
    np.testing.assert_allclose(edm_sigma_steps(20, rho=1e3)[:-1], want, rtol=0.03)


def test_dpmpp_2m_log_uniform_steps_beat_rho7_at_few_steps():
    # At 20 steps the exact flow's error with equal log-sigma steps is below that of the
    # rho = 7 ladder (which puts most steps far below sd), for every sd in SD.
    x_init = 80.0 * jax.random.normal(jax.random.key(5), (512, 4))
    exact = x_init * SD / jnp.sqrt(SD**2 + 80.0**2)
    err = {}
    for rho in (7.0, float("inf")):
        x = dpmpp_2m_sampler(jax.random.key(0), exact_denoiser, 512, 4, num_steps=20, rho=rho,
                             x_init=x_init)  # fmt: skip
        err[rho] = np.asarray(jnp.max(jnp.abs(x - exact), axis=0) / SD)
    assert np.all(err[float("inf")] < err[7.0]) and err[float("inf")].max() < 0.08, err


def test_heun_converges_to_exact_probability_flow():
    # For N(0, sd^2) data the ODE flow is x(0) = x(s_max) sd / sqrt(sd^2 + s_max^2) exactly;
    # Heun is 2nd order, so the error must fall ~16x when the step count is quadrupled.
    x_init = 80.0 * jax.random.normal(jax.random.key(5), (512, 4))
    exact = x_init * SD / jnp.sqrt(SD**2 + 80.0**2)
    errs = []
    for n in (32, 128):
        x = jax.jit(lambda k: edm_sampler(k, exact_denoiser, 512, 4, num_steps=n, x_init=x_init))(
            jax.random.key(0)
        )
        errs.append(float(jnp.max(jnp.abs(x - exact) / SD)))
    assert errs[0] < 0.1, errs
    assert errs[1] < errs[0] / 8, errs


def test_dpmpp_2m_converges_to_exact_probability_flow_at_second_order():
    # Same exact flow as above: one denoiser call per step, and the error must fall by more than
    # 3x (second order: 4x) per doubling of the steps; at 32 steps (32 calls) it is as accurate
    # as Heun's 32 steps (63 calls) within 25 %.
    x_init = 80.0 * jax.random.normal(jax.random.key(5), (512, 4))
    exact = x_init * SD / jnp.sqrt(SD**2 + 80.0**2)
    errs = {}
    for n in (32, 64, 128):
        x = dpmpp_2m_sampler(jax.random.key(0), exact_denoiser, 512, 4, num_steps=n, x_init=x_init)
        errs[n] = float(jnp.max(jnp.abs(x - exact) / SD))
    heun = edm_sampler(jax.random.key(0), exact_denoiser, 512, 4, num_steps=32, x_init=x_init)
    heun_err = float(jnp.max(jnp.abs(heun - exact) / SD))
    assert errs[32] < 1.25 * heun_err and errs[32] < 0.1, (errs, heun_err)
    assert errs[64] < errs[32] / 3 and errs[128] < errs[64] / 3, errs


@pytest.mark.parametrize("sampler", [dpmpp_2m_sampler, dpmpp_3m_sampler])
def test_dpmpp_gaussian_moments_and_calls(sampler):
    calls = []

    def counting_denoiser(x, sigma):
        calls.append(1)
        return exact_denoiser(x, sigma)

    sampler(jax.random.key(1), counting_denoiser, 8, 4, num_steps=12)
    assert len(calls) == 1  # traced once inside lax.scan: one call per step
    sample = jax.jit(lambda k: sampler(k, exact_denoiser, NUM, 4, num_steps=64))
    check_moments(sample(jax.random.key(0)))


def test_dpmpp_3m_converges_to_exact_probability_flow_at_third_order():
    # Same exact flow: on the rho = 7 ladder the error must fall by more than 5x (third order:
    # 8x; measured 9x and 7x) per doubling of the steps from 32 to 128; on 20 log-uniform steps
    # (the amortised sampler's ladder) it must be at most half 2M's (measured 0.017 and 0.063).
    x_init = 80.0 * jax.random.normal(jax.random.key(5), (512, 4))
    exact = x_init * SD / jnp.sqrt(SD**2 + 80.0**2)

    def err(sampler, n, rho):
        x = sampler(jax.random.key(0), exact_denoiser, 512, 4, num_steps=n, rho=rho, x_init=x_init)
        return float(jnp.max(jnp.abs(x - exact) / SD))

    errs = {n: err(dpmpp_3m_sampler, n, 7.0) for n in (32, 64, 128)}
    assert errs[64] < errs[32] / 5 and errs[128] < errs[64] / 5 and errs[32] < 0.05, errs
    inf = float("inf")
    err_2m, err_3m = err(dpmpp_2m_sampler, 20, inf), err(dpmpp_3m_sampler, 20, inf)
    assert err_3m < 0.5 * err_2m, (err_3m, err_2m)


@pytest.mark.parametrize("S_churn", [0.0, 40.0])
def test_heun_sampler_gaussian_moments(S_churn):
    sample = jax.jit(
        lambda k: edm_sampler(k, exact_denoiser, NUM, 4, num_steps=128, S_churn=S_churn)
    )
    check_moments(sample(jax.random.key(0)))


def test_heun_sampler_without_jit_matches_jit():
    kw = dict(num_steps=8)
    a = edm_sampler(jax.random.key(3), exact_denoiser, 16, 4, **kw)
    b = jax.jit(lambda k: edm_sampler(k, exact_denoiser, 16, 4, **kw))(jax.random.key(3))
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_euler_maruyama_gaussian_moments():
    sample = jax.jit(lambda k: euler_maruyama_sampler(k, exact_denoiser, NUM, 4, num_steps=256))
    check_moments(sample(jax.random.key(1)))


def _oracle_conditional(coupling):
    """Gaussian joint oracle, one joint draw x0 and the exact moments of theta | kappa."""
    from numpyro_diffprior import testing as oracles

    oracle = oracles.gaussian_joint_oracle(2, (1, 8, 8), coupling=coupling, seed=3)
    u, lam = np.asarray(oracle.eigvecs, np.float64), np.asarray(oracle.eigvals, np.float64)
    cov = (u * lam) @ u.T
    x0 = np.linalg.cholesky(cov + 1e-9 * np.eye(len(cov))) @ np.random.default_rng(1).normal(
        size=len(cov)
    )
    c_tk, c_kk = cov[:2, 2:], cov[2:, 2:]
    mean = c_tk @ np.linalg.solve(c_kk, x0[2:])
    sd = np.sqrt(np.diag(cov[:2, :2] - c_tk @ np.linalg.solve(c_kk, c_tk.T)))
    return oracle, x0, mean, sd


@pytest.mark.parametrize("coupling", [0.0, 0.6])
def test_theta_given_kappa_on_gaussian_oracle(coupling):
    """Replacement conditioning with the exact denoiser: exact when theta and kappa are
    independent; with coupling 0.6 it is conservative, as noising kappa hides part of its
    information: measured means 0.207, 0.483 vs exact 0.223, 0.554 (shrunk towards the prior
    mean 0) and spreads 1.4x the exact ones; 4000 draws, seed 0."""
    from numpyro_diffprior import testing as oracles
    from numpyro_diffprior.diffusion.samplers import sample_theta_given_kappa

    oracle, x0, mean, sd = _oracle_conditional(coupling)
    x = jnp.asarray(np.tile(x0, (NUM, 1)), jnp.float32)
    denoise = lambda v, s: oracles.gaussian_denoise(oracle, v, s)  # noqa: E731
    out = jax.jit(lambda k: sample_theta_given_kappa(k, denoise, x, 2, num_steps=32))(
        jax.random.key(0)
    )
    np.testing.assert_array_equal(np.asarray(out[:, 2:]), np.asarray(x[:, 2:]))
    theta = np.asarray(out[:, :2])
    ratio = theta.std(0) / sd
    if coupling == 0.0:
        np.testing.assert_allclose(theta.mean(0), mean, atol=4 / NUM**0.5)
        np.testing.assert_allclose(ratio, 1.0, atol=0.045)
    else:
        shrink = theta.mean(0) / mean
        assert np.all((shrink > 0.8) & (shrink < 1.02)), shrink
        assert np.all((ratio > 1.0) & (ratio < 1.6)), ratio
