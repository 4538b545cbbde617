"""Posterior inference with a DiffusionPrior: guided reverse diffusion, annealed Langevin
(BlackJAX), the NUTS field-level baseline, and conversion to ArviZ InferenceData."""

from numpyro_diffprior.infer.langevin import AnnealedLangevinSampler
from numpyro_diffprior.infer.models import shear_model
from numpyro_diffprior.infer.posterior import DiffusionPosteriorSampler

__all__ = ["AnnealedLangevinSampler", "DiffusionPosteriorSampler", "shear_model"]
