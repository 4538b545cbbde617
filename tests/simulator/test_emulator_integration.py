"""The simulator and the model with the shipped emulator tables (cosmology.emulator)."""

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import Predictive

from numpyro_diffprior import simulator
from numpyro_diffprior.cosmology.emulator import emulate_cl, load_emulator
from numpyro_diffprior.cosmology.shifts import preset_shift
from numpyro_diffprior.diagnostics.power import binned_theory, ell_bin_edges, power_spectrum
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.lognormal import (
    lognormal_theory_power,
    power_grid,
    simulate_kappa,
)
from numpyro_diffprior.simulator.model import lensing_model

FIDUCIAL_THETA = jnp.array([0.2664, 0.831])


def test_default_preset_fiducial_maps_match_jax_cosmo_emulator_power():
    """64 lsst-y10-coarse maps at fiducial: auto and cross power vs the emulator C_l (4 s.e.),
    pixel std vs theory, kappa >= -lambda, grid log-normal bias < 0.5%."""
    preset = get_preset("lsst-y10-coarse")
    emulator = load_emulator(preset)
    cl = emulate_cl(emulator, FIDUCIAL_THETA)
    shift = preset_shift(preset, FIDUCIAL_THETA)
    num = 64
    z = jax.random.normal(jax.random.key(0), (num,) + preset.map_shape)
    kappa = jax.jit(jax.vmap(lambda zz: simulate_kappa(FIDUCIAL_THETA, zz, emulator, preset)))(z)
    p_in = power_grid(cl, emulator.ell, preset.npix, preset.field_rad)
    p_ln = lognormal_theory_power(
        cl, emulator.ell, shift, npix=preset.npix, field_rad=preset.field_rad
    )
    assert float(jnp.abs(p_ln / p_in - 1.0)[:, :, 1:, 1:].max()) < 0.005
    edges = ell_bin_edges(preset.npix, preset.field_rad)
    theory = binned_theory(p_in, preset.npix, preset.field_rad, edges)
    _, per_map = power_spectrum(kappa, preset.field_rad, edges)
    pull = (per_map.mean(0) - theory) / (per_map.std(0, ddof=1) / np.sqrt(num))
    assert float(jnp.abs(pull).max()) < 4.0, pull
    assert bool(jnp.all(kappa >= -shift[:, None, None]))
    var_theory = jnp.diagonal(p_ln.sum(axis=(-1, -2))) / preset.npix**2
    per_map_var = (kappa**2).mean(axis=(2, 3))
    err = per_map_var.std(0) / np.sqrt(num)
    assert bool(jnp.all(jnp.abs(per_map_var.mean(0) - var_theory) < 4 * err))


def test_simulate_and_model_with_default_emulator():
    theta, kappa = simulator.simulate(jax.random.key(1), "tiny", 5, batch_size=8)
    assert theta.shape == (5, 2) and kappa.shape == (5, 2, 16, 16)
    assert bool(jnp.all(jnp.isfinite(kappa))) and len(np.unique(np.asarray(theta[:, 1]))) == 5
    draws = Predictive(lensing_model, num_samples=2)(jax.random.key(2), preset="tiny")
    assert draws["shear"].shape == (2, 2, 2, 16, 16)
    assert bool(jnp.all(jnp.isfinite(draws["shear"])))
