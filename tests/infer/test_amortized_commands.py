"""`sample --method amortized`, `calibrate --method amortized` and `train --conditional` flags:
end to end with the exact conditional oracle standing in for a trained conditional model, and
the error that says how to train one when none ships."""

import arviz as az
import numpy as np
import pytest

from numpyro_diffprior import cli
from numpyro_diffprior.amortized import AmortizedPrior, ObservationRange
from numpyro_diffprior.observations import save_observation
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.testing.conditional import gaussian_amortized_prior

TINY = get_preset("tiny")


@pytest.fixture(scope="module")
def _tiny_amortized():
    return gaussian_amortized_prior(
        TINY.map_shape, kappa_std=0.006, param_names=TINY.param_names, preset="tiny",
        observation_range=ObservationRange.for_preset(TINY),
    )[0]  # fmt: skip


def _observation(path, mask=None, noise_std=None):
    shear = 0.01 * np.random.default_rng(0).standard_normal(TINY.shear_shape)
    save_observation(path, shear, preset="tiny", mask=mask, noise_std=noise_std,
                     theta_true=np.array([0.3, 0.8]))  # fmt: skip
    return str(path)


def test_sample_amortized_without_a_model_says_how_to_train(tmp_path, capsys):
    obs = _observation(tmp_path / "obs.npz")
    argv = ["sample", "--obs", obs, "--out", str(tmp_path / "x.nc"), "--method", "amortized"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "no trained amortised" in err and "numpyro-diffprior train --conditional" in err


def test_sample_amortized_end_to_end(tmp_path, monkeypatch, _tiny_amortized, capsys):
    monkeypatch.setattr(AmortizedPrior, "from_pretrained",
                        classmethod(lambda cls, name: _tiny_amortized))  # fmt: skip
    mask = np.ones((16, 16), bool)
    mask[:4] = False  # 25 % masked: inside the 40 % of the range
    obs = _observation(tmp_path / "obs.npz", mask=mask)
    out = tmp_path / "idata.nc"
    argv = ["sample", "--obs", obs, "--out", str(out), "--method", "amortized", "--num", "8",
            "--steps", "4", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    idata = az.from_netcdf(out)
    assert idata.posterior["kappa"].shape == (4, 2, 2, 16, 16)
    assert idata.posterior.attrs["method"] == "amortized"
    assert "theta_true" in idata.constant_data
    assert idata.posterior.attrs["denoiser_calls_per_draw"] == 4  # DPM-Solver++(2M), 4 steps
    heun = tmp_path / "heun.nc"
    argv_heun = argv[:4] + [str(heun)] + argv[5:] + ["--sampler", "ode"]
    assert cli.main(argv_heun) == 0
    attrs = az.from_netcdf(heun).posterior.attrs
    assert attrs["sampler"] == "ode" and attrs["denoiser_calls_per_draw"] == 7
    guided = argv[:6] + ["diffusion"] + argv[7:] + ["--sampler", "dpmpp-2m"]
    assert cli.main(guided) == 2
    assert "--sampler dpmpp-2m applies to --method amortized only" in capsys.readouterr().err
    bad = argv[:-3] + ["--guidance", "mmps", "--no-progress"]
    assert cli.main(bad) == 2
    assert "does not apply to --method amortized" in capsys.readouterr().err
    loud = _observation(tmp_path / "loud.npz", noise_std=3 * TINY.noise_std())
    argv[2] = loud
    assert cli.main(argv) == 2
    assert "noise level outside the training range" in capsys.readouterr().err


def test_calibrate_amortized_without_a_model_says_how_to_train(tmp_path, capsys):
    argv = ["calibrate", "--method", "amortized", "--model", "tiny", "--num-obs", "2",
            "--num-draws", "4", "--out", str(tmp_path / "cal"), "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 2
    assert "train --conditional" in capsys.readouterr().err
    guided = ["calibrate", "--method", "diffusion", "--sampler", "dpmpp-2m"] + argv[3:]
    assert cli.main(guided) == 2
    assert "--sampler applies to --method amortized only" in capsys.readouterr().err
    for flag in ("--chunk-size", "--threads"):
        assert cli.main(["calibrate", "--method", "diffusion", flag, "2"] + argv[3:]) == 2
        assert f"{flag} applies to --method amortized only" in capsys.readouterr().err


def test_train_conditional_flags_are_checked(tmp_path, capsys):
    base = ["train", "--preset", "tiny", "--steps", "4", "--out", str(tmp_path / "run")]
    assert cli.main(base + ["--noise-range", "0.5,2"]) == 2
    assert "applies to --conditional only" in capsys.readouterr().err
    bad = [["--noise-range", "2,1"], ["--mask-family", "stars"], ["--max-masked-fraction", "2"]]
    for flags in bad:
        message = flags[0]
        assert cli.main(base + ["--conditional"] + flags) == 2
        assert message in capsys.readouterr().err
