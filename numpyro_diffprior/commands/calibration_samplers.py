"""Deprecated: moved to `numpyro_diffprior.diagnostics.calibration_samplers`. This module
re-exports its names with a DeprecationWarning (pickles made before the move load through it)."""

import warnings

from numpyro_diffprior.diagnostics.calibration_samplers import (  # noqa: F401
    LazySamplerFn,
    diffusion_sampler_fn,
    nuts_sampler_fn,
    pretrained_sampler_fn,
)

__all__ = ["diffusion_sampler_fn", "pretrained_sampler_fn", "nuts_sampler_fn", "LazySamplerFn"]

warnings.warn(
    "numpyro_diffprior.commands.calibration_samplers is deprecated; import from "
    "numpyro_diffprior.diagnostics.calibration_samplers",
    DeprecationWarning,
    stacklevel=2,
)
