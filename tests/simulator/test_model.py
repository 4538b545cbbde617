"""The explicit field-level NumPyro model: sites, prior predictive, masked log density, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.lognormal import simulate_kappa
from numpyro_diffprior.simulator.model import lensing_model
from numpyro_diffprior.simulator.shear import kaiser_squires, shear_log_likelihood

TINY = get_preset("tiny")


def test_prior_predictive_sites_and_noise(toy_emulator):
    draws = Predictive(lensing_model, num_samples=8)(
        jax.random.key(0), preset="tiny", emulator=toy_emulator
    )
    shapes = {k: v.shape for k, v in draws.items()}
    assert shapes == {
        "Omega_c": (8,),
        "sigma_8": (8,),
        "z": (8, 2, 16, 16),
        "theta": (8, 2),
        "kappa": (8, 2, 16, 16),
        "shear": (8, 2, 2, 16, 16),
    }
    np.testing.assert_allclose(draws["theta"], jnp.stack([draws["Omega_c"], draws["sigma_8"]], -1))
    kappa = jax.vmap(lambda t, z: simulate_kappa(t, z, toy_emulator, TINY))(
        draws["theta"], draws["z"]
    )
    np.testing.assert_allclose(draws["kappa"], kappa, atol=1e-6)  # float32, |kappa| ~ 1e-3
    resid = np.asarray(draws["shear"] - kaiser_squires(draws["kappa"]))
    np.testing.assert_allclose(resid.std(axis=(0, 2, 3, 4)), TINY.noise_std(), rtol=0.05)


def test_log_density_equals_sum_of_terms_with_mask_and_nan(toy_emulator):
    mask = np.ones((16, 16), bool)
    mask[:, :5] = False
    mock = Predictive(lensing_model, num_samples=1)(
        jax.random.key(1), preset="tiny", mask=mask, emulator=toy_emulator
    )
    assert float(jnp.abs(mock["shear"][0][..., :5]).max()) == 0.0  # unobserved -> 0 in mocks
    obs = np.array(mock["shear"][0])
    obs[..., :5] = np.nan
    params = {"Omega_c": jnp.array(0.35), "sigma_8": jnp.array(0.7), "z": mock["z"][0]}
    kwargs = dict(preset="tiny", shear_obs=obs, mask=mask, emulator=toy_emulator)
    density = jax.jit(jax.value_and_grad(lambda p: log_density(lensing_model, (), kwargs, p)[0]))
    value, grad = density(params)
    kappa = simulate_kappa(jnp.array([0.35, 0.7]), params["z"], toy_emulator, TINY)
    box = np.asarray(toy_emulator.bounds)  # the priors are restricted to the emulator box
    expected = (
        dist.TruncatedNormal(0.2664, 0.2, low=max(0.0, box[0, 0]), high=box[0, 1]).log_prob(0.35)
        + dist.TruncatedNormal(0.831, 0.14, low=box[1, 0], high=box[1, 1]).log_prob(0.7)
        + dist.Normal(0.0, 1.0).log_prob(params["z"]).sum()
        + shear_log_likelihood(kappa, obs, TINY.noise_std(), mask)
    )
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    # value and gradient are finite (NaN never leaks)
    value, grad = density(params)
    assert np.isfinite(float(value))
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in grad.values())
    assert float(jnp.abs(grad["z"]).sum()) > 0
    # outside the emulator box (sigma_8 = 1.7 > 1.6) the restricted prior gives -inf, not NaN
    assert float(density(dict(params, sigma_8=jnp.array(1.7)))[0]) == -np.inf


def test_prior_is_restricted_to_the_emulator_box(toy_emulator):
    draws = Predictive(lensing_model, num_samples=4000)(
        jax.random.key(3), preset="tiny", emulator=toy_emulator
    )
    box = np.asarray(toy_emulator.bounds)
    for i, name in enumerate(TINY.param_names):
        v = np.asarray(draws[name])
        assert v.min() >= box[i, 0] and v.max() <= box[i, 1], name
    # the box cuts Omega_c's prior below box[0, 0]: that mass is moved inside, not clipped
    full = dist.TruncatedNormal(0.2664, 0.2, low=0.0)
    cut = float(full.cdf(box[0, 0]))
    assert np.mean(np.asarray(draws["Omega_c"]) <= box[0, 0] + 1e-6) < 0.005 + cut / 10


def test_conditioned_trace_marks_shear_observed(toy_emulator):
    obs = np.zeros(TINY.shear_shape, np.float32)
    tr = handlers.trace(handlers.seed(lensing_model, 0)).get_trace(
        preset="tiny", shear_obs=obs, emulator=toy_emulator
    )
    assert tr["shear"]["is_observed"] and not tr["z"]["is_observed"]
    assert tr["theta"]["type"] == "deterministic" and tr["kappa"]["type"] == "deterministic"


def test_bad_observations_raise(toy_emulator):
    run = lambda **kw: handlers.seed(lensing_model, 0)(preset="tiny", emulator=toy_emulator, **kw)
    with pytest.raises(ValueError, match="shear_obs must have shape"):
        run(shear_obs=np.zeros((2, 16, 16)))
    with pytest.raises(ValueError, match="mask must have shape"):
        run(shear_obs=np.zeros(TINY.shear_shape), mask=np.ones((8, 8), bool))
    bad = np.zeros(TINY.shear_shape)
    bad[0, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        run(shear_obs=bad)
    mask = np.ones((16, 16), bool)
    mask[3, 3] = False
    run(shear_obs=bad, mask=mask)  # NaN allowed where masked
    with pytest.raises(ValueError, match="unknown preset"):
        run_other = handlers.seed(lensing_model, 0)
        run_other(preset="nope", emulator=toy_emulator)
