"""Training: the tiny network learns, resume equals an uninterrupted run, sharded == single."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from synthetic import synthetic_source

from numpyro_diffprior.diffusion.loss import weighted_errors
from numpyro_diffprior.diffusion.normalization import normalize
from numpyro_diffprior.diffusion.preconditioning import make_denoise_fn
from numpyro_diffprior.nets import NetworkConfig, make_network
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.training import TrainingConfig, batch_key, ema_decay, make_trainer
from numpyro_diffprior.training_loop import measure_normalizer, train

SMALL = NetworkConfig(channels=8, channel_mult=(1, 2), emb_dim=16, theta_hidden=16, num_groups=4)
ROOT = Path(__file__).resolve().parents[1]


def test_ema_decay_halflife():
    # after `halflife` steps at constant beta the old weight has decayed to 1/2
    beta = ema_decay(10_000, 100.0, 0.1)
    np.testing.assert_allclose(beta**100, 0.5, rtol=1e-5)
    assert float(ema_decay(0, 100.0, 0.1)) == 0.0  # ramp-up: EMA = params at the start


def test_config_validation():
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainingConfig(total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="unknown TrainingConfig"):
        TrainingConfig.from_dict({"lr": 1.0})


@pytest.mark.slow  # ~40 s on an idle 2-core CPU, 2.5 min under heavy load
def test_tiny_network_learns():
    preset = get_preset("tiny")
    source = synthetic_source(preset)
    normalizer = measure_normalizer(source, preset, jax.random.key(5), num=128)
    init_fn, apply_fn = make_network(SMALL, preset)
    config = TrainingConfig(batch_size=16, learning_rate=3e-3, warmup_steps=20, total_steps=300)
    trainer = make_trainer(init_fn, apply_fn, normalizer, preset, config)
    update = jax.jit(trainer.update)
    state = jax.jit(trainer.init)(jax.random.key(0))

    x = normalize(normalizer, *source(jax.random.key(99), 256))
    sigma = jnp.exp(jnp.linspace(jnp.log(0.1), jnp.log(5.0), 256))
    noise = jax.random.normal(jax.random.key(7), x.shape)

    @jax.jit
    def heldout(params):
        denoise = make_denoise_fn(apply_fn, params, preset.n_params, preset.map_shape)
        a, b = weighted_errors(denoise, x, sigma, noise, preset.n_params)
        return jnp.mean(a), jnp.mean(b)

    before = heldout(state.params)
    for step in range(300):
        state, metrics = update(state, source(batch_key(state.rng_key, step), 16))
    after = heldout(state.ema_params)
    # at init D = c_skip x, the optimal denoiser of unit-Gaussian data: loss ~1 per part
    np.testing.assert_allclose(before, 1.0, atol=0.15)
    # measured (seed 0): theta 0.97 -> 0.74, kappa 1.06 -> 0.93
    assert float(after[0]) < 0.9 * float(before[0]), (before, after)  # theta
    assert float(after[1]) < 0.9 * float(before[1]), (before, after)  # kappa
    assert np.isfinite(float(metrics["loss"]))


def _tiny_train(out, steps, resume=False):
    preset = get_preset("tiny")
    return train(
        preset,
        out,
        steps=steps,
        sample_batch=synthetic_source(preset),
        network_config=SMALL,
        training_config=TrainingConfig(batch_size=8, warmup_steps=2, total_steps=6),
        checkpoint_every=3,
        resume=resume,
        num_heldout=0,
        progress=False,
    )


@pytest.mark.slow  # three jit compiles of the update (~1 min idle, 5+ min under load)
def test_resume_equals_uninterrupted(tmp_path):
    full = _tiny_train(tmp_path / "full", 6)
    _tiny_train(tmp_path / "part", 3)
    resumed = _tiny_train(tmp_path / "part", 6, resume=True)
    assert full.step == resumed.step == 6
    for a, b in zip(
        jax.tree_util.tree_leaves((full.params, full.ema_params, full.opt_state)),
        jax.tree_util.tree_leaves((resumed.params, resumed.ema_params, resumed.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lines = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 6
    with pytest.raises(FileExistsError, match="resume"):
        _tiny_train(tmp_path / "full", 6)


SHARDED = textwrap.dedent(
    """
    import jax, numpy as np
    assert jax.device_count() == 2, jax.devices()
    from synthetic import synthetic_source
    from numpyro_diffprior.nets import NetworkConfig, make_network
    from numpyro_diffprior.presets import get_preset
    from numpyro_diffprior.sharding import (make_mesh, replicate, replicated_sharding,
                                            batch_sharding, shard_batch)
    from numpyro_diffprior.training import TrainingConfig, make_trainer
    from numpyro_diffprior.training_loop import measure_normalizer
    cfg = NetworkConfig(channels=8, channel_mult=(1, 2), emb_dim=16, theta_hidden=16,
                        num_groups=4)
    preset = get_preset("tiny")
    source = synthetic_source(preset)
    norm = measure_normalizer(source, preset, jax.random.key(5), num=64)
    init_fn, apply_fn = make_network(cfg, preset)
    trainer = make_trainer(init_fn, apply_fn, norm, preset,
                           TrainingConfig(batch_size=8, warmup_steps=1, total_steps=10))
    state0 = trainer.init(jax.random.key(0))
    batch = source(jax.random.key(1), 8)
    out = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = make_mesh(devices)
        rep, bsh = replicated_sharding(mesh), batch_sharding(mesh)
        update = jax.jit(trainer.update, in_shardings=(rep, bsh), out_shardings=(rep, rep))
        state, m = update(replicate(state0, mesh), shard_batch(batch, mesh))
        state, m = update(state, shard_batch(batch, mesh))
        out.append((jax.tree_util.tree_leaves(state.params), float(m["loss"])))
    (p1, l1), (p2, l2) = out
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(p1, p2))
    assert diff < 1e-5, diff
    print("OK", l1, l2, diff)
    """
)


@pytest.mark.slow  # a subprocess with two jit compiles of the update
def test_sharded_step_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), str(ROOT)])
    res = subprocess.run(
        [sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "OK" in res.stdout


def test_train_cli_rejects_bad_arguments(tmp_path, capsys):
    from numpyro_diffprior.cli import main

    out = str(tmp_path / "run")
    assert main(["train", "--preset", "tiny", "--steps", "1", "--out", out]) == 2
    assert "--steps must be >= 2" in capsys.readouterr().err
    args = ["train", "--preset", "tiny", "--steps", "5", "--out", out, "--data", "x.h5"]
    assert main(args + ["--pool", "8"]) == 2
    assert "exclusive" in capsys.readouterr().err
    assert main(["train", "--preset", "nope", "--steps", "5", "--out", out, "--pool", "8"]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_dataset_source_reads_user_maps(tmp_path):
    from numpyro_diffprior.simulator.dataset import write_user_dataset
    from numpyro_diffprior.training_loop import dataset_source

    preset = get_preset("tiny")
    rng = np.random.default_rng(0)
    theta = rng.normal([0.27, 0.83], 0.05, (10, 2)).astype(np.float32)
    kappa = (0.01 * rng.standard_normal((10,) + preset.map_shape)).astype(np.float32)
    path = tmp_path / "maps.h5"
    write_user_dataset(path, preset, theta, kappa)
    sample_batch, num = dataset_source(path, preset)
    assert num == 10
    t, k = sample_batch(jax.random.key(0), 4)
    # every drawn pair is one of the stored pairs
    for i in range(4):
        j = int(np.argmin(np.abs(theta[:, 0] - float(t[i, 0]))))
        np.testing.assert_array_equal(np.asarray(k[i]), kappa[j])


@pytest.mark.slow  # two jit compiles of the update
def test_init_from_fine_tunes_from_ema_weights(tmp_path):
    from numpyro_diffprior.checkpoints import load_checkpoint

    start = _tiny_train(tmp_path / "start", 3)
    preset = get_preset("tiny")
    # lr is 0 at step 0 of the warm-up, so one step must leave the starting weights untouched
    tuned = train(
        preset,
        tmp_path / "tuned",
        steps=1,
        sample_batch=synthetic_source(preset),
        training_config=TrainingConfig(batch_size=8, warmup_steps=1, total_steps=2),
        init_from=tmp_path / "start" / "checkpoint",
        num_heldout=0,
        progress=False,
    )
    assert tuned.step == 1 and tuned.network_config == SMALL
    np.testing.assert_array_equal(tuned.normalizer.kappa_std, start.normalizer.kappa_std)
    for a, b, c in zip(
        jax.tree_util.tree_leaves(start.ema_params),
        jax.tree_util.tree_leaves(tuned.params),
        jax.tree_util.tree_leaves(tuned.ema_params),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    stored = load_checkpoint(tmp_path / "tuned" / "checkpoint")
    assert stored.training_config.total_steps == 2
    assert stored.config["extra"]["init_from"] == str(start.path)
    assert stored.config["extra"]["init_from_step"] == 3
    with pytest.raises(ValueError, match="is for preset 'tiny', not 'lsst-y10-coarse'"):
        train("lsst-y10-coarse", tmp_path / "other", steps=2, init_from=start.path)


class _SilentBar:
    """A stand-in for tqdm's bar in `run_steps` tests."""

    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass


def test_run_steps_stops_on_a_nan_loss_before_saving():
    """A NaN loss at step 3 (checkpoint every 2, log every 10): the step-2 state is saved, then
    FloatingPointError names step 4 (the next checkpoint), and nothing else is saved or logged."""
    import io

    from numpyro_diffprior.sharding import make_mesh
    from numpyro_diffprior.training_loop import run_steps

    def update(state, batch):
        loss = jnp.where(state >= 2, jnp.nan, 1.0)
        return state + 1, {"loss": loss, "loss_theta": loss, "loss_kappa": loss}

    saved, log = [], io.StringIO()

    def sample_batch(key, n):
        return jnp.zeros((n, 1))

    with pytest.raises(FloatingPointError, match="at step 4.*last checkpoint is kept"):
        run_steps(update, jnp.asarray(0), sample_batch, jax.random.key(0), 2, make_mesh(), 0,
                  20, log=log, bar=_SilentBar(), save=saved.append, log_every=10,
                  checkpoint_every=2)  # fmt: skip
    assert [int(s) for s in saved] == [2]
    assert log.getvalue() == ""


def test_run_steps_stops_after_max_seconds():
    """max_seconds=0: exactly one update runs, it is logged (so the metrics show where the run
    stopped), and nothing is checkpointed inside the loop (the caller saves the final state)."""
    import io

    from numpyro_diffprior.sharding import make_mesh
    from numpyro_diffprior.training_loop import run_steps

    def update(state, batch):
        one = jnp.asarray(1.0)
        return state + 1, {"loss": one, "loss_theta": one, "loss_kappa": one}

    saved, log = [], io.StringIO()
    state = run_steps(update, jnp.asarray(5), lambda key, n: jnp.zeros((n, 1)), jax.random.key(0),
                      2, make_mesh(), 5, 20, log=log, bar=_SilentBar(), save=saved.append,
                      log_every=10, checkpoint_every=1, max_seconds=0.0)  # fmt: skip
    assert int(state) == 6 and saved == []
    (line,) = log.getvalue().splitlines()
    assert json.loads(line)["step"] == 6
