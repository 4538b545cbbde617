"""Checkpoints: round trip, atomic overwrite, mismatched preset / damaged files -> ValueError."""

import json
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.checkpoints import load_checkpoint, load_pretrained, save_checkpoint
from numpyro_diffprior.diffusion.normalization import Normalizer
from numpyro_diffprior.diffusion.preconditioning import make_denoise_fn
from numpyro_diffprior.nets import NetworkConfig, make_network
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.training import TrainingConfig, make_trainer

SMALL = NetworkConfig(channels=8, channel_mult=(1, 2), emb_dim=16, theta_hidden=16, num_groups=4)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    preset = get_preset("tiny")
    norm = Normalizer(jnp.array([0.3, 0.8]), jnp.array([0.2, 0.14]), jnp.array([0.01, 0.02]))
    init_fn, apply_fn = make_network(SMALL, preset)
    cfg = TrainingConfig(batch_size=4, warmup_steps=1, total_steps=10)
    trainer = make_trainer(init_fn, apply_fn, norm, preset, cfg)
    state = jax.jit(trainer.init)(jax.random.key(3))
    # make params, EMA and optimizer state distinct and non-trivial
    rng = np.random.default_rng(0)
    state = state._replace(
        step=jnp.asarray(7, jnp.int32),
        params=jax.tree_util.tree_map(lambda p: p + rng.standard_normal(p.shape), state.params),
        opt_state=jax.tree_util.tree_map(
            lambda p: p + rng.integers(1, 5, p.shape).astype(p.dtype), state.opt_state
        ),
    )
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    save_checkpoint(
        path, state, preset=preset, normalizer=norm, network_config=SMALL, training_config=cfg
    )
    return path, state, norm, cfg


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip(saved):
    path, state, norm, cfg = saved
    ck = load_checkpoint(path, preset="tiny")
    assert ck.step == 7 and ck.training_config == cfg and ck.network_config == SMALL
    assert ck.preset == get_preset("tiny") and ck.config["package_version"]
    np.testing.assert_array_equal(ck.normalizer.kappa_std, norm.kappa_std)
    _leaves_equal(ck.params, state.params)
    _leaves_equal(ck.ema_params, state.ema_params)
    _leaves_equal(ck.opt_state, state.opt_state)
    np.testing.assert_array_equal(
        jax.random.key_data(ck.rng_key), jax.random.key_data(state.rng_key)
    )
    # denoise_fn: at init the output layers are zero, so D(x; s) = c_skip x for EMA weights
    x = jnp.ones((2, ck.dim))
    d = jax.jit(ck.denoise_fn())(x, jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(d, 0.5 * x, rtol=1e-6)


def test_network_denoiser_is_the_stored_network(saved):
    """`network_denoiser()` (picklable) computes what the checkpoint's own apply_fn does, for
    weights whose output layers are not zero."""
    path, *_ = saved
    ck = load_checkpoint(path, preset="tiny")
    leaves, treedef = jax.tree_util.tree_flatten(ck.ema_params)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    params = jax.tree_util.tree_unflatten(
        treedef,
        [p + 0.1 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys, strict=True)],
    )
    x = jax.random.normal(jax.random.key(4), (3, ck.dim))
    sigma = jnp.array([0.1, 1.0, 10.0])
    stored = make_denoise_fn(
        ck.apply_fn,
        params,
        ck.preset.n_params,
        ck.preset.map_shape,
        sigma_data=ck.training_config.sigma_data,
    )
    expected = jax.jit(stored)(x, sigma)  # compiled: eager network calls compile op by op
    assert float(jnp.max(jnp.abs(expected - 0.5 * x))) > 1e-2  # the network contributes
    ours = jax.jit(ck.network_denoiser())(params, x, sigma)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)  # two programs: rounding
    # denoise_fn() is that denoiser bound to the EMA weights, and pickles as such
    copy = pickle.loads(pickle.dumps(ck.denoise_fn()))
    assert copy.func == ck.network_denoiser()
    _leaves_equal(copy.args[0], ck.ema_params)


def test_overwrite_is_atomic_and_ema_only(saved, tmp_path):
    path, state, norm, cfg = saved
    kw = dict(preset="tiny", normalizer=norm, network_config=SMALL, training_config=cfg)
    out = tmp_path / "c"
    save_checkpoint(out, state, **kw)
    save_checkpoint(out, state._replace(step=jnp.asarray(9)), ema_only=True, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temp dirs left
    ck = load_checkpoint(out)
    assert ck.step == 9 and ck.params is None
    with pytest.raises(ValueError, match="EMA weights only"):
        ck.train_state()


def test_mismatched_preset_is_error(saved):
    with pytest.raises(ValueError, match="trained for preset 'tiny'"):
        load_checkpoint(saved[0], preset="lsst-y10-coarse")


def test_damaged_or_missing_files_are_errors(saved, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(saved[0], bad)
    data = bytearray((bad / "weights.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        load_checkpoint(bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupted or incomplete"):
        load_checkpoint(bad)
    cfg = json.loads((saved[0] / "config.json").read_text())
    cfg["network_config"]["channels"] = 16  # weights no longer fit the config
    shutil.copy(saved[0] / "weights.npz", bad / "weights.npz")
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="shape"):
        load_checkpoint(bad)
    (bad / "weights.npz").unlink()
    with pytest.raises(ValueError, match="missing"):
        load_checkpoint(bad)


def test_load_pretrained_absent_is_clear_error():
    with pytest.raises(ValueError, match="no pretrained model for preset 'tiny'.*DIR/checkpoint"):
        load_pretrained("tiny")


def test_load_checkpoint_of_a_train_out_folder_points_at_the_checkpoint(saved, tmp_path):
    import shutil

    path = saved[0]
    out = tmp_path / "run"
    shutil.copytree(path, out / "checkpoint")
    with pytest.raises(
        ValueError, match=r"is a `train --out` folder: the checkpoint is .*run/checkpoint"
    ):
        load_checkpoint(out)
    assert load_checkpoint(out / "checkpoint").step == load_checkpoint(path).step


def test_export_keeps_ema_weights_only(saved, tmp_path):
    from numpyro_diffprior.cli import main

    path, state, _, _ = saved
    out = tmp_path / "shipped"
    assert main(["export", "--checkpoint", str(path), "--out", str(out), "--note", "test"]) == 0
    ck = load_checkpoint(out, preset="tiny")
    assert ck.params is None and ck.config["ema_only"]
    assert ck.config["extra"]["trained_on"] == "test"
    _leaves_equal(ck.ema_params, state.ema_params)
    with pytest.raises(ValueError, match="EMA weights only"):
        ck.train_state()
