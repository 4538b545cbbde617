"""numpyro_diffprior: diffusion-model joint priors p(theta, kappa) for weak-lensing inference."""

__version__ = "0.1.0"

from numpyro_diffprior.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset  # noqa: E402
from numpyro_diffprior.survey import Survey  # noqa: E402

__all__ = ["DEFAULT_PRESET", "PRESETS", "Preset", "Survey", "get_preset", "__version__"]
