import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.cli import main
from numpyro_diffprior.cosmology import emulator as emu
from numpyro_diffprior.cosmology.params import FIDUCIAL, full_parameters, prior_distribution
from numpyro_diffprior.cosmology.shifts import lognormal_shift
from numpyro_diffprior.presets import get_preset

PRESETS = ["tiny", "lsst-y10-coarse"]
FID2 = np.array([FIDUCIAL["Omega_c"], FIDUCIAL["sigma_8"]])
TOL = 0.01  # max relative error of the emulator vs jax-cosmo on the resolved multipoles


def _resolved(preset, ell):
    ell = np.asarray(ell)
    lo, hi = 2 * np.pi / preset.field_rad, np.sqrt(2) * np.pi * preset.npix / preset.field_rad
    return (ell >= lo) & (ell <= hi)


def _prior_draws(num, seed, emulator):
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    theta = np.stack(
        [
            np.asarray(prior_distribution(n).sample(k, (4 * num,)))
            for n, k in zip(["Omega_c", "sigma_8"], keys, strict=True)
        ],
        axis=-1,
    )
    lo, hi = np.asarray(emulator.bounds).T
    inside = np.all((theta >= lo) & (theta <= hi), axis=-1)
    return theta[inside][:num]


@pytest.mark.parametrize("name", PRESETS)
def test_shipped_table_matches_preset(name):
    e = emu.load_emulator(name)
    preset = get_preset(name)
    assert e.param_names == preset.param_names
    assert e.preset.same_spectra(preset)  # C_l only; the emulator's shifts are empty-beam
    assert emu.load_emulator(name) is e  # cached per preset
    c = emu.emulate_cl(e, jnp.asarray(FID2, jnp.float32))
    assert c.shape == (preset.n_bins, preset.n_bins, e.ell.size)
    assert emu.emulate_shift(e, jnp.asarray(FID2)).shape == (preset.n_bins,)


@pytest.mark.jaxcosmo
@pytest.mark.parametrize("name", PRESETS)
def test_emulator_matches_jax_cosmo_at_fiducial(name, reference_cl):
    e = emu.load_emulator(name)
    preset = get_preset(name)
    ref = reference_cl(name, e.ell)(FID2)
    got = np.asarray(emu.emulate_cl(e, jnp.asarray(FID2, jnp.float32)))
    res = _resolved(preset, e.ell)
    np.testing.assert_allclose(got[..., res], ref[..., res], rtol=TOL)
    np.testing.assert_array_equal(got, np.swapaxes(got, 0, 1))


@pytest.mark.jaxcosmo
@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_emulator_matches_jax_cosmo_on_prior_draws(name, reference_cl):
    e = emu.load_emulator(name)
    preset = get_preset(name)
    theta = _prior_draws(100, seed=1, emulator=e)
    assert theta.shape == (100, 2)
    got = np.asarray(
        jax.jit(jax.vmap(lambda t: emu.emulate_cl(e, t)))(jnp.asarray(theta, jnp.float32))
    )
    ref_fn = reference_cl(name, e.ell)
    res = _resolved(preset, e.ell)
    err = np.array(
        [
            np.abs(g[..., res] / ref_fn(t)[..., res] - 1).max()
            for g, t in zip(got, theta, strict=True)
        ]
    )
    assert err.max() <= TOL, f"max rel error {err.max():.4f} at theta={theta[err.argmax()]}"


def test_emulated_shift_matches_theory():
    e = emu.load_emulator("lsst-y10-coarse")
    survey = get_preset("lsst-y10-coarse").survey
    theta = _prior_draws(20, seed=2, emulator=e)
    got = np.asarray(jax.vmap(lambda t: emu.emulate_shift(e, t))(jnp.asarray(theta, jnp.float32)))
    with jax.enable_x64(True):
        full = full_parameters(jnp.asarray(theta, jnp.float64), e.param_names)
        want = np.asarray(jax.vmap(lambda t: lognormal_shift(t, survey))(full))
    np.testing.assert_allclose(got, want, rtol=1e-3)


def test_jit_vmap_grad_and_finite_differences():
    e = emu.load_emulator("lsst-y10-coarse")
    theta = jnp.asarray(FID2, jnp.float32)
    np.testing.assert_allclose(
        jax.jit(emu.emulate_cl)(e, theta), emu.emulate_cl(e, theta), rtol=1e-5
    )
    batch = jnp.stack([theta, theta * 1.1])
    vm = jax.vmap(emu.emulate_cl, in_axes=(None, 0))(e, batch)
    np.testing.assert_allclose(vm[1], emu.emulate_cl(e, batch[1]), rtol=1e-5)
    # gradient of a scalar summary; float64 for a clean central difference
    with jax.enable_x64(True):
        t64 = jnp.asarray([0.31, 0.77], jnp.float64)
        f = lambda t: jnp.sum(jnp.log(emu.emulate_cl(e, t))) + jnp.sum(emu.emulate_shift(e, t))
        g = np.asarray(jax.jit(jax.grad(f))(t64))
        assert np.all(np.isfinite(g))
        for p in range(2):
            h = np.zeros(2)
            h[p] = 1e-6
            fd = (f(t64 + h) - f(t64 - h)) / 2e-6
            np.testing.assert_allclose(g[p], fd, rtol=1e-5)
        assert g[1] > 0  # C_l grows with sigma_8


def test_first_load_inside_jit_caches_concrete_arrays():
    """A model traced under jit may be the first to load its preset's emulator: the cached
    table must hold concrete arrays, not the trace's tracers (which would leak)."""
    emu.io._load_by_name.cache_clear()
    try:
        total = jax.jit(lambda t: emu.emulate_cl(emu.load_emulator("tiny"), t).sum())(
            jnp.asarray([0.3, 0.8])
        )
        e = emu.load_emulator("tiny")
        assert not isinstance(e.bounds, jax.core.Tracer)
        np.testing.assert_allclose(emu.emulate_cl(e, jnp.asarray([0.3, 0.8])).sum(), total,
                                   rtol=1e-5)  # fmt: skip
    finally:
        emu.io._load_by_name.cache_clear()


def test_check_in_range_names_parameter():
    e = emu.load_emulator("tiny")
    emu.check_in_range(e, np.array([[0.3, 0.8], [0.2, 1.0]]))
    (lo_oc, hi_oc), (lo_s8, hi_s8) = np.asarray(e.bounds)
    with pytest.raises(ValueError, match="sigma_8"):
        emu.check_in_range(e, np.array([0.3, hi_s8 + 0.1]))
    with pytest.raises(ValueError, match="Omega_c"):
        emu.check_in_range(e, np.array([[0.3, 0.8], [hi_oc + 0.01, 0.8]]))
    with pytest.raises(ValueError, match="Omega_c"):
        emu.check_in_range(e, np.array([np.nan, 0.8]))
    with pytest.raises(ValueError, match="shape"):
        emu.check_in_range(e, np.array([0.3, 0.8, 1.0]))


def test_wrong_preset_table_is_rejected(tmp_path):
    path = emu.save_emulator(emu.load_emulator("tiny"), tmp_path / "tiny.npz")
    again = emu.load_emulator_file(path, preset="tiny")
    np.testing.assert_array_equal(again.log_cl, emu.load_emulator("tiny").log_cl)
    with pytest.raises(ValueError, match="built for preset 'tiny'"):
        emu.load_emulator_file(path, preset="lsst-y10-coarse")
    with pytest.raises(FileNotFoundError):
        emu.load_emulator_file(tmp_path / "missing.npz")


@pytest.mark.jaxcosmo
def test_build_emulator_command_small_grid(tmp_path):
    out = tmp_path / "e.npz"
    argv = ["build-emulator", "--preset", "tiny", "--out", str(out), "--num-omega-c", "4"]
    argv += ["--num-sigma-8", "4", "--num-ell", "8", "--no-progress"]
    assert main(argv) == 0
    e = emu.load_emulator_file(out, preset="tiny")
    assert e.log_cl.shape == (4, 4, 3, 8)
    assert np.all(np.isfinite(np.asarray(emu.emulate_cl(e, jnp.asarray(FID2)))))


def test_preset_without_emulator_says_how_to_build_one(monkeypatch, tmp_path):
    import dataclasses

    from numpyro_diffprior import presets

    odd = dataclasses.replace(presets.get_preset("tiny"), name="odd")
    monkeypatch.setitem(presets.PRESETS, "odd", odd)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="build-emulator --preset odd"):
        emu.load_emulator("odd")
