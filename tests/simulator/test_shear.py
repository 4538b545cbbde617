"""Kaiser-Squires operator identities, shape noise level and the masked Gaussian likelihood."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.shear import (
    add_shape_noise,
    kaiser_squires,
    kaiser_squires_adjoint,
    kaiser_squires_inverse,
    noise_std_map,
    shear_log_likelihood,
)

COARSE = get_preset("lsst-y10-coarse")


def zero_mean(x):
    return x - x.mean(axis=(-1, -2), keepdims=True)


@pytest.mark.parametrize("npix", [8, 16, 15])
def test_kaiser_squires_adjoint_and_isometry(npix):
    kx, ky = jax.random.split(jax.random.key(npix))
    kappa = jax.random.normal(kx, (3, npix, npix))
    gamma = jax.random.normal(ky, (3, 2, npix, npix))
    lhs = jnp.vdot(kaiser_squires(kappa), gamma)
    rhs = jnp.vdot(kappa, kaiser_squires_adjoint(gamma))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4)
    kappa0 = zero_mean(kappa)
    # A^H A = I on zero-mean maps; inverse o forward = identity; |A x| = |x|
    np.testing.assert_allclose(kaiser_squires_adjoint(kaiser_squires(kappa0)), kappa0, atol=1e-5)
    np.testing.assert_allclose(kaiser_squires_inverse(kaiser_squires(kappa0)), kappa0, atol=1e-5)
    np.testing.assert_allclose(jnp.sum(kaiser_squires(kappa0) ** 2), jnp.sum(kappa0**2), rtol=1e-5)
    # the mean (k = 0) is not seen by the shear
    np.testing.assert_allclose(kaiser_squires(jnp.ones((1, npix, npix))), 0.0, atol=1e-6)


def test_b_mode_zero_for_e_mode_and_batched_shapes():
    kappa = zero_mean(jax.random.normal(jax.random.key(0), (4, 2, 16, 16)))
    gamma = kaiser_squires(kappa)
    assert gamma.shape == (4, 2, 2, 16, 16)
    kappa_e, kappa_b = kaiser_squires_inverse(gamma, b_mode=True)
    np.testing.assert_allclose(kappa_b, 0.0, atol=1e-5)
    np.testing.assert_allclose(kappa_e, kappa, atol=1e-5)
    # a pure B-mode shear (rotated by 45 deg in spin-2) inverts to kappa_E = 0
    _, pure_b = kaiser_squires_inverse(jnp.stack([-gamma[:, :, 1], gamma[:, :, 0]], 2), b_mode=True)
    kappa_e2 = kaiser_squires_inverse(jnp.stack([-gamma[:, :, 1], gamma[:, :, 0]], 2))
    np.testing.assert_allclose(kappa_e2, 0.0, atol=1e-5)
    np.testing.assert_allclose(pure_b, kappa, atol=1e-5)


def test_kaiser_squires_matches_continuous_formula_for_a_plane_wave():
    n = 16
    y, x = np.mgrid[:n, :n]
    kappa = np.cos(2 * np.pi * (3 * x + 1 * y) / n)[None]  # k1 = 3, k2 = 1
    gamma = np.asarray(kaiser_squires(jnp.asarray(kappa, jnp.float32)))
    np.testing.assert_allclose(gamma[0, 0], (9 - 1) / 10 * kappa[0], atol=1e-5)
    np.testing.assert_allclose(gamma[0, 1], 2 * 3 * 1 / 10 * kappa[0], atol=1e-5)


def test_noise_std_per_bin_measured_on_a_realisation():
    std = COARSE.noise_std()
    np.testing.assert_allclose(std, 0.26 / np.sqrt(5.4 * (5 * 60 / 32) ** 2), rtol=1e-6)
    np.testing.assert_allclose(std, 0.01193, atol=5e-6)
    gamma = jnp.zeros((64,) + COARSE.shear_shape)
    noisy = add_shape_noise(jax.random.key(1), gamma, std)
    measured = np.asarray(noisy).std(axis=(0, 2, 3, 4))
    n = 64 * 2 * 32 * 32
    np.testing.assert_allclose(measured, std, rtol=4 * np.sqrt(0.5 / n))
    smap = noise_std_map(COARSE)
    assert smap.shape == COARSE.shear_shape
    np.testing.assert_allclose(smap[:, 0, 0, 0], std, rtol=1e-6)


def test_per_pixel_noise_map_and_mask():
    std_map = jnp.full(COARSE.shear_shape, 0.02).at[0, :, :4].set(0.05)
    noisy = add_shape_noise(jax.random.key(2), jnp.zeros((256,) + COARSE.shear_shape), std_map)
    measured = np.asarray(noisy).std(axis=0)
    assert abs(measured[0, :, :4].mean() - 0.05) < 0.001 and abs(measured[1].mean() - 0.02) < 0.0005
    mask = np.ones((32, 32), bool)
    mask[:8] = False
    smap = noise_std_map(COARSE, mask=mask)
    assert bool(jnp.all(jnp.isinf(smap[:, :, :8]))) and bool(jnp.all(jnp.isfinite(smap[:, :, 8:])))
    with pytest.raises(ValueError, match="mask must have shape"):
        noise_std_map(COARSE, mask=np.ones((16, 16), bool))
    with pytest.raises(ValueError, match="boolean"):
        noise_std_map(COARSE, mask=np.ones((32, 32)))
    with pytest.raises(ValueError, match="positive"):
        noise_std_map(COARSE, noise_std=-1.0)
    with pytest.raises(ValueError, match="noise_std"):
        noise_std_map(COARSE, noise_std=np.ones(3))


@pytest.mark.parametrize("mask_kind", ["2d", "3d", "4d"])
def test_masked_likelihood_ignores_nan_and_equals_observed_only_sum(mask_kind):
    preset = get_preset("tiny")
    k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
    kappa = 0.01 * jax.random.normal(k1, preset.map_shape)
    std = jnp.asarray(preset.noise_std())
    obs = add_shape_noise(k2, kaiser_squires(kappa), std)
    full = {"2d": (16, 16), "3d": (2, 16, 16), "4d": (2, 2, 16, 16)}[mask_kind]
    mask = np.asarray(jax.random.uniform(k3, full) > 0.3)
    mask4 = np.broadcast_to(mask[:, None] if mask.ndim == 3 else mask, (2, 2, 16, 16))
    obs_nan = jnp.where(mask4, obs, jnp.nan)
    kappa_try = 0.02 * jax.random.normal(jax.random.key(4), preset.map_shape)
    value, grad = jax.value_and_grad(shear_log_likelihood)(kappa_try, obs_nan, std, mask)
    pred = np.asarray(kaiser_squires(kappa_try))
    std4 = np.broadcast_to(np.asarray(std)[:, None, None, None], pred.shape)
    expected = stats.norm.logpdf(np.asarray(obs)[mask4], pred[mask4], std4[mask4]).sum()
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    assert bool(jnp.all(jnp.isfinite(grad)))
    # gradient equals the one with finite garbage instead of NaN in the masked pixels
    grad2 = jax.grad(shear_log_likelihood)(kappa_try, jnp.where(mask4, obs, 1e3), std, mask)
    np.testing.assert_allclose(grad, grad2, rtol=1e-5, atol=1e-3)
    # inf noise (a noise map with holes) is the same as a mask
    smap = jnp.where(mask4, std4, jnp.inf)
    np.testing.assert_allclose(shear_log_likelihood(kappa_try, obs_nan, smap), expected, rtol=1e-5)


def test_unmasked_likelihood_and_bad_shapes():
    preset = get_preset("tiny")
    kappa = jnp.zeros(preset.map_shape)
    obs = 0.01 * jnp.ones(preset.shear_shape)
    expected = stats.norm.logpdf(0.01, 0.0, 0.02) * obs.size
    np.testing.assert_allclose(shear_log_likelihood(kappa, obs, 0.02), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="shear_obs shape"):
        shear_log_likelihood(kappa, obs[:, 0], 0.02)
    with pytest.raises(ValueError, match="mask must have shape"):
        shear_log_likelihood(kappa, obs, 0.02, mask=np.ones((3, 16, 16), bool))
