"""numpyro_diffprior: diffusion-model joint priors p(theta, kappa) for weak-lensing inference."""

__version__ = "0.1.0"

from numpyro_diffprior.presets import DEFAULT_PRESET, PRESETS, Preset, get_preset  # noqa: E402
from numpyro_diffprior.survey import Survey  # noqa: E402

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "DiffusionPrior",
    "Preset",
    "Survey",
    "get_preset",
    "lensing_model",
    "simulate",
    "__version__",
]

_LAZY = {
    "DiffusionPrior": ("numpyro_diffprior.prior", "DiffusionPrior"),
    "lensing_model": ("numpyro_diffprior.simulator.model", "lensing_model"),
    "simulate": ("numpyro_diffprior.simulator", "simulate"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'numpyro_diffprior' has no attribute {name!r}")
