"""Posterior inference with a DiffusionPrior: guided reverse diffusion, annealed Langevin
(BlackJAX), the NUTS field-level baseline, and conversion to ArviZ InferenceData.

The algorithm (`DiffusionPosteriorSampler` with a guidance object `MMPS`, `Annealed` or `DPS`
and refinements `ThetaRefresh`, `NonCentredHMC`; `AnnealedLangevinSampler`) is kept apart from
the run (`IIDSampler(sampler, num_samples, chunk_size=..., num_workers=...)`), as NumPyro keeps
`NUTS(model)` apart from `MCMC(kernel, ...)`.
`AmortizedPosteriorSampler` (`infer.amortized`) samples with a conditional model
(`amortized.AmortizedPrior`) and no guidance.
"""

from numpyro_diffprior.infer.algorithms import DPS, MMPS, Annealed, NonCentredHMC, ThetaRefresh
from numpyro_diffprior.infer.amortized import AmortizedPosteriorSampler
from numpyro_diffprior.infer.langevin import AnnealedLangevinSampler
from numpyro_diffprior.infer.models import shear_model
from numpyro_diffprior.infer.posterior import DiffusionPosteriorSampler
from numpyro_diffprior.infer.runner import IIDSampler

__all__ = [
    "AmortizedPosteriorSampler",
    "AnnealedLangevinSampler",
    "DiffusionPosteriorSampler",
    "IIDSampler",
    "MMPS",
    "Annealed",
    "DPS",
    "ThetaRefresh",
    "NonCentredHMC",
    "shear_model",
]
