import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.cosmology import spectra
from numpyro_diffprior.cosmology.params import FIDUCIAL, PARAMETER_NAMES
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.survey import tomographic_nz

pytestmark = [pytest.mark.jaxcosmo]  # jax-cosmo reference spectra

FID = np.array([FIDUCIAL[n] for n in PARAMETER_NAMES])


@pytest.mark.parametrize("name", ["tiny", "lsst-y10-coarse", "lsst-y10-jade"])
def test_ell_grid_covers_fourier_grid(name):
    preset = get_preset(name)
    ell = spectra.ell_grid(preset)
    assert ell.shape == (40,)
    assert ell[0] < 2 * np.pi / preset.field_rad
    assert ell[-1] > np.sqrt(2) * np.pi * preset.npix / preset.field_rad
    np.testing.assert_allclose(np.diff(np.log(ell)), np.log(ell[1] / ell[0]), rtol=1e-12)
    with pytest.raises(ValueError, match="num"):
        spectra.ell_grid(preset, num=3)


def test_tabulated_nz_is_the_survey_nz():
    survey = get_preset("lsst-y10-coarse").survey
    bins = spectra.redshift_bins(survey)
    z = np.linspace(0.0, survey.z_max, 4001)  # tomographic_nz normalises on the grid it gets
    with jax.enable_x64(True):
        got = np.stack([np.asarray(b(jnp.asarray(z))) for b in bins])
    np.testing.assert_allclose(
        got, tomographic_nz(z, survey), rtol=2e-3, atol=5e-3
    )  # linear interpolation of z^2 near 0


def test_reference_cl_at_fiducial(reference_cl):
    preset = get_preset("tiny")
    ell = spectra.ell_grid(preset)
    cl = reference_cl("tiny", ell)(FID[[0, 2]])
    assert cl.shape == (2, 2, ell.size)
    np.testing.assert_array_equal(cl, np.swapaxes(cl, 0, 1))
    assert np.all(cl > 0)
    # lensing by more distant sources is stronger; |r_12| <= 1 (positive semi-definite)
    assert np.all(cl[1, 1] > cl[0, 0])
    assert np.all(cl[0, 1] ** 2 <= cl[0, 0] * cl[1, 1])
    # linear scales: C_l ∝ sigma_8^2 (Halofit is ~linear at the lowest multipole)
    ratio = reference_cl("tiny", ell)(np.array([FID[0], 1.1 * FID[2]]))[..., 0] / cl[..., 0]
    np.testing.assert_allclose(ratio, 1.1**2, rtol=0.03)


def test_reference_cl_rejects_bad_input():
    survey = get_preset("tiny").survey
    with pytest.raises(ValueError, match="ell"):
        spectra.angular_cl_reference(FID, survey, np.array([1.0, 10.0]))
    with pytest.raises(ValueError, match="theta_full"):
        spectra.angular_cl_reference(FID[:2], survey, np.array([100.0]))


def test_reference_cl_in_float32_matches_float64():
    # x64=False runs jax-cosmo in float32 (the simulator benchmark's second baseline): the same
    # spectra to float32 accuracy (measured 2e-6 relative; allowed 1e-4)
    survey, ell = get_preset("tiny").survey, np.array([50.0, 500.0, 3000.0])
    cl64 = np.asarray(spectra.angular_cl_reference(FID, survey, ell))
    cl32 = spectra.angular_cl_reference(FID, survey, ell, x64=False)
    assert cl32.dtype == jnp.float32 and cl64.dtype == np.float64
    np.testing.assert_allclose(np.asarray(cl32, np.float64), cl64, rtol=1e-4)
