"""numpyro_diffprior: diffusion-model joint priors p(theta, kappa) for weak-lensing inference."""

__version__ = "0.1.0"

# Every name is imported on first use: `import numpyro_diffprior` (and the CLI's parser) stays
# free of jax, so `numpyro-diffprior --help` and argument errors come back at once.

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
    "DEFAULT_PRESET": ("numpyro_diffprior.presets", "DEFAULT_PRESET"),
    "PRESETS": ("numpyro_diffprior.presets", "PRESETS"),
    "Preset": ("numpyro_diffprior.presets", "Preset"),
    "get_preset": ("numpyro_diffprior.presets", "get_preset"),
    "Survey": ("numpyro_diffprior.survey", "Survey"),
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
