"""Comparison tables, figures and markdown report on the `tiny` preset (synthetic posteriors)."""

import os

import numpy as np
import pytest

from numpyro_diffprior.diagnostics.compare import compare_posteriors, quality_checks
from numpyro_diffprior.diagnostics.report import write_calibration_report, write_report
from numpyro_diffprior.infer.inference_data import to_inference_data
from numpyro_diffprior.presets import get_preset

PRESET = get_preset("tiny")
THETA_TRUE = np.array([0.27, 0.83])
THETA_STD = np.array([0.03, 0.05])


def _kappa_truth(rng):
    white = rng.standard_normal(PRESET.map_shape)
    k = np.fft.fftfreq(PRESET.npix)
    filt = np.exp(-(k[:, None] ** 2 + k[None, :] ** 2) / 0.02)
    return 0.02 * np.real(np.fft.ifft2(np.fft.fft2(white) * filt)) / filt.mean() ** 0.5


def _idata(rng, kappa_true, shift=0.0, scale=1.0, chains=2, draws=150):
    """Gaussian 'posterior' around the truth: theta ~ N(truth + shift sigma, (scale sigma)^2)."""
    theta = (
        THETA_TRUE + shift * THETA_STD + scale * THETA_STD * rng.standard_normal((chains, draws, 2))
    )
    kappa = kappa_true + 0.004 * scale * rng.standard_normal((chains, draws) + PRESET.map_shape)
    return to_inference_data(
        theta,
        kappa,
        param_names=PRESET.param_names,
        shear_obs=np.zeros(PRESET.shear_shape),
        attrs={"preset": "tiny", "method": "synthetic"},
        truth={"theta": THETA_TRUE, "kappa": kappa_true},
    )


@pytest.fixture(scope="module")
def idatas():
    rng = np.random.default_rng(0)
    kt = _kappa_truth(rng)
    return {
        "nuts": _idata(rng, kt),
        "diffusion": _idata(rng, kt, shift=0.1),
        "langevin": _idata(rng, kt, shift=1.0, scale=2.0),
    }


def test_compare_tables(idatas):
    tab = compare_posteriors(idatas)
    assert tab["reference"] == "nuts" and tab["preset"] == "tiny"
    d = tab["theta"]["langevin"]["delta_mean_over_ref_std"]
    # shift 1.0 sigma_true, reference std ~ sigma_true: delta ~ 1 within sampling error (n=300)
    np.testing.assert_allclose(d, 1.0, atol=0.35)
    np.testing.assert_allclose(tab["theta"]["langevin"]["std_ratio"], 2.0, rtol=0.2)
    assert tab["kappa"]["diffusion"]["corr_ref"] > 0.99
    assert tab["kappa"]["nuts"]["corr_truth"] > 0.99
    r = tab["r_ell"]["methods"]["nuts"]
    assert r.shape == (PRESET.n_bins, len(tab["r_ell"]["ell"]))
    c = tab["power"]["methods"]["nuts"]["median"]
    assert c.shape == (2, 2, len(tab["power"]["ell"])) and np.all(np.diagonal(c) > 0)
    for name, pdf in tab["pdf"]["methods"].items():
        widths = np.diff(tab["pdf"]["edges"], axis=1)
        assert np.all(np.sum(pdf * widths, axis=1) <= 1.0 + 1e-6), name
    checks = {(r["method"], r["check"]): r["passed"] for r in quality_checks(tab)}
    assert checks[("diffusion", "|Δmean(Omega_c)| / σ_nuts")]
    assert not checks[("langevin", "|Δmean(Omega_c)| / σ_nuts")]
    assert not checks[("langevin", "σ(sigma_8) / σ_nuts")]


def test_compare_rejects_unknown_reference(idatas):
    with pytest.raises(ValueError, match="reference"):
        compare_posteriors(idatas, reference="hmc")


def _nontrivial_png(path):
    import matplotlib.image

    img = matplotlib.image.imread(path)
    return img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100 and img[..., :3].std() > 0.05


def test_write_report(idatas, tmp_path):
    path = write_report(tmp_path, idatas)
    text = open(path).read()
    for png in ("theta_contours", "kappa_maps", "power_spectra", "r_ell", "one_point_pdfs"):
        f = tmp_path / f"{png}.png"
        assert f.exists() and _nontrivial_png(f), png
        assert f"{png}.png" in text
    assert "## Quality checks" in text and "PASS" in text and "FAIL" in text
    assert os.path.exists(tmp_path / "summary.json")


def test_write_calibration_report(tmp_path):
    from numpyro_diffprior.diagnostics.calibration import calibration_summary

    rng = np.random.default_rng(1)
    truth = rng.standard_normal((60, 2 + 32))
    draws = truth[:, None] + rng.standard_normal((60, 40, 34))
    summary = calibration_summary(
        0,
        draws[..., :2],
        draws[..., 2:].reshape(60, 40, 2, 4, 4),
        truth[:, :2],
        truth[:, 2:].reshape(60, 2, 4, 4),
    )
    path = write_calibration_report(tmp_path, summary)
    assert "MIRA" in open(path).read()
    assert _nontrivial_png(tmp_path / "tarp.png") and _nontrivial_png(tmp_path / "mira.png")


def test_evaluate_command(idatas, tmp_path, capsys):
    from numpyro_diffprior.cli import main
    from numpyro_diffprior.observations import save_observation

    paths = []
    for name in ("nuts", "diffusion"):
        paths.append(str(tmp_path / f"{name}.nc"))
        idatas[name].to_netcdf(paths[-1])
    obs = save_observation(
        tmp_path / "obs.npz",
        np.zeros(PRESET.shear_shape),
        preset="tiny",
        theta_true=THETA_TRUE,
        kappa_true=idatas["nuts"].constant_data["kappa_true"].values,
    )
    out = tmp_path / "report"
    argv = ["evaluate", "--idata", *paths, "--names", "nuts", "diffusion", "--obs", obs]
    assert main(argv + ["--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "reference: **nuts**" in text and "diffusion" in text
    assert f"reference: nuts ({paths[0]})" in capsys.readouterr().out
    import json

    def no_constant(name):
        raise AssertionError(f"summary.json holds {name}, which is not JSON")

    json.loads((out / "summary.json").read_text(), parse_constant=no_constant)
    assert main(["evaluate", "--idata", paths[0], "--names", "a", "b", "--out", str(out)]) == 2
