"""The amortised joint posterior: a conditional diffusion model of (theta, kappa) given the
observed shear, sampled by plain reverse diffusion (no guidance; docs/sampling.md, "Amortised
posterior"; docs/design.md §6).

- `features`: the observation's input maps (Kaiser-Squires E/B modes, mask, noise level);
- `simulate`: the training observations (noise levels, mask family) and `ObservationRange`;
- `denoiser`: `ConditionalNetworkDenoiser` and the start from a joint prior's weights;
- `prior`: `AmortizedPrior`, the model's prior site;
- `training`: `train_conditional` (`numpyro-diffprior train --conditional`).
The sampler is `infer.amortized.AmortizedPosteriorSampler` (and `sample_many`).
"""

from numpyro_diffprior.amortized.features import (
    ShearObservation,
    empty_observation,
    observation_features,
)
from numpyro_diffprior.amortized.prior import AmortizedPrior, load_amortized_prior
from numpyro_diffprior.amortized.simulate import ObservationRange

__all__ = [
    "AmortizedPrior",
    "ObservationRange",
    "ShearObservation",
    "empty_observation",
    "load_amortized_prior",
    "observation_features",
]
