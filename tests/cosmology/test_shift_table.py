"""The CosMomentum shift table: trilinear lookup on its own axes, the sbi_lens-compatible
lookup, clamping, gradients, and the presets' shift models."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import map_coordinates

from numpyro_diffprior.cosmology import shifts
from numpyro_diffprior.cosmology.params import FIDUCIAL
from numpyro_diffprior.cosmology.shift_table import cosmomentum_shift, load_shift_table
from numpyro_diffprior.presets import Preset, get_preset

OMEGA_M_FID = FIDUCIAL["Omega_c"] + FIDUCIAL["Omega_b"]
# the table's values at the fiducial cosmology (Omega_m 0.3156, sigma_8 0.831, w_0 -1), as
# documented with the data: trilinear on the stated axes, and sbi_lens' own lookup
TRILINEAR_FIDUCIAL = [0.0053, 0.0152, 0.0287, 0.0497, 0.0975]
SBI_LENS_FIDUCIAL = [0.0071, 0.0200, 0.0366, 0.0612, 0.1148]


def _lookup(omega_m, sigma_8, w_0, lookup):
    with jax.enable_x64(True):
        out = cosmomentum_shift(
            jnp.float64(omega_m), jnp.float64(sigma_8), jnp.float64(w_0), lookup=lookup
        )
        return np.asarray(out)


def test_table_shape_and_nodes():
    table = load_shift_table()
    assert table.shift.shape == (8, 8, 8, 5) and table.n_bins == 5
    np.testing.assert_allclose(table.bounds, [[0.1, 0.9], [0.3, 1.3], [-2.0, -0.3]])
    for i, j, k in [(0, 0, 0), (3, 5, 2), (7, 7, 7), (2, 4, 6)]:
        om, s8, w = (table.axes[a][n] for a, n in enumerate((i, j, k)))
        np.testing.assert_allclose(
            _lookup(om, s8, w, "trilinear"), table.shift[i, j, k], rtol=1e-12
        )


def test_fiducial_values_of_both_lookups():
    np.testing.assert_allclose(
        _lookup(OMEGA_M_FID, 0.831, -1.0, "trilinear"), TRILINEAR_FIDUCIAL, atol=6e-5
    )
    np.testing.assert_allclose(
        _lookup(OMEGA_M_FID, 0.831, -1.0, "sbi-lens"), SBI_LENS_FIDUCIAL, atol=6e-5
    )


def test_trilinear_matches_scipy_inside_and_clamps_outside():
    table = load_shift_table()
    interp = RegularGridInterpolator(table.axes, table.shift, method="linear")
    rng = np.random.default_rng(0)
    lo, hi = table.bounds[:, 0], table.bounds[:, 1]
    for x in lo + (hi - lo) * rng.uniform(size=(20, 3)):
        np.testing.assert_allclose(_lookup(*x, "trilinear"), interp(x)[0], rtol=1e-12)
    # outside the box: the value on the nearest face
    for x in ([0.05, 0.8, -1.0], [0.3, 1.6, -1.0], [0.95, 0.2, -2.5], [0.3, 0.8, 0.1]):
        np.testing.assert_allclose(
            _lookup(*x, "trilinear"), interp(np.clip(x, lo, hi))[0], rtol=1e-12
        )


def test_sbi_lens_lookup_matches_its_definition():
    """sbi_lens: the stored first axis (sigma_8) indexed by Omega_m and vice versa, each
    coordinate mapped as a cell centre, index = (x - min)/(max - min) n - 1/2, nearest outside."""
    table = load_shift_table()
    stored = np.transpose(table.shift, (1, 0, 2, 3))  # as sbi_lens' file: (sigma_8, Omega_m, w_0)
    rng = np.random.default_rng(1)
    lo, hi = table.bounds[:, 0], table.bounds[:, 1]
    for x in lo - 0.05 + (hi - lo + 0.1) * rng.uniform(size=(10, 3)):
        index = (x - lo) / (hi - lo) * 8 - 0.5
        want = [
            map_coordinates(stored[..., b], index[:, None], order=1, mode="nearest")[0]
            for b in range(5)
        ]
        np.testing.assert_allclose(_lookup(*x, "sbi-lens"), want, rtol=1e-10)


@pytest.mark.parametrize("lookup", ["trilinear", "sbi-lens"])
def test_gradients_finite_and_match_finite_differences(lookup):
    x0 = np.array([0.3456, 0.7123, -1.1234])
    with jax.enable_x64(True):
        f = lambda x: jnp.sum(cosmomentum_shift(x[0], x[1], x[2], lookup=lookup) ** 2)
        g = np.asarray(jax.grad(f)(jnp.asarray(x0)))
        eps = 1e-6
        fd = [
            (float(f(jnp.asarray(x0 + eps * e))) - float(f(jnp.asarray(x0 - eps * e)))) / (2 * eps)
            for e in np.eye(3)
        ]
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, fd, rtol=1e-5)


def test_unknown_lookup_raises():
    with pytest.raises(ValueError, match="lookup"):
        cosmomentum_shift(0.3, 0.8, -1.0, lookup="cubic")


def test_presets_shift_models():
    assert get_preset("lsst-y10-coarse").shift_model == "cosmomentum"
    assert get_preset("lsst-y10-jade").shift_model == "cosmomentum"
    assert get_preset("tiny").shift_model == "empty-beam"
    coarse = get_preset("lsst-y10-coarse")
    theta = jnp.array([FIDUCIAL["Omega_c"], FIDUCIAL["sigma_8"]])
    np.testing.assert_allclose(shifts.preset_shift(coarse, theta), TRILINEAR_FIDUCIAL, atol=1e-4)
    sbi = dataclasses.replace(coarse, shift_model="sbi-lens")
    np.testing.assert_allclose(shifts.preset_shift(sbi, theta), SBI_LENS_FIDUCIAL, atol=1e-4)
    beam = dataclasses.replace(coarse, shift_model="empty-beam")
    full = jnp.array([FIDUCIAL[n] for n in ("Omega_c", "Omega_b", "sigma_8", "h", "n_s", "w_0")])
    np.testing.assert_allclose(
        shifts.preset_shift(beam, theta), shifts.lognormal_shift(full, coarse.survey), rtol=1e-6
    )


def test_preset_shift_model_validation_and_round_trip():
    tiny = get_preset("tiny")
    with pytest.raises(ValueError, match="five-bin LSST-Y10"):
        dataclasses.replace(tiny, shift_model="cosmomentum")
    with pytest.raises(ValueError, match="unknown shift_model"):
        dataclasses.replace(tiny, shift_model="flask")
    coarse = get_preset("lsst-y10-coarse")
    assert Preset.from_json(coarse.to_json()) == coarse
    # files written before shift models existed hold empty-beam maps
    legacy = coarse.to_dict()
    del legacy["shift_model"]
    assert Preset.from_dict(legacy).shift_model == "empty-beam"
