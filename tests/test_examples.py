"""Every example and the demo run end to end with tiny arguments on the shipped model."""

import importlib.util
import os
import pathlib

import numpy as np
import pytest

from numpyro_diffprior.cli import main as cli_main

pytestmark = [pytest.mark.e2e]  # runs the example scripts

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_quickstart_example(tmp_path):
    ex = load_example("quickstart")
    out = tmp_path / "idata.nc"
    idata = ex.main(ex.parse_args(["--num", "8", "--steps", "3", "--out", str(out)]))
    assert out.is_file()
    assert idata.posterior["theta"].shape[-1] == 2
    assert np.all(np.isfinite(idata.posterior["kappa"].values))


@pytest.mark.slow
def test_masked_survey_example(tmp_path):
    ex = load_example("masked_survey")
    out = tmp_path / "masked.png"
    result = ex.main(ex.parse_args(["--num", "16", "--steps", "4", "--out", str(out)]))
    assert out.stat().st_size > 10_000
    # masked pixels are informed by the prior only: their posterior spread is larger
    assert result["std_masked"] > result["std_observed"]


@pytest.mark.slow
def test_diffusion_vs_hmc_example(tmp_path):
    ex = load_example("diffusion_vs_hmc")
    args = [
        "--num",
        "8",
        "--steps",
        "3",
        "--warmup",
        "5",
        "--samples",
        "5",
        "--max-tree-depth",
        "3",
        "--out",
        str(tmp_path / "cmp"),
    ]
    report = ex.main(ex.parse_args(args))
    assert os.path.isfile(report)
    assert (tmp_path / "cmp" / "theta_contours.png").stat().st_size > 10_000


@pytest.mark.slow
def test_demo_quick_writes_results(tmp_path):
    out = tmp_path / "results"
    assert cli_main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    for name in ("diffusion", "langevin", "amortized", "nuts"):  # a conditional model ships
        assert (out / f"idata_{name}.nc").is_file()
    assert (out / "report.md").read_text().count("|") > 20
    assert (out / "kappa_maps.png").stat().st_size > 10_000
