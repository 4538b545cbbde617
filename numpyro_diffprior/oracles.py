"""Deprecated: the exact oracles moved to `numpyro_diffprior.testing` (`testing.gaussian`,
`testing.amplitude`). This module re-exports their names with a DeprecationWarning."""

import warnings

from numpyro_diffprior.testing import *  # noqa: F403
from numpyro_diffprior.testing import __all__  # noqa: F401

warnings.warn(
    "numpyro_diffprior.oracles is deprecated; import from numpyro_diffprior.testing",
    DeprecationWarning,
    stacklevel=2,
)
