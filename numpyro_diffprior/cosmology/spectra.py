"""Tomographic convergence power spectra C_l^{ij}(theta) from jax-cosmo (the reference).

Limber approximation, Eisenstein & Hu (1998) transfer function and Halofit (Takahashi et al.
2012) as implemented by jax-cosmo (Campagne et al. 2023), flat wCDM (Omega_k = 0, w_a = 0).
The survey's tomographic n_i(z) (`survey.tomographic_nz`) enter through a tabulated redshift
distribution. jax-cosmo is slow (~0.2 s per theta after a 10-45 s compile); the simulator uses
`cosmology.emulator` instead, which is built from and validated against this module.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import register_pytree_node_class

from numpyro_diffprior.survey import Survey, tomographic_nz

__all__ = ["ell_grid", "TabulatedNz", "redshift_bins", "angular_cl_reference", "NZ_GRID_SIZE"]

NZ_GRID_SIZE = 1024  # points of the tabulated n_i(z) on [0, z_max]


def _import_jax_cosmo():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jax-cosmo 0.1.0 imports the deprecated pkg_resources
        import jax_cosmo as jc
    return jc


jc = _import_jax_cosmo()


def ell_grid(preset, num: int = 40) -> np.ndarray:
    """Log-spaced multipoles covering the map's Fourier grid, shape (num,).

    From 0.5 x the fundamental mode 2 pi / L to 1.25 x the grid corner sqrt(2) pi N / L,
    with L = `preset.field_rad`, N = `preset.npix`.
    """
    if num < 8:
        raise ValueError(f"num must be >= 8, got {num}")
    ell_min = 0.5 * 2.0 * np.pi / preset.field_rad
    ell_max = 1.25 * np.sqrt(2.0) * np.pi * preset.npix / preset.field_rad
    return np.geomspace(ell_min, ell_max, num)


@register_pytree_node_class
class TabulatedNz(jc.redshift.redshift_distribution):
    """A redshift distribution tabulated on a grid, linearly interpolated (zero outside).

    params: (z (M,), nz (M,)); jax-cosmo renormalises it to unit integral on [0, zmax].
    """

    def pz_fn(self, z):
        zg, nz = self.params
        return jnp.interp(z, zg, nz, left=0.0, right=0.0)


def redshift_bins(survey: Survey, num: int = NZ_GRID_SIZE) -> list:
    """One `TabulatedNz` per tomographic bin of `survey` (equal-number, photo-z smoothed)."""
    z = np.linspace(0.0, survey.z_max, num)
    nz = tomographic_nz(z, survey)
    n_i = survey.n_gal_arcmin2 / survey.n_bins
    return [
        TabulatedNz(jnp.asarray(z), jnp.asarray(row), gals_per_arcmin2=n_i, zmax=survey.z_max)
        for row in nz
    ]


def _cosmology(theta_full):
    omega_c, omega_b, sigma_8, h, n_s, w_0 = (theta_full[i] for i in range(6))
    return jc.Cosmology(
        Omega_c=omega_c,
        Omega_b=omega_b,
        h=h,
        n_s=n_s,
        sigma8=sigma_8,
        Omega_k=0.0,
        w0=w_0,
        wa=0.0,
    )


def _cl_matrix(cl_flat, n_bins: int):
    """jax-cosmo's (n_cls, L) upper-triangle ordering -> symmetric (C, C, L)."""
    rows, cols = np.triu_indices(n_bins)
    out = jnp.zeros((n_bins, n_bins, cl_flat.shape[-1]), cl_flat.dtype)
    out = out.at[rows, cols].set(cl_flat)
    return out.at[cols, rows].set(cl_flat)


def angular_cl_reference(theta_full, survey: Survey, ell, *, x64: bool = True):
    """C_l^{ij} of the tomographic convergence from jax-cosmo, shape (C, C, L), symmetric.

    theta_full: (6,) in `PARAMETER_NAMES` order (Omega_c, Omega_b, sigma_8, h, n_s, w_0).
    Runs in float64 inside a local `jax.enable_x64` context and returns float64 arrays;
    ``x64=False`` runs jax-cosmo in float32 (JAX's default: faster, less accurate; the
    simulator benchmark times both). Not for use inside a model (slow); jit it once per survey
    and ell if called repeatedly.
    """
    ell = np.asarray(ell, dtype=np.float64)
    if ell.ndim != 1 or np.any(ell < 2):
        raise ValueError("ell must be a 1-D array of multipoles >= 2")
    dtype = jnp.float64 if x64 else jnp.float32
    with jax.enable_x64(x64), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*int64.*")
        theta_full = jnp.asarray(theta_full, dtype=dtype)
        if theta_full.shape != (6,):
            raise ValueError(f"theta_full must have shape (6,), got {theta_full.shape}")
        probe = jc.probes.WeakLensing(redshift_bins(survey), sigma_e=survey.sigma_e)
        cl = jc.angular_cl.angular_cl(_cosmology(theta_full), jnp.asarray(ell, dtype), [probe])
        return _cl_matrix(cl, survey.n_bins)
