"""Cosmology: parameters and priors, C_l from jax-cosmo and its emulator, log-normal shifts.

The submodules `spectra` (jax-cosmo reference), `emulator` (fast C_l and shifts) and `shifts`
are imported explicitly (`from numpyro_diffprior.cosmology import emulator`): `presets`
imports this package, so importing them here would be circular.
"""

from numpyro_diffprior.cosmology.params import (
    FIDUCIAL,
    PARAMETER_NAMES,
    full_parameters,
    prior_distribution,
    prior_mean_std,
)

__all__ = ["FIDUCIAL", "PARAMETER_NAMES", "full_parameters", "prior_distribution", "prior_mean_std"]
