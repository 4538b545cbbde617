"""The Haiku joint U-Net: shapes, config round trip, zero-initialised output, periodicity."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.nets import NetworkConfig, count_params, make_network
from numpyro_diffprior.presets import get_preset

SMALL = NetworkConfig(channels=8, channel_mult=(1, 2), emb_dim=16, theta_hidden=16, num_groups=4)


@pytest.fixture(scope="module")
def tiny_net():
    preset = get_preset("tiny")
    init_fn, apply_fn = make_network(SMALL, preset)
    return preset, jax.jit(init_fn)(jax.random.key(0)), jax.jit(apply_fn)


def test_config_json_round_trip_and_validation():
    cfg = NetworkConfig(channels=16, channel_mult=(1, 2, 4), num_blocks=2)
    assert NetworkConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="num_groups"):
        NetworkConfig(channels=6, num_groups=4)
    with pytest.raises(ValueError, match="unknown NetworkConfig"):
        NetworkConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="obs_channels"):
        NetworkConfig(obs_channels=-1)
    cond = NetworkConfig(obs_channels=8)  # a conditional (amortised) network
    assert NetworkConfig.from_json(cond.to_json()) == cond


def test_default_network_size_for_cpu():
    init_fn, _ = make_network(NetworkConfig(), get_preset("lsst-y10-coarse"))
    n = count_params(jax.eval_shape(init_fn, jax.random.key(0)))
    assert 3e5 <= n <= 1.2e6, n


def test_shapes_and_zero_initial_output(tiny_net):
    preset, params, apply_fn = tiny_net
    rng = np.random.default_rng(1)
    theta = rng.standard_normal((3, preset.n_params)).astype(np.float32)
    kappa = rng.standard_normal((3,) + preset.map_shape).astype(np.float32)
    f_theta, f_kappa = apply_fn(params, theta, kappa, jnp.zeros(3))
    assert f_theta.shape == (3, preset.n_params) and f_kappa.shape == (3,) + preset.map_shape
    # output layers are zero-initialised so that D = c_skip x at initialisation
    np.testing.assert_array_equal(f_theta, 0.0)
    np.testing.assert_array_equal(f_kappa, 0.0)


def test_periodic_translation_equivariance(tiny_net):
    # periodic convolutions + pooling by 2: shifting the map by 2 pixels (one pooled pixel)
    # shifts F_kappa by the same amount and leaves F_theta unchanged.
    preset, params, apply_fn = tiny_net
    rng = np.random.default_rng(9)
    params = jax.tree_util.tree_map(
        lambda p: p + 0.2 * rng.standard_normal(p.shape).astype(np.float32), params
    )
    theta = rng.standard_normal((2, preset.n_params)).astype(np.float32)
    kappa = rng.standard_normal((2,) + preset.map_shape).astype(np.float32)
    cn = jnp.array([0.3, -0.5])
    f_t, f_k = apply_fn(params, theta, kappa, cn)
    assert float(jnp.std(f_k)) > 1e-3  # non-trivial output
    g_t, g_k = apply_fn(params, theta, jnp.roll(kappa, (2, -4), axis=(-2, -1)), cn)
    np.testing.assert_allclose(g_k, jnp.roll(f_k, (2, -4), axis=(-2, -1)), atol=2e-4)
    np.testing.assert_allclose(g_t, f_t, rtol=1e-4, atol=1e-5)


def test_npix_must_divide_levels():
    with pytest.raises(ValueError, match="npix"):
        make_network(NetworkConfig(channel_mult=(1, 1, 1, 1, 1, 1)), get_preset("tiny"))
