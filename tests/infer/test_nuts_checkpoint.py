"""Resumable NUTS (`infer.nuts_segments`, `baseline --checkpoint`): an interrupted and resumed
run gives the draws of an uninterrupted one, to the bit; a checkpoint of another run is refused.

Interruptions are simulated in-process: saving the checkpoint raises after a given number of
segments (as a kill between two segments would leave it), then the same call runs again.
"""

import jax
import numpy as np
import pytest
from test_nuts import _observation, oracle_model

import numpyro_diffprior.infer.nuts_segments as segments
from numpyro_diffprior.infer.mcmc_checkpoint import state_from_arrays, state_to_arrays
from numpyro_diffprior.infer.nuts import nuts_baseline
from numpyro_diffprior.presets import get_preset

KWARGS = dict(
    preset="tiny", num_warmup=20, num_samples=15, num_chains=2, max_tree_depth=4,
    progress_bar=False, model=oracle_model, checkpoint_every=6,
)  # fmt: skip


class Interrupted(Exception):
    pass


def _interrupt_after(monkeypatch, segments_saved: int):
    """Make the run stop (raise Interrupted) once `segments_saved` segments were saved."""
    save = segments.save_group
    calls = []

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        calls.append(1)
        if len(calls) >= segments_saved:
            raise Interrupted

    monkeypatch.setattr(segments, "save_group", save_then_stop)


def _assert_same_draws(a, b):
    for name in ("theta", "kappa"):
        np.testing.assert_array_equal(a.posterior[name].values, b.posterior[name].values)
    for name in ("n_steps", "step_size", "lp", "diverging"):
        np.testing.assert_array_equal(a.sample_stats[name].values, b.sample_stats[name].values)


@pytest.fixture(scope="module")
def shear():
    return _observation(1)[0]


@pytest.fixture(scope="module")
def finished(shear, tmp_path_factory):
    """(checkpoint directory, result) of a run never interrupted."""
    path = tmp_path_factory.mktemp("ckpt") / "run"
    return path, nuts_baseline(jax.random.key(5), shear_obs=shear, checkpoint=path, **KWARGS)


@pytest.fixture(scope="module")
def uninterrupted(finished):
    return finished[1]


@pytest.mark.parametrize("saved", [2, 5])  # stopped in warmup (12 of 20), in sampling (4 of 15)
def test_interrupted_and_resumed_run_gives_the_same_draws(
    shear, uninterrupted, tmp_path, monkeypatch, saved
):
    path = tmp_path / "run"
    with monkeypatch.context() as patch:
        _interrupt_after(patch, saved)
        with pytest.raises(Interrupted):
            nuts_baseline(jax.random.key(5), shear_obs=shear, checkpoint=path, **KWARGS)
    assert (path / "run.json").exists() and (path / "chains-0-1" / "state.npz").exists()
    resumed = nuts_baseline(jax.random.key(5), shear_obs=shear, checkpoint=path, **KWARGS)
    assert resumed.posterior["theta"].shape == (2, 15, 2)
    _assert_same_draws(resumed, uninterrupted)
    attrs = resumed.posterior.attrs
    assert attrs["num_samples"] == 15 and attrs["sampling_time_s"] > 0
    assert attrs["num_gradients"] == uninterrupted.posterior.attrs["num_gradients"]


def test_checkpointed_run_equals_the_plain_run(shear, uninterrupted):
    """Vectorised chains run in segments take the plain run's path exactly (the same
    compiled NumPyro step from the same states)."""
    plain = nuts_baseline(jax.random.key(5), shear_obs=shear, **KWARGS)  # no checkpoint
    _assert_same_draws(plain, uninterrupted)


def test_a_finished_checkpoint_returns_its_draws_and_can_grow(shear, finished, tmp_path):
    import shutil

    uninterrupted = finished[1]
    path = tmp_path / "run"
    shutil.copytree(finished[0], path)
    again = nuts_baseline(jax.random.key(5), shear_obs=shear, checkpoint=path, **KWARGS)
    _assert_same_draws(again, uninterrupted)
    longer = nuts_baseline(
        jax.random.key(5), shear_obs=shear, checkpoint=path, **{**KWARGS, "num_samples": 20}
    )
    assert longer.posterior["theta"].shape == (2, 20, 2)
    np.testing.assert_array_equal(
        longer.posterior["theta"].values[:, :15], uninterrupted.posterior["theta"].values
    )


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(seed=6), "key"),
        (dict(shear_scale=1.01), "observation"),
        (dict(max_tree_depth=5), "max_tree_depth"),
        (dict(num_warmup=21), "num_warmup"),
        (dict(num_chains=3), "num_chains"),
    ],
)
def test_checkpoint_of_another_run_is_refused(shear, finished, change, named):
    path = finished[0]
    change = dict(change)
    key = jax.random.key(change.pop("seed", 5))
    obs = shear * change.pop("shear_scale", 1.0)
    with pytest.raises(ValueError, match=f"written for another run.*{named}"):
        nuts_baseline(key, shear_obs=obs, checkpoint=path, **{**KWARGS, **change})


def test_state_round_trips_through_arrays(shear):
    """An HMCState (namedtuples, dicts keyed by tuples, typed keys) survives the checkpoint
    format unchanged."""
    from numpyro.infer import NUTS

    from numpyro_diffprior.runtime.model_init import initial_params, model_potential

    kw = dict(preset=get_preset("tiny"), shear_obs=shear, mask=None, noise_std=None)
    from numpyro.infer import init_to_median

    init = initial_params(jax.random.key(0), oracle_model, kw, init_to_median())
    kernel = NUTS(potential_fn=model_potential(oracle_model, kw), max_tree_depth=3)
    state = kernel.init(jax.random.key(1), 10, init, (), {})
    state = kernel.sample(state, (), {})
    arrays, structure = state_to_arrays(state)
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    back = state_from_arrays(arrays, structure)
    assert jax.tree.structure(back) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(back), strict=True):
        if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="unexpected type"):
        state_from_arrays(arrays, {"namedtuple": "os:stat_result", "fields": {}})


@pytest.mark.e2e
def test_baseline_command_resumes_from_its_checkpoint(tmp_path, monkeypatch, capsys):
    """`baseline --checkpoint`: killed after its first checkpoint, rerun, it writes the draws of
    a run never interrupted; another --max-tree-depth on that checkpoint is refused."""
    import arviz as az

    from numpyro_diffprior import cli
    from numpyro_diffprior.observations import save_observation

    preset = get_preset("tiny")
    obs = tmp_path / "obs.npz"
    shear = 0.01 * np.random.default_rng(0).standard_normal(preset.shear_shape)
    save_observation(obs, shear, preset="tiny", theta_true=np.array([0.3, 0.8]))

    def argv(out, ckpt, depth="3"):
        return ["baseline", "--obs", str(obs), "--out", str(tmp_path / out), "--warmup", "10",
                "--samples", "8", "--chains", "2", "--max-tree-depth", depth, "--workers", "1",
                "--no-progress", "--checkpoint", str(tmp_path / ckpt), "--checkpoint-every",
                "4"]  # fmt: skip

    assert cli.main(argv("full.nc", "full")) == 0
    with monkeypatch.context() as patch:
        _interrupt_after(patch, 3)  # 10 warmup iterations done (4 + 4 + 2)
        with pytest.raises(Interrupted):
            cli.main(argv("resumed.nc", "resumed"))
    assert not (tmp_path / "resumed.nc").exists()
    assert cli.main(argv("resumed.nc", "resumed")) == 0
    full, resumed = az.from_netcdf(tmp_path / "full.nc"), az.from_netcdf(tmp_path / "resumed.nc")
    assert resumed.posterior["theta"].shape == (2, 8, 2)
    _assert_same_draws(resumed, full)
    assert cli.main(argv("other.nc", "resumed", depth="4")) == 2
    assert "max_tree_depth: 3 there, 4 now" in capsys.readouterr().err


def test_baseline_command_checks_the_checkpoint_options(tmp_path, capsys):
    from numpyro_diffprior import cli

    base = ["baseline", "--obs", str(tmp_path / "obs.npz"), "--out", str(tmp_path / "n.nc")]
    assert cli.main(base + ["--checkpoint", str(tmp_path / "c"), "--checkpoint-every", "0"]) == 2
    assert "--checkpoint-every must be >= 1, got 0" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert cli.main(base + ["--checkpoint", str(tmp_path / "file")]) == 2
    assert "is a file; it must be a directory" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.processes
def test_checkpointed_chains_in_worker_processes(shear, tmp_path):
    """With 2 workers each group of chains keeps its own subdirectory; rerun on a finished
    checkpoint, the run returns the same draws without sampling again."""
    kw = {**KWARGS, "num_chains": 3, "num_warmup": 10, "num_samples": 6, "num_workers": 2}
    path = tmp_path / "run"
    first = nuts_baseline(jax.random.key(5), shear_obs=shear, checkpoint=path, **kw)
    assert sorted(p.name for p in path.iterdir()) == ["chains-0-1", "chains-2-2", "run.json"]
    again = nuts_baseline(jax.random.key(5), shear_obs=shear, checkpoint=path, **kw)
    _assert_same_draws(again, first)
    assert first.posterior.attrs["num_workers"] == 2


def test_chain_keys_need_one_key_per_chain():
    key = jax.random.key(0)
    run, init = segments.chain_keys(jax.random.split(key, 3), 3)
    assert run.shape == init.shape == (3,)
    assert segments.chain_keys(key, 1)[0].shape == ()
    with pytest.raises(ValueError, match=r"one random key per chain \(2\).*split\(key, 2\)"):
        segments.chain_keys(key, 2)
