"""Toy spectra and a small analytic ClEmulator (a real `cosmology.emulator.ClEmulator`,
built from a closed form instead of jax-cosmo) so the simulator tests need no table and no
jax-cosmo run.

A module of its own, not conftest: `from conftest import` can resolve to another test
directory's conftest."""

import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology.emulator import ClEmulator, spline_basis
from numpyro_diffprior.cosmology.params import FIDUCIAL
from numpyro_diffprior.presets import get_preset

OMEGA_B = FIDUCIAL["Omega_b"]


def toy_cl(omega_c, sigma_8, n_bins, ell):
    """C_ij = A_ij sigma_8^2 (Omega_m / 0.3)^1.5 (l / 100)^-1.2.

    A_ij = a_i a_j 0.8^|i-j| with a_i = 4e-5 (1 + i/2).
    """
    a = 4e-5 * (1.0 + 0.5 * np.arange(n_bins))
    amp = np.outer(a, a) * 0.8 ** np.abs(np.subtract.outer(np.arange(n_bins), np.arange(n_bins)))
    omega_m = omega_c + OMEGA_B
    return amp[:, :, None] * sigma_8**2 * (omega_m / 0.3) ** 1.5 * (ell / 100.0) ** -1.2


def toy_shift(omega_c, n_bins):
    return 0.01 * (1.0 + np.arange(n_bins)) * ((omega_c + OMEGA_B) / 0.3) ** -0.5


def make_toy_emulator(preset_name="tiny"):
    preset = get_preset(preset_name)
    n_bins = preset.n_bins
    ell = np.geomspace(30.0, 3.0e3 * preset.npix / 16, 32)
    omega_c = np.linspace(0.0, 1.0, 9) ** 2 * 0.95 + 0.05
    sigma_8 = np.geomspace(0.1, 1.6, 6)
    rows, cols = np.triu_indices(n_bins)
    log_cl = np.empty((len(omega_c), len(sigma_8), rows.size, len(ell)))
    log_shift = np.empty((len(omega_c), len(sigma_8), n_bins))
    for i, oc in enumerate(omega_c):
        for j, s8 in enumerate(sigma_8):
            log_cl[i, j] = np.log(toy_cl(oc, s8, n_bins, ell)[rows, cols])
            log_shift[i, j] = np.log(toy_shift(oc, n_bins))
    knots = (np.log(omega_c + OMEGA_B), np.log(sigma_8))
    return ClEmulator(
        ell=jnp.asarray(ell, jnp.float32),
        bounds=jnp.asarray([[omega_c[0], omega_c[-1]], [sigma_8[0], sigma_8[-1]]], jnp.float32),
        offsets=jnp.asarray([OMEGA_B, 0.0], jnp.float32),
        knots=tuple(jnp.asarray(k, jnp.float32) for k in knots),
        basis=tuple(jnp.asarray(spline_basis(k), jnp.float32) for k in knots),
        log_cl=jnp.asarray(log_cl, jnp.float32),
        log_shift=jnp.asarray(log_shift, jnp.float32),
        param_names=preset.param_names,
        preset_json=preset.to_json(),
    )
