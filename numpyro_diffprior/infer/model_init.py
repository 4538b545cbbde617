"""Deprecated: moved to `numpyro_diffprior.runtime.model_init` (this alias goes in the next
release)."""

import warnings

from numpyro_diffprior.runtime.model_init import *  # noqa: F403
from numpyro_diffprior.runtime.model_init import __all__  # noqa: F401

warnings.warn(
    "numpyro_diffprior.infer.model_init is deprecated; import from "
    "numpyro_diffprior.runtime.model_init",
    DeprecationWarning,
    stacklevel=2,
)
