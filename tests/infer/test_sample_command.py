"""`numpyro-diffprior sample` end to end, with a Gaussian-oracle prior standing in for the
pretrained network (no trained model needed)."""

import arviz as az
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior import cli
from numpyro_diffprior import testing as oracles
from numpyro_diffprior.diffusion.normalization import Normalizer
from numpyro_diffprior.observations import save_observation
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.prior import DiffusionPrior


@pytest.fixture(scope="module")
def _tiny_prior():
    preset = get_preset("tiny")
    oracle = oracles.gaussian_joint_oracle(preset.n_params, preset.map_shape)
    prior = DiffusionPrior(
        apply_fn=oracles.gaussian_denoise,
        params=oracle,
        normalizer=Normalizer(
            jnp.array([0.27, 0.83]), jnp.array([0.2, 0.14]), jnp.array([0.004, 0.008])
        ),
        n_params=preset.n_params,
        map_shape=preset.map_shape,
        param_names=preset.param_names,
        preset="tiny",
    )
    return prior


@pytest.fixture
def tiny_oracle_prior(monkeypatch, _tiny_prior):
    prior = _tiny_prior
    monkeypatch.setattr(DiffusionPrior, "from_pretrained", classmethod(lambda cls, name: prior))
    return prior


@pytest.mark.parametrize("method, threads", [("diffusion", "1"), ("langevin", "2")])
def test_sample_command(tmp_path, tiny_oracle_prior, method, threads):
    preset = get_preset("tiny")
    rng = np.random.default_rng(0)
    mask = np.ones((16, 16), bool)
    mask[:4] = False
    obs = tmp_path / "obs.npz"
    shear = 0.01 * rng.standard_normal(preset.shear_shape)
    save_observation(obs, shear, preset="tiny", mask=mask, theta_true=np.array([0.3, 0.8]))
    out = tmp_path / "idata.nc"
    argv = ["sample", "--obs", str(obs), "--out", str(out), "--method", method, "--num", "8"]
    argv += ["--steps", "4", "--no-progress", "--threads", threads]
    assert cli.main(argv) == 0
    idata = az.from_netcdf(out)
    assert idata.posterior["kappa"].shape == (4, 2, 2, 16, 16)
    assert idata.posterior.attrs["method"] == method
    assert "theta_true" in idata.constant_data


def test_sample_command_preset_mismatch(tmp_path, tiny_oracle_prior):
    preset = get_preset("lsst-y10-coarse")
    obs = tmp_path / "obs.npz"
    save_observation(obs, np.zeros(preset.shear_shape), preset=preset)
    argv = ["sample", "--obs", str(obs), "--out", str(tmp_path / "x.nc"), "--model", "tiny"]
    assert cli.main(argv) == 2


def test_sample_command_refuses_bad_threads(tmp_path, tiny_oracle_prior, capsys):
    obs = tmp_path / "obs.npz"
    save_observation(obs, np.zeros(get_preset("tiny").shear_shape), preset="tiny")
    argv = ["sample", "--obs", str(obs), "--out", str(tmp_path / "x.nc"), "--no-progress"]
    assert cli.main(argv + ["--threads", "0"]) == 2
    assert "num_threads must be a positive integer" in capsys.readouterr().err
    assert cli.main(argv + ["--threads", "2", "--workers", "2"]) == 2
    assert "num_threads > 1" in capsys.readouterr().err


def test_sample_command_flags_diverged_draws(tmp_path, tiny_oracle_prior, monkeypatch, capsys):
    """Draws beyond the divergence threshold are flagged in the file and the exit status is 3
    (the threshold is lowered to 0 prior sd so that every draw counts as diverged)."""
    from numpyro_diffprior.commands.sample import DIVERGED_EXIT_CODE
    from numpyro_diffprior.infer import runner

    monkeypatch.setattr(runner, "DIVERGENCE_THRESHOLD", 0.0)
    preset = get_preset("tiny")
    obs = tmp_path / "obs.npz"
    shear = 0.01 * np.random.default_rng(1).standard_normal(preset.shear_shape)
    save_observation(obs, shear, preset="tiny")
    out = tmp_path / "idata.nc"
    argv = ["sample", "--obs", str(obs), "--out", str(out), "--num", "6", "--steps", "4"]
    with pytest.warns(RuntimeWarning, match="diverged"):
        assert cli.main(argv + ["--no-progress"]) == DIVERGED_EXIT_CODE == 3
    assert "6 of 6 draws diverged" in capsys.readouterr().err
    idata = az.from_netcdf(out)
    assert bool(idata.sample_stats["diverging"].values.all())
    assert idata.posterior.attrs["num_diverged"] == 6
