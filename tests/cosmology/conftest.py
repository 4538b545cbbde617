"""Shared, compiled jax-cosmo reference spectra (compiling takes 10-45 s, so do it once)."""

import functools

import jax
import numpy as np
import pytest

from numpyro_diffprior.cosmology import spectra
from numpyro_diffprior.cosmology.params import full_parameters
from numpyro_diffprior.presets import get_preset


class ReferenceCl:
    """jit-compiled jax-cosmo C_l of one preset on its emulator's multipoles, (C, C, L) numpy."""

    def __init__(self, preset, ell):
        self.preset = preset
        self.ell = np.asarray(ell, dtype=np.float64)
        with jax.enable_x64(True):
            self._fn = jax.jit(lambda t: spectra.angular_cl_reference(t, preset.survey, self.ell))

    def __call__(self, theta):
        """theta in the preset's parameter order (P,)."""
        theta_full = np.asarray(
            full_parameters(np.asarray(theta, np.float64), self.preset.param_names)
        )
        with jax.enable_x64(True):
            return np.asarray(self._fn(theta_full))


@pytest.fixture(scope="session")
def reference_cl():
    """Factory: reference_cl(preset_name, ell) -> cached ReferenceCl."""

    @functools.cache
    def make(name, ell_tuple):
        return ReferenceCl(get_preset(name), np.array(ell_tuple))

    # key on float32-rounded multipoles so ell_grid(preset) and emulator.ell share one compile
    return lambda name, ell: make(name, tuple(np.asarray(ell, np.float32).astype(float).tolist()))
