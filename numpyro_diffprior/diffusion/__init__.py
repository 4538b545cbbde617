"""EDM diffusion on the normalised joint vector x = [theta_n, kappa_n] (docs/design.md §2.5):
normalisation, preconditioning, loss and samplers, each a separate unit."""

from numpyro_diffprior.diffusion.loss import LossParts, denoising_loss, sample_sigma
from numpyro_diffprior.diffusion.normalization import (
    Normalizer,
    denormalize,
    normalize,
    pack,
    unpack,
)
from numpyro_diffprior.diffusion.preconditioning import (
    make_denoise_fn,
    precondition,
    score_from_denoiser,
)
from numpyro_diffprior.diffusion.samplers import (
    edm_sampler,
    edm_sigma_steps,
    euler_maruyama_sampler,
)

__all__ = [
    "LossParts",
    "Normalizer",
    "denoising_loss",
    "denormalize",
    "edm_sampler",
    "edm_sigma_steps",
    "euler_maruyama_sampler",
    "make_denoise_fn",
    "normalize",
    "pack",
    "precondition",
    "sample_sigma",
    "score_from_denoiser",
    "unpack",
]
