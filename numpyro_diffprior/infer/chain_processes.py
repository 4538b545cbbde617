"""Deprecated: moved to `numpyro_diffprior.runtime.processes` (this alias goes in the next
release)."""

import warnings

from numpyro_diffprior.runtime.processes import *  # noqa: F403
from numpyro_diffprior.runtime.processes import __all__  # noqa: F401

warnings.warn(
    "numpyro_diffprior.infer.chain_processes is deprecated; import from "
    "numpyro_diffprior.runtime.processes (or numpyro_diffprior.runtime)",
    DeprecationWarning,
    stacklevel=2,
)
