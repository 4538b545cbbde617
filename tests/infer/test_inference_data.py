"""Atomic InferenceData writes: a failed write leaves the previous file intact."""

import arviz as az
import numpy as np
import pytest

from numpyro_diffprior.infer.inference_data import save_inference_data, to_inference_data


def _idata(value):
    theta = np.full((2, 3, 2), value)
    kappa = np.full((2, 3, 1, 4, 4), value)
    return to_inference_data(theta, kappa, param_names=("Omega_c", "sigma_8"))


def test_save_round_trips_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "idata.nc"
    assert save_inference_data(_idata(1.0), path) == str(path)
    loaded = az.from_netcdf(path)
    np.testing.assert_array_equal(loaded.posterior["theta"].values, 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["idata.nc"]


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "idata.nc"
    save_inference_data(_idata(1.0), path)
    good = _idata(2.0)

    def broken(self, filename, *a, **k):
        open(filename, "wb").write(b"partial")  # a write that dies half way
        raise OSError("disk full")

    monkeypatch.setattr(az.InferenceData, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        save_inference_data(good, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(az.from_netcdf(path).posterior["theta"].values, 1.0)
    assert [p.name for p in tmp_path.iterdir()] == ["idata.nc"]
