"""The amortised (conditional) model: observation features, the training observation family,
a conditional network started from a prior (bit-identical at step 0), training smoke run,
checkpoint round trip and refusals of the loaders."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from synthetic import synthetic_source

from numpyro_diffprior.amortized import AmortizedPrior, ShearObservation, observation_features
from numpyro_diffprior.amortized.denoiser import (
    ConditionalNetworkDenoiser,
    conditional_network_config,
    conditional_params,
)
from numpyro_diffprior.amortized.simulate import ObservationRange, draw_mask, draw_observations
from numpyro_diffprior.amortized.training import train_conditional
from numpyro_diffprior.denoiser import NetworkDenoiser
from numpyro_diffprior.nets import NetworkConfig, make_network
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.shear import kaiser_squires
from numpyro_diffprior.training import TrainingConfig

SMALL = NetworkConfig(channels=8, channel_mult=(1, 2), emb_dim=16, theta_hidden=16, num_groups=4)
TINY = get_preset("tiny")


def test_features_layout_and_empty_observation():
    rng = np.random.default_rng(0)
    kappa = jnp.asarray(rng.standard_normal((3,) + TINY.map_shape), jnp.float32)
    kappa = kappa - kappa.mean(axis=(-2, -1), keepdims=True)
    std = jnp.full((3,) + TINY.shear_shape, 0.01)
    kappa_std = jnp.array([1.0, 2.0])
    f = observation_features(ShearObservation(kaiser_squires(kappa), std), kappa_std)
    assert f.shape == (3, 4 * TINY.n_bins, TINY.npix, TINY.npix)
    np.testing.assert_allclose(f[:, :2], kappa / kappa_std[:, None, None], atol=1e-5)  # E
    np.testing.assert_allclose(f[:, 2:4], 0.0, atol=1e-5)  # no B mode in KS shear
    np.testing.assert_allclose(f[:, 4:6], 1.0)  # all observed
    np.testing.assert_allclose(f[:, 6:8], np.broadcast_to(0.01 / kappa_std[:, None, None],
                                                          f[:, 6:8].shape), rtol=1e-6)  # fmt: skip
    nan, inf = (jnp.full(TINY.shear_shape, v) for v in (jnp.nan, jnp.inf))
    masked = ShearObservation(nan, inf)  # garbage in masked pixels never reaches the features
    np.testing.assert_array_equal(observation_features(masked, kappa_std), 0.0)


def test_training_observation_family():
    rng_range = ObservationRange.for_preset(TINY, uncond_prob=0.0)
    draw = jax.jit(jax.vmap(lambda k: draw_mask(k, 16, rng_range)))
    fracs = 1 - np.asarray(draw(jax.random.split(jax.random.key(0), 60))).mean(axis=(1, 2))
    assert fracs.max() <= 0.4 and (fracs == 0).any() and (fracs > 0.1).any()
    kappa = synthetic_source(TINY)(jax.random.key(0), 64)[1]
    obs = draw_observations(jax.random.key(1), kappa, ObservationRange.for_preset(TINY))
    observed = np.isfinite(np.asarray(obs.noise_std))
    ref = np.broadcast_to(TINY.noise_std()[None, :, None, None, None], observed.shape)
    ratio = np.asarray(obs.noise_std)[observed] / ref[observed]
    assert 0.5 * 0.999 <= ratio.min() and ratio.max() <= 2.0 * 1.001
    assert np.all(np.asarray(obs.shear)[~observed] == 0)
    empty = ~observed.reshape(64, -1).any(axis=1)
    assert 0 < empty.sum() < 20  # uncond_prob 0.1 of 64


def test_conditional_network_from_prior_is_bit_identical():
    """Weights of a prior in a conditional network: the denoiser equals the prior's exactly,
    whatever the observation (the observation path starts at zero)."""
    prior_params = jax.jit(make_network(SMALL, TINY)[0])(jax.random.key(0))
    rng = np.random.default_rng(1)
    prior_params = jax.tree_util.tree_map(  # a 'trained' prior: no zero outputs
        lambda p: p + 0.1 * rng.standard_normal(p.shape).astype(np.float32), prior_params
    )
    cfg = conditional_network_config(SMALL, TINY.n_bins)
    fresh = jax.jit(make_network(cfg, TINY)[0])(jax.random.key(5))
    params = conditional_params(prior_params, fresh)
    assert set(params) - set(prior_params) == {"obs_in", "obs_emb"}
    x = jnp.asarray(rng.standard_normal((4, TINY.n_params + 2 * 16 * 16)), jnp.float32)
    sigma = jnp.array([0.01, 0.3, 2.0, 40.0])
    want = jax.jit(NetworkDenoiser(SMALL, TINY, 1.0))(prior_params, x, sigma)
    cond = ConditionalNetworkDenoiser(cfg, TINY, 1.0)
    for seed in (0, 1):
        obs = ShearObservation(
            jnp.asarray(rng.standard_normal((4,) + TINY.shear_shape), jnp.float32),
            jnp.full((4,) + TINY.shear_shape, 0.01 * (seed + 1)),
        )
        features = observation_features(obs, jnp.array([0.01, 0.02]))
        got = jax.jit(cond)(params, x, sigma, features)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    np.testing.assert_array_equal(np.asarray(jax.jit(cond.denoise_prior)(params, x, sigma)),
                                  np.asarray(want))  # fmt: skip


def _train(out, steps, resume=False, init_from=None):
    return train_conditional(
        TINY, out, steps=steps, sample_batch=synthetic_source(TINY),
        network_config=SMALL, init_from=init_from, resume=resume,
        training_config=TrainingConfig(batch_size=8, warmup_steps=1, total_steps=4),
        checkpoint_every=2, progress=False, log_every=1,
    )  # fmt: skip


def _joint_checkpoint(path):
    """An untrained joint-prior checkpoint of the SMALL network (no training step)."""
    from numpyro_diffprior.checkpoints import save_checkpoint
    from numpyro_diffprior.training import make_trainer
    from numpyro_diffprior.training_loop import measure_normalizer

    normalizer = measure_normalizer(synthetic_source(TINY), TINY, jax.random.key(1), num=64)
    init_fn, apply_fn = make_network(SMALL, TINY)
    config = TrainingConfig(batch_size=8, warmup_steps=1, total_steps=4)
    state = make_trainer(init_fn, apply_fn, normalizer, TINY, config).init(jax.random.key(0))
    save_checkpoint(path, state, preset=TINY, normalizer=normalizer, network_config=SMALL,
                    training_config=config)  # fmt: skip
    return path


def test_loaders_refuse_a_joint_prior_and_say_how_to_train(tmp_path):
    joint = _joint_checkpoint(tmp_path / "joint")
    with pytest.raises(ValueError, match="not a conditional .* train --conditional"):
        AmortizedPrior.load(joint)
    with pytest.raises(ValueError, match="no trained amortised .* train --conditional"):
        AmortizedPrior.from_pretrained("lsst-y10-jade")  # none ships at 128 pixels


def test_the_shipped_conditional_model_loads_with_its_training_range():
    from numpyro_diffprior.checkpoints import _PRETRAINED, load_checkpoint, load_pretrained

    prior = AmortizedPrior.from_pretrained("lsst-y10-coarse")
    assert prior.preset == "lsst-y10-coarse" and prior.map_shape == (5, 32, 32)
    assert prior.param_names == ("Omega_c", "sigma_8")
    # trained on the shipped joint prior's maps: the same shift model
    conditional = load_checkpoint(_PRETRAINED / "lsst-y10-coarse-amortized")
    shift = load_pretrained("lsst-y10-coarse").preset.shift_model
    assert conditional.preset.shift_model == shift == "cosmomentum"
    assert prior.observation_range.noise_factor == (0.5, 2.0)
    assert prior.observation_range.max_masked_fraction == 0.4


@pytest.mark.slow  # three compiles of the conditional update: ~1.5 min idle, 4+ min loaded
def test_train_conditional_smoke_resume_and_checkpoint(tmp_path):
    joint = _joint_checkpoint(tmp_path / "joint")
    full = _train(tmp_path / "full", 4, init_from=joint)
    assert full.step == 4 and full.config["conditional"] is True
    assert full.config["extra"]["init_from"] == str(joint)
    obs_range = full.config["observation_range"]
    assert obs_range["noise_factor"] == [0.5, 2.0] and obs_range["max_masked_fraction"] == 0.4
    assert obs_range["mask_family"] == ["none", "holes", "edges"]
    assert full.network_config.obs_channels == 4 * TINY.n_bins
    lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    metrics = [json.loads(line) for line in lines]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and np.isfinite(metrics[-1]["loss"])
    # resume equals an uninterrupted run (observations and noise are pure in (key, step))
    _train(tmp_path / "part", 2, init_from=joint)
    resumed = _train(tmp_path / "part", 4, resume=True)
    for a, b in zip(jax.tree_util.tree_leaves((full.params, full.ema_params)),
                    jax.tree_util.tree_leaves((resumed.params, resumed.ema_params)),
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(FileExistsError, match="resume"):
        _train(tmp_path / "full", 4)
    prior = AmortizedPrior.load(tmp_path / "full" / "checkpoint")
    assert prior.observation_range.noise_factor == (0.5, 2.0) and prior.preset == "tiny"
    draws = prior.sample(jax.random.key(0), (2,))  # as a plain prior: given no data
    assert draws.shape == (2, prior.dim) and np.all(np.isfinite(draws))
