"""Deprecated: moved to `numpyro_diffprior.cosmology.emulator.fitted` (the `FittedEmulator`)
and `numpyro_diffprior.cosmology.emulator.io` (its arrays). This module re-exports the old
names with a DeprecationWarning (pickles of `FittedEmulator` made before the move load
through it)."""

import warnings

from numpyro_diffprior.cosmology.emulator.fitted import (  # noqa: F401
    _BASE_OFFSET,
    _LOW_ARRAYS,
    BOX_6,
    BOX_6_BOUNDS,
    FORMAT_VERSION,
    KIND,
    NUISANCE,
    FittedEmulator,
    _feature_range,
    _fit_value,
    _raw_features,
    base_log_cl,
    blend_weight,
    box_features,
    compress_tables,
    mlp,
    residual_log_cl,
    spline_coords,
)
from numpyro_diffprior.cosmology.emulator.io import (  # noqa: F401
    _layer_arrays,
    _read_layers,
    fitted_from_arrays,
    fitted_to_arrays,
)

warnings.warn(
    "numpyro_diffprior.cosmology.fitted_emulator is deprecated; import from "
    "numpyro_diffprior.cosmology.emulator (or its submodules fitted and io)",
    DeprecationWarning,
    stacklevel=2,
)
