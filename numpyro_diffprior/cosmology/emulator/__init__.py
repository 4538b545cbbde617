"""Fast, differentiable emulators of the tomographic C_l^{ij}(theta) and shifts lambda_i(theta).

Two kinds, both pytrees with `.log_cl_pairs(theta)` and `.shift(theta)`:

- `ClEmulator` (`tables`): a not-a-knot spline table over (Omega_c, sigma_8) for the
  2-parameter presets;
- `FittedEmulator` (`fitted`): spline base + first-order tables + MLP-ensemble interactions
  for the presets that sample all six wCDM parameters.

`load_emulator(preset)` finds a preset's emulator (`io`: the package's table or the user
cache); `emulate_cl` / `emulate_shift` evaluate either kind. Building one: `recipe`
(`build_emulator`, `build_fitted_emulator`), with the designs of `design` and the fits of `fit`.
Submodules depend one way: tables <- fitted <- io, design <- fit <- recipe.
"""

from numpyro_diffprior.cosmology.emulator.fitted import BOX_6, FittedEmulator
from numpyro_diffprior.cosmology.emulator.io import (
    default_cache_dir,
    load_emulator,
    load_emulator_file,
    save_emulator,
)
from numpyro_diffprior.cosmology.emulator.recipe import build_emulator, build_fitted_emulator
from numpyro_diffprior.cosmology.emulator.tables import (
    OMEGA_C_RANGE,
    SIGMA_8_RANGE,
    ClEmulator,
    check_in_range,
    check_theta_shape,
    emulate_cl,
    emulate_shift,
    spline_basis,
    spline_interpolate,
)

__all__ = [
    "BOX_6",
    "ClEmulator",
    "FittedEmulator",
    "OMEGA_C_RANGE",
    "SIGMA_8_RANGE",
    "build_emulator",
    "build_fitted_emulator",
    "check_in_range",
    "check_theta_shape",
    "default_cache_dir",
    "emulate_cl",
    "emulate_shift",
    "load_emulator",
    "load_emulator_file",
    "save_emulator",
    "spline_basis",
    "spline_interpolate",
]
