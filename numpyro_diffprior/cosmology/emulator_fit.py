"""Deprecated: moved into the package `numpyro_diffprior.cosmology.emulator` (`design`, `fit`,
`recipe`). This module re-exports the old names with a DeprecationWarning."""

import warnings

from numpyro_diffprior.cosmology.emulator.design import (  # noqa: F401
    BaseGrid,
    _nodes_through,
    base_grid,
    design_points,
    resolved_ell,
    tabulate_design,
    widened_prior,
)
from numpyro_diffprior.cosmology.emulator.fit import (  # noqa: F401
    LOW_BLEND,
    LOW_FIT_OMEGA_C_MAX,
    fit_emulator,
    fit_residual_mlp,
)
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
    "numpyro_diffprior.cosmology.emulator_fit is deprecated; import from "
    "numpyro_diffprior.cosmology.emulator.design, .fit or .recipe",
    DeprecationWarning,
    stacklevel=2,
)
