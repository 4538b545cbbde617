"""Deprecated: moved to `numpyro_diffprior.cosmology.emulator.recipe`. This module re-exports
the old names with a DeprecationWarning."""

import warnings

from numpyro_diffprior.cosmology.emulator.recipe import (  # noqa: F401
    CORNER_DESIGN_SIZE,
    CORNER_OMEGA_C_MAX,
    LOW_FIT,
    LOW_OMEGA_C_MAX,
    MAIN_FIT,
    TAIL_WIDEN,
    _shards,
    build_fitted_emulator,
)

warnings.warn(
    "numpyro_diffprior.cosmology.emulator_recipe is deprecated; import from "
    "numpyro_diffprior.cosmology.emulator.recipe",
    DeprecationWarning,
    stacklevel=2,
)
