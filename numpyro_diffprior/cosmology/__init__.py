"""Cosmology: parameters and priors, C_l from jax-cosmo and its emulator, log-normal shifts."""

from numpyro_diffprior.cosmology.params import (
    FIDUCIAL,
    PARAMETER_NAMES,
    full_parameters,
    prior_distribution,
    prior_mean_std,
)

__all__ = ["FIDUCIAL", "PARAMETER_NAMES", "full_parameters", "prior_distribution", "prior_mean_std"]
