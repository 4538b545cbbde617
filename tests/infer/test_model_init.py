"""Compiled model initialisation equals NumPyro's eager one; post-processing of draws."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.infer import init_to_median, init_to_uniform
from numpyro.infer.util import constrain_fn, initialize_model

from numpyro_diffprior.runtime.model_init import constrained_sites, initial_params, model_potential

OBS = np.array([0.4, -1.3, 2.0])


def model(obs=None):
    """A bounded parameter (Uniform: a non-trivial bijection), a vector one and a deterministic."""
    scale = numpyro.sample("scale", dist.Uniform(0.2, 3.0))
    loc = numpyro.sample("loc", dist.Normal(0.0, 2.0).expand([3]).to_event(1))
    numpyro.deterministic("snr", loc / scale)
    numpyro.sample("y", dist.Normal(loc, scale).to_event(1), obs=obs)


@pytest.mark.parametrize("strategy", [init_to_median(num_samples=15), init_to_uniform()])
def test_initial_params_equal_numpyro_eager_init(strategy):
    kwargs = {"obs": OBS}
    key = jax.random.key(3)
    ours = initial_params(key, model, kwargs, strategy)
    ref = initialize_model(key, model, model_kwargs=kwargs, init_strategy=strategy).param_info
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # a batch of keys gives each key's initial point
    keys = jax.random.split(key, 3)
    batch = initial_params(keys, model, kwargs, strategy)
    second = initial_params(keys[1], model, kwargs, strategy)
    for a, b in zip(jax.tree.leaves(batch), jax.tree.leaves(second), strict=True):
        np.testing.assert_allclose(a[1], b, rtol=1e-5, atol=1e-6)
    # the potential is NumPyro's (negative log joint in unconstrained space)
    pe = model_potential(model, kwargs)(ours.z)
    np.testing.assert_allclose(pe, ours.potential_energy, rtol=1e-6)


def test_initial_params_without_a_finite_point_is_an_error():
    def broken(obs=None):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        numpyro.factor("nan", jnp.sqrt(-1.0 - x**2))  # NaN log density everywhere

    with pytest.raises(RuntimeError, match="cannot find valid initial parameters"):
        initial_params(jax.random.key(0), broken, {}, init_to_uniform())


def test_constrained_sites_match_constrain_fn():
    kwargs = {"obs": OBS}
    rng = np.random.default_rng(0)
    samples = {"scale": rng.standard_normal((2, 5)), "loc": rng.standard_normal((2, 5, 3))}
    out = constrained_sites(model, kwargs, samples, ("scale", "snr"))
    assert set(out) == {"scale", "snr"} and out["snr"].shape == (2, 5, 3)
    one = {"scale": samples["scale"][1, 4], "loc": samples["loc"][1, 4]}
    ref = constrain_fn(model, (), kwargs, one, return_deterministic=True)
    np.testing.assert_allclose(out["scale"][1, 4], ref["scale"], rtol=1e-6)
    np.testing.assert_allclose(out["snr"][1, 4], ref["snr"], rtol=1e-6)
    assert np.all((out["scale"] > 0.2) & (out["scale"] < 3.0))
