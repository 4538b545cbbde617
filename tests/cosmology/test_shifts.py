import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from numpyro_diffprior.cosmology import shifts
from numpyro_diffprior.cosmology.params import FIDUCIAL, PARAMETER_NAMES
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.survey import tomographic_nz

FID = np.array([FIDUCIAL[n] for n in PARAMETER_NAMES])
SURVEY = get_preset("lsst-y10-coarse").survey


def _kappa_empty_quad(z_s, omega_m, w_0):
    """Oracle: |kappa_empty(z_s)| by nested scipy quadrature over z (flat wCDM, c/H0 = 1)."""
    inv_e = lambda z: (
        1.0 / np.sqrt(omega_m * (1 + z) ** 3 + (1 - omega_m) * (1 + z) ** (3 * (1 + w_0)))
    )
    x = lambda z: quad(inv_e, 0.0, z, epsabs=0, epsrel=1e-11)[0]
    x_s = x(z_s)
    integrand = lambda z: inv_e(z) * x(z) * (x_s - x(z)) / x_s * (1 + z)
    return 1.5 * omega_m * quad(integrand, 0.0, z_s, epsabs=0, epsrel=1e-10)[0]


@pytest.mark.parametrize("omega_c,w_0", [(0.2664, -1.0), (0.6, -0.5), (0.05, -1.8)])
def test_empty_beam_matches_quadrature(omega_c, w_0):
    theta = FID.copy()
    theta[0], theta[5] = omega_c, w_0
    omega_m = omega_c + theta[1]
    z = shifts._z_grid(SURVEY)
    with jax.enable_x64(True):
        per_source = np.asarray(shifts._empty_beam_per_source(jnp.asarray(theta), jnp.asarray(z)))
        lam = np.asarray(shifts.empty_beam_convergence(jnp.asarray(theta), SURVEY))
    for z_s in (0.3, 1.0, 2.5):
        oracle = _kappa_empty_quad(z_s, omega_m, w_0)
        np.testing.assert_allclose(np.interp(z_s, z, per_source), oracle, rtol=2e-4)
    assert np.all(lam > 0) and np.all(np.diff(lam) > 0)


def test_bin_average_matches_quadrature():
    theta = FID.copy()
    omega_m, w_0 = theta[0] + theta[1], theta[5]
    with jax.enable_x64(True):
        lam = np.asarray(shifts.empty_beam_convergence(jnp.asarray(theta), SURVEY))
    # bin average of the oracle on an independent grid over the full n(z) support
    z_fine = np.linspace(1e-4, SURVEY.z_max, 250)
    k_fine = np.array([_kappa_empty_quad(zs, omega_m, w_0) for zs in z_fine])
    nz = tomographic_nz(z_fine, SURVEY)
    expect = np.trapezoid(nz * k_fine, z_fine, axis=1) / np.trapezoid(nz, z_fine, axis=1)
    np.testing.assert_allclose(lam, expect, rtol=3e-3)


def test_shift_positive_monotone_in_bin_and_fiducial_values():
    lam = np.asarray(shifts.lognormal_shift(jnp.asarray(FID, jnp.float32), SURVEY))
    assert lam.shape == (5,)
    assert np.all(lam > 0) and np.all(np.diff(lam) > 0)
    # documented fiducial values (docs/cosmology.md), same order as sbi_lens' 0.007 ... 0.115
    np.testing.assert_allclose(lam, [0.00844, 0.02655, 0.05333, 0.09872, 0.23003], rtol=2e-3)


def test_shift_smooth_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        f = jax.jit(lambda t: shifts.lognormal_shift(t, SURVEY))
        jac = np.asarray(jax.jacfwd(f)(jnp.asarray(FID)))
        assert np.all(np.isfinite(jac))
        for p in (0, 5):
            h = 1e-5
            e = np.zeros(6)
            e[p] = h
            fd = (np.asarray(f(jnp.asarray(FID + e))) - np.asarray(f(jnp.asarray(FID - e)))) / (
                2 * h
            )
            np.testing.assert_allclose(jac[:, p], fd, rtol=1e-6, atol=1e-10)
    assert np.all(jac[:, 0] > 0)  # more matter -> deeper empty beam
    assert np.allclose(jac[:, 3], 0) and np.allclose(jac[:, 4], 0)  # no h or n_s dependence


def test_shift_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        shifts.lognormal_shift(jnp.ones(2), SURVEY)
