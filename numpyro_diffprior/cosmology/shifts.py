"""Log-normal shift parameters lambda_i(theta) of the tomographic convergence.

A preset's `shift_model` picks one of `SHIFT_MODELS` (`preset_shift`):
- "cosmomentum" (default of the LSST-Y10 presets): the CosMomentum table that sbi_lens and the
  JADE paper use, trilinear on its own axes (`shift_table`);
- "sbi-lens": the same table read with sbi_lens' own swapped-axes lookup (its exact maps);
- "empty-beam": the empty-beam convergence below, for any survey.

A shifted log-normal field kappa_i = lambda_i [exp(g_i - var/2) - 1] has kappa_i >= -lambda_i
(Hilbert, Hartlap & Schneider 2011; Xavier et al. 2016). The physical lower bound of the
convergence is the empty-beam value, a line of sight with no matter (delta = -1) everywhere:

    kappa_empty(chi_s) = -(3/2) Omega_m (H0/c)^2 int_0^chi_s dchi chi (chi_s - chi) / chi_s / a(chi)

averaged over each bin's source distribution n_i(z) (Schneider, Kochanek & Wambsganss 2006,
eq. 6.22 with delta = -1). `lognormal_shift` uses lambda_i = |kappa_empty,i|, so the log-normal
field has the same minimum as the real convergence; docs/cosmology.md compares the values with
sbi_lens' CosMomentum shifts.
Flat wCDM (w_a = 0), no radiation; everything is in units of the Hubble distance c/H0, so the
result does not depend on h. Pure jnp: jit/vmap/grad-able in theta_full.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology.params import full_parameters
from numpyro_diffprior.cosmology.shift_table import cosmomentum_shift, load_shift_table
from numpyro_diffprior.survey import LSST_Y10, Survey, tomographic_nz

__all__ = [
    "SHIFT_MODELS",
    "check_shift_model",
    "empty_beam_convergence",
    "lognormal_shift",
    "preset_shift",
]

SHIFT_MODELS = ("cosmomentum", "sbi-lens", "empty-beam")
_TABLE_LOOKUP = {"cosmomentum": "trilinear", "sbi-lens": "sbi-lens"}

_NUM_Z = 512


def _z_grid(survey: Survey) -> np.ndarray:
    """Redshift grid, dense at low z (quadratic spacing) up to survey.z_max."""
    return survey.z_max * np.linspace(0.0, 1.0, _NUM_Z) ** 2


def _cumulative_trapezoid(y, x):
    dx = jnp.diff(x)
    return jnp.concatenate([jnp.zeros(1, y.dtype), jnp.cumsum(0.5 * (y[1:] + y[:-1]) * dx)])


def _empty_beam_per_source(theta_full, z):
    """|kappa_empty| for a source at each redshift z, shape (len(z),)."""
    omega_c, omega_b, w_0 = theta_full[0], theta_full[1], theta_full[5]
    omega_m = omega_c + omega_b
    zp1 = 1.0 + jnp.asarray(z)
    e_z = jnp.sqrt(omega_m * zp1**3 + (1.0 - omega_m) * zp1 ** (3.0 * (1.0 + w_0)))
    x = _cumulative_trapezoid(1.0 / e_z, z)  # comoving distance in units of c/H0
    # int_0^xs x (xs - x)/xs (1+z) dx = A(xs) - B(xs)/xs, with A = int x(1+z), B = int x^2(1+z)
    a_int = _cumulative_trapezoid(x * zp1, x)
    b_int = _cumulative_trapezoid(x**2 * zp1, x)
    inner = a_int - b_int / jnp.where(x > 0, x, 1.0)
    return 1.5 * omega_m * inner


def empty_beam_convergence(theta_full, survey: Survey):
    """|kappa_empty,i| averaged over each tomographic bin's n_i(z), shape (C,), positive.

    theta_full: (6,) in PARAMETER_NAMES order; only Omega_c, Omega_b and w_0 enter.
    """
    theta_full = jnp.asarray(theta_full)
    if theta_full.shape[-1:] != (6,) or theta_full.ndim != 1:
        raise ValueError(f"theta_full must have shape (6,), got {theta_full.shape}")
    z = _z_grid(survey)
    nz = tomographic_nz(z, survey)  # (C, M), unit integral
    kappa = _empty_beam_per_source(theta_full, jnp.asarray(z, theta_full.dtype))
    weights = nz * np.gradient(z)[None, :]  # quadrature weights of int dz n_i(z) (.)
    weights = weights / weights.sum(axis=1, keepdims=True)
    return jnp.asarray(weights, theta_full.dtype) @ kappa


def lognormal_shift(theta_full, survey: Survey):
    """Shift lambda_i = |kappa_empty,i| of each bin's log-normal convergence, shape (C,), > 0."""
    return empty_beam_convergence(theta_full, survey)


def check_shift_model(shift_model: str, survey: Survey) -> None:
    """Raise ValueError unless `shift_model` is known and applies to `survey`."""
    if shift_model not in SHIFT_MODELS:
        raise ValueError(f"unknown shift_model {shift_model!r}; valid: {', '.join(SHIFT_MODELS)}")
    if shift_model in _TABLE_LOOKUP and survey != LSST_Y10:
        raise ValueError(
            f"shift_model {shift_model!r} is the CosMomentum table of the five-bin LSST-Y10 survey "
            f"and does not apply to survey {survey.name!r} with {survey.n_bins} bins; use "
            "shift_model='empty-beam'"
        )


def preset_shift(preset, theta):
    """Shifts lambda_i, shape (C,), of `preset`'s maps at its sampled parameters theta (P,).

    Table models are clamped to the table's box (Omega_m 0.1-0.9, sigma_8 0.3-1.3,
    w_0 -2 to -0.3). Differentiable in theta.
    """
    theta_full = full_parameters(theta, preset.param_names)
    if preset.shift_model == "empty-beam":
        return lognormal_shift(theta_full, preset.survey)
    check_shift_model(preset.shift_model, preset.survey)
    omega_m = theta_full[..., 0] + theta_full[..., 1]
    return cosmomentum_shift(
        omega_m, theta_full[..., 2], theta_full[..., 5], lookup=_TABLE_LOOKUP[preset.shift_model]
    )


def shift_table_bounds() -> np.ndarray:
    """(3, 2) box of the CosMomentum table in (Omega_m, sigma_8, w_0)."""
    return load_shift_table().bounds
