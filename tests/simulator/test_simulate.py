"""simulate / simulate_kappa: shapes, distinct theta from the prior, determinism, no re-tracing,
and the maps' power against the emulator's C_l at fixed theta."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from simulator_toys import toy_cl, toy_shift

from numpyro_diffprior import simulator
from numpyro_diffprior.cosmology.emulator import emulate_cl, emulate_shift
from numpyro_diffprior.cosmology.shifts import preset_shift
from numpyro_diffprior.diagnostics.power import (
    binned_theory,
    ell_bin_edges,
    power_spectrum,
)
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.lognormal import power_grid, simulate_kappa

TINY = get_preset("tiny")
BATCH = 16  # one batch size for every test: one compilation


def test_toy_emulator_reproduces_closed_form(toy_emulator):
    theta = jnp.array([0.3, 0.8])
    cl = emulate_cl(toy_emulator, theta)
    np.testing.assert_allclose(cl, toy_cl(0.3, 0.8, 2, np.asarray(toy_emulator.ell)), rtol=2e-3)
    np.testing.assert_allclose(emulate_shift(toy_emulator, theta), toy_shift(0.3, 2), rtol=2e-3)


def test_simulate_shapes_distinct_theta_and_prior(toy_emulator):
    theta, kappa = simulator.simulate(
        jax.random.key(0), TINY, 200, emulator=toy_emulator, batch_size=BATCH
    )
    assert theta.shape == (200, 2) and kappa.shape == (200, 2, 16, 16)
    assert len(np.unique(np.asarray(theta[:, 0]))) == 200
    assert bool(jnp.all(jnp.isfinite(kappa)))
    bounds = np.asarray(toy_emulator.bounds)
    assert np.all((theta >= bounds[:, 0]) & (theta <= bounds[:, 1]))
    # sigma_8 ~ Normal(0.831, 0.14) (the box covers > 99.99% of it): mean within 4 s.e.
    assert abs(float(theta[:, 1].mean()) - 0.831) < 4 * 0.14 / np.sqrt(200)
    assert abs(float(theta[:, 1].std()) - 0.14) < 0.03
    # the maps' shifts follow the preset's shift model (tiny: empty-beam), not the toy table
    shifts = jax.vmap(lambda t: preset_shift(TINY, t))(theta)
    assert bool(jnp.all(kappa >= -shifts[:, :, None, None] - 1e-7))


def test_simulate_batching_invariant_and_no_retrace(toy_emulator):
    key = jax.random.key(5)
    t1, k1 = simulator.simulate(key, TINY, 20, emulator=toy_emulator, batch_size=BATCH)
    size = simulator._simulate_batch_jit._cache_size()
    # map j depends only on fold_in(key, start + j): an offset run reproduces the tail
    t2, k2 = simulator.simulate(key, TINY, 13, emulator=toy_emulator, batch_size=BATCH, start=7)
    t3, _ = simulator.simulate(jax.random.key(6), TINY, 5, emulator=toy_emulator, batch_size=BATCH)
    assert simulator._simulate_batch_jit._cache_size() == size  # compiled once, reused
    np.testing.assert_array_equal(t1[7:], t2)
    np.testing.assert_allclose(k1[7:], k2, rtol=1e-6, atol=1e-9)
    assert not np.allclose(t1[:5], t3)


def test_threads_share_the_batches_without_changing_the_maps(toy_emulator):
    """23 maps in batches of 4 (6 batches, the last padded): 1, 2 and 4 threads give identical
    arrays, in index order; the default is one thread per core on a CPU."""
    key = jax.random.key(8)
    runs = [simulator.simulate(key, TINY, 23, emulator=toy_emulator, batch_size=4, num_threads=n)
            for n in (1, 2, 4)]  # fmt: skip
    for theta, kappa in runs[1:]:
        assert kappa.shape == (23,) + TINY.map_shape
        np.testing.assert_array_equal(theta, runs[0][0])
        np.testing.assert_array_equal(kappa, runs[0][1])
    assert simulator.default_num_threads() == len(os.sched_getaffinity(0))


def test_default_batch_size_keeps_a_batch_near_a_million_values(toy_emulator):
    # on a CPU: the power of two <= 64 with batch x map size near 2^20 values
    sizes = {name: simulator.default_batch_size(name) for name in
             ("tiny", "lsst-y10-coarse", "lsst-y10-jade")}  # fmt: skip
    assert sizes == {"tiny": 64, "lsst-y10-coarse": 64, "lsst-y10-jade": 8}
    # the default batch changes only the grouping: the same maps as batch_size=BATCH, to
    # float32 rounding (XLA vectorises a batch of 64 differently from one of 16)
    key = jax.random.key(5)
    t1, k1 = simulator.simulate(key, TINY, 20, emulator=toy_emulator, batch_size=BATCH)
    t2, k2 = simulator.simulate(key, TINY, 20, emulator=toy_emulator)
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_allclose(k1, k2, rtol=0, atol=1e-4 * float(jnp.abs(k1).max()))


def test_simulate_bad_input(toy_emulator, toy_emulator_coarse):
    with pytest.raises(ValueError, match="num"):
        simulator.simulate(jax.random.key(0), TINY, -1, emulator=toy_emulator)
    with pytest.raises(ValueError, match="batch_size"):
        simulator.simulate(jax.random.key(0), TINY, 2, emulator=toy_emulator, batch_size=0)
    with pytest.raises(ValueError, match="num_threads"):
        simulator.simulate(jax.random.key(0), TINY, 2, emulator=toy_emulator, num_threads=0)
    with pytest.raises(ValueError, match="unknown preset"):
        simulator.simulate(jax.random.key(0), "nope", 2, emulator=toy_emulator)
    with pytest.raises(ValueError, match="emulator"):
        simulator.simulate(jax.random.key(0), "lsst-y10-jade", 2, emulator=toy_emulator)


def test_simulate_kappa_power_at_fixed_theta_and_gradients(toy_emulator):
    """64 maps at fixed theta: measured auto/cross power matches the emulator C_l (4 s.e.)."""
    theta = jnp.array([0.3, 0.9])
    num = 64
    z = jax.random.normal(jax.random.key(1), (num,) + TINY.map_shape)
    kappa = jax.jit(jax.vmap(lambda zz: simulate_kappa(theta, zz, toy_emulator, TINY)))(z)
    edges = ell_bin_edges(TINY.npix, TINY.field_rad)
    cl = emulate_cl(toy_emulator, theta)
    theory = binned_theory(
        power_grid(cl, toy_emulator.ell, 16, TINY.field_rad), 16, TINY.field_rad, edges
    )
    _, per_map = power_spectrum(kappa, TINY.field_rad, edges)
    pull = (per_map.mean(0) - theory) / (per_map.std(0, ddof=1) / np.sqrt(num))
    assert float(jnp.abs(pull).max()) < 4.0, pull
    grad = jax.jit(
        jax.grad(
            lambda t, zz: jnp.sum(simulate_kappa(t, zz, toy_emulator, TINY) ** 2), argnums=(0, 1)
        )
    )(theta, z[0])
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in grad)
    assert float(grad[0][1]) > 0  # more sigma_8, more power
    # outside the emulator box: clipped inside the traced function, finite
    out = simulate_kappa(jnp.array([-0.5, 5.0]), z[0], toy_emulator, TINY)
    assert bool(jnp.all(jnp.isfinite(out)))
