"""The 6-parameter fitted emulator (lsst-y10-jade): accuracy vs jax-cosmo, exact shifts,
differentiability, the build pipeline (resumable tabulation, fit) and round trips."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.cosmology import emulator as emu
from numpyro_diffprior.cosmology import spectra
from numpyro_diffprior.cosmology.emulator import design as ed
from numpyro_diffprior.cosmology.emulator import fit as ef
from numpyro_diffprior.cosmology.emulator import fitted as fe
from numpyro_diffprior.cosmology.emulator import recipe as er
from numpyro_diffprior.cosmology.emulator.fitted import BOX_6, BOX_6_BOUNDS, FittedEmulator
from numpyro_diffprior.cosmology.params import FIDUCIAL, PARAMETER_NAMES, prior_distribution
from numpyro_diffprior.cosmology.shifts import lognormal_shift
from numpyro_diffprior.presets import get_preset

JADE = get_preset("lsst-y10-jade")
FID6 = np.array([FIDUCIAL[n] for n in PARAMETER_NAMES])
TOL = 0.01  # max relative error vs jax-cosmo on the resolved multipoles (issue 2)


@pytest.fixture(scope="module")
def jade():
    return emu.load_emulator(JADE)


def _prior_draws(num, seed, bounds):
    """num draws from the prior restricted to the emulator box (rejection)."""
    rng = np.random.default_rng(seed)
    keys = jax.random.split(jax.random.PRNGKey(seed), 6)
    theta = np.stack(
        [np.asarray(prior_distribution(n).sample(k, (8 * num,))) for n, k in zip(
            PARAMETER_NAMES, keys, strict=True)],
        axis=-1,
    )  # fmt: skip
    lo, hi = np.asarray(bounds).T
    inside = theta[np.all((theta >= lo) & (theta <= hi), axis=-1)]
    return inside[rng.permutation(len(inside))[:num]]


def test_shipped_jade_emulator_loads(jade):
    assert isinstance(jade, FittedEmulator)
    assert jade.param_names == PARAMETER_NAMES
    assert jade.preset.same_spectra(JADE)
    cl = emu.emulate_cl(jade, jnp.asarray(FID6, jnp.float32))
    assert cl.shape == (5, 5, jade.ell.size)
    np.testing.assert_array_equal(cl, np.swapaxes(cl, 0, 1))
    np.testing.assert_allclose(np.asarray(jade.bounds), [BOX_6[n] for n in PARAMETER_NAMES])
    with pytest.raises(ValueError, match="shape"):
        emu.emulate_cl(jade, jnp.ones(2))


def test_jade_shift_is_the_exact_theory(jade):
    theta = jnp.asarray([0.35, 0.045, 0.9, 0.7, 0.95, -0.8])
    np.testing.assert_allclose(
        emu.emulate_shift(jade, theta), lognormal_shift(theta, JADE.survey), rtol=1e-6
    )


def _max_rel_error(jade, theta, reference_cl):
    got = np.asarray(
        jax.jit(jax.vmap(lambda t: emu.emulate_cl(jade, t)))(jnp.asarray(theta, jnp.float32))
    )
    ref_fn = reference_cl(JADE.name, jade.ell)
    res = ed.resolved_ell(JADE, jade.ell)
    pairs = zip(got, theta, strict=True)
    return np.array([np.abs(g[..., res] / ref_fn(t)[..., res] - 1).max() for g, t in pairs])


@pytest.mark.jaxcosmo
def test_jade_matches_jax_cosmo_at_fiducial(jade, reference_cl):
    err = _max_rel_error(jade, FID6[None], reference_cl)
    assert err.max() <= TOL / 2, f"max rel error {err.max():.4f} at fiducial"


@pytest.mark.jaxcosmo
@pytest.mark.slow
def test_jade_matches_jax_cosmo_on_prior_draws(jade, reference_cl):
    """100 prior draws (seed 7) vs jax-cosmo over the resolved l: issue 2's max <= 1 %.

    Measured with the shipped fit (3-member main and small-Omega_c ensembles): median 0.12 %,
    95th percentile 0.27 %, max 0.49 % (Omega_c = 0.028). benchmarks/emulator_accuracy.py
    measures 900 more draws (docs/cosmology.md).
    """
    theta = _prior_draws(100, seed=7, bounds=jade.bounds)
    assert theta.shape == (100, 6)
    err = _max_rel_error(jade, theta, reference_cl)
    assert np.median(err) <= 0.003, np.median(err)
    assert np.quantile(err, 0.95) <= TOL, np.quantile(err, 0.95)
    assert err.max() <= TOL, f"max rel error {err.max():.4f} at theta={theta[err.argmax()]}"


def test_jade_gradient_matches_finite_differences(jade):
    with jax.enable_x64(True):
        e64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), jade)
        t = jnp.asarray([0.3, 0.05, 0.8, 0.7, 1.0, -1.1], jnp.float64)
        f = lambda t: jnp.sum(jnp.log(emu.emulate_cl(e64, t))) + jnp.sum(emu.emulate_shift(e64, t))
        g = np.asarray(jax.jit(jax.grad(f))(t))
        assert np.all(np.isfinite(g))
        for p in range(6):
            h = np.zeros(6)
            h[p] = 1e-6
            fd = (f(t + h) - f(t - h)) / 2e-6
            np.testing.assert_allclose(g[p], fd, rtol=1e-4, atol=1e-6)
        assert g[2] > 0  # C_l grow with sigma_8


def test_jade_round_trip_and_wrong_preset(jade, tmp_path):
    path = emu.save_emulator(jade, tmp_path / "jade.npz")
    again = emu.load_emulator_file(path, preset=JADE.name)
    theta = jnp.asarray(FID6, jnp.float32)
    np.testing.assert_array_equal(emu.emulate_cl(again, theta), emu.emulate_cl(jade, theta))
    with pytest.raises(ValueError, match="built for preset 'lsst-y10-jade'"):
        emu.load_emulator_file(path, preset="lsst-y10-coarse")


def test_check_in_range_names_the_parameter(jade):
    emu.check_in_range(jade, FID6)
    bad = FID6.copy()
    bad[5] = -0.1
    with pytest.raises(ValueError, match="w_0"):
        emu.check_in_range(jade, bad)


def test_design_points_reproducible_and_inside_box():
    bounds = np.array([BOX_6[n] for n in PARAMETER_NAMES])
    a = ed.design_points(400, bounds, seed=3)
    np.testing.assert_array_equal(a, ed.design_points(400, bounds, seed=3))
    assert np.all((a >= bounds[:, 0]) & (a <= bounds[:, 1]))
    # widened by 1.5: sample std of the Gaussian parameters ~ 1.5 x prior std (+-10%, n = 400)
    for p, name in [(1, "Omega_b"), (3, "h"), (4, "n_s")]:
        ratio = a[:, p].std() / float(prior_distribution(name).scale)
        assert 1.35 < ratio < 1.65, (name, ratio)


def _toy_cl(theta_full, survey, ell):
    """A cheap closed-form stand-in for jax-cosmo (positive, symmetric)."""
    t = jnp.asarray(theta_full)
    amp = t[2] ** 2 * (t[0] + t[1]) ** 1.5 * jnp.exp(0.3 * t[5])
    shape = (jnp.asarray(ell) / 100.0) ** (t[4] - 2.0)
    c = survey.n_bins
    mix = 1.0 + jnp.arange(c)[:, None] + jnp.arange(c)[None, :]
    return amp * mix[..., None] * shape * 1e-9


def test_tabulation_resumes_without_loss_or_duplicates(monkeypatch, tmp_path):
    calls = []

    def counted(theta_full, survey, ell):
        jax.debug.callback(lambda: calls.append(1))  # runs at every (jitted) evaluation
        return _toy_cl(theta_full, survey, ell)

    real_save = ed._atomic_savez

    def save_then_die(path, **arrays):
        real_save(path, **arrays)
        if int(arrays["done"]) == 4:
            raise KeyboardInterrupt  # killed right after the second chunk reached the disk

    monkeypatch.setattr(spectra, "angular_cl_reference", counted)
    monkeypatch.setattr(ed, "_atomic_savez", save_then_die)
    bounds = np.array([BOX_6[n] for n in PARAMETER_NAMES])
    theta = ed.design_points(7, bounds, seed=0)
    ell = np.geomspace(50, 5000, 8)
    cache = tmp_path / "design.npz"
    with pytest.raises(KeyboardInterrupt):
        ed.tabulate_design(JADE, theta, ell, cache=cache, progress=False, chunk=2)
    assert len(calls) == 4
    calls.clear()
    monkeypatch.setattr(ed, "_atomic_savez", real_save)
    out = ed.tabulate_design(JADE, theta, ell, cache=cache, progress=False, chunk=2)
    assert len(calls) == 3  # 4 points were cached, 3 were left
    want = np.stack([np.asarray(_toy_cl(t, JADE.survey, ell)) for t in theta])
    rows, cols = np.triu_indices(5)
    np.testing.assert_allclose(out, np.log(want[:, rows, cols]), rtol=1e-6)
    with pytest.raises(ValueError, match="another design"):
        ed.tabulate_design(JADE, theta[:6], ell, cache=cache, progress=False)


TOY_ELL = np.geomspace(50, 8000, 12)
TOY_FIT = dict(steps=3000, width=64, depth=2, num_components=8)


def _toy_table(theta):
    rows, cols = np.triu_indices(5)
    cl = [np.log(np.asarray(_toy_cl(t, JADE.survey, TOY_ELL)))[rows, cols] for t in theta]
    return np.stack(cl)


def _toy_grid():
    grid = ed.base_grid(num_omega_c=8, num_sigma_8=5, anova_omega_c=5, anova_refine=1,
                        anova_sigma_8=4, anova_param=5)  # fmt: skip
    assert grid.anova[0][1] == pytest.approx(np.sqrt(grid.anova[0][0] * grid.anova[0][2]))
    design = grid.design()
    assert design.shape == (8 * 5 + 6 * 4 + 4 * 6 * 4 * 4, 6)
    base, first_order = grid.assemble(_toy_table(design))
    assert first_order.shape == (4, 6, 4, 5, 15, 12)
    return grid, (base, first_order)


def _toy_error(e, theta):
    got = np.asarray(jax.vmap(e.log_cl_pairs)(jnp.asarray(theta, jnp.float32)))
    return np.abs(np.expm1(got - _toy_table(theta))).max()


def test_fit_recovers_a_smooth_closed_form_spectrum():
    """On the toy spectra, base tables + MLP residual reach < 0.1% on held-out draws (seed 0)."""
    grid, tables = _toy_grid()
    bounds = np.array([BOX_6[n] for n in PARAMETER_NAMES])
    theta, test = ed.design_points(600, bounds, seed=0), ed.design_points(100, bounds, seed=1)
    e = ef.fit_emulator(JADE, theta, _toy_table(theta), TOY_ELL, grid, tables, progress=False,
                        **TOY_FIT)  # fmt: skip
    assert not e.low_layers
    err = _toy_error(e, test)
    assert err < 1e-3, err


def test_compressed_first_order_tables_are_exact_to_their_tolerance(tmp_path):
    """compress_tables keeps the fewest principal components that reproduce every entry to
    `tol`; rows that are zero (the fiducial slices) stay exactly zero; an emulator built with
    compressed tables differs from the uncompressed one by at most that tolerance."""
    rng = np.random.default_rng(0)
    scales = 10.0 ** -np.arange(8)  # singular values 1, 0.1, ..., 1e-7
    flat = np.einsum("tnk,k,tkm->tnm", rng.normal(size=(2, 60, 8)), scales,
                     rng.normal(size=(2, 8, 30)) / np.sqrt(30))  # fmt: skip
    flat[:, :6] = 0.0  # like the fiducial slices
    flat = flat.reshape(2, 3, 4, 5, 30)
    sizes = []
    for tol in (1e-2, 1e-4, 1e-6):
        coef, pcs = fe.compress_tables(flat, tol)
        back = np.einsum("t...k,tkm->t...m", coef, pcs)
        assert np.abs(back - flat).max() <= tol and pcs.shape == (2, coef.shape[-1], 30)
        np.testing.assert_array_equal(back.reshape(2, 60, 30)[:, :6], 0.0)
        sizes.append(coef.shape[-1])
    assert sizes[0] < sizes[1] < sizes[2] <= 8, sizes
    grid, (base, first_order) = _toy_grid()
    theta = ed.design_points(20, BOX_6_BOUNDS, seed=4)
    fit = dict(TOY_FIT, steps=10)
    packed = ef.fit_emulator(JADE, theta, _toy_table(theta), TOY_ELL, grid, (base, first_order),
                             progress=False, table_tol=1e-5, **fit)  # fmt: skip
    plain = ef.fit_emulator(JADE, theta, _toy_table(theta), TOY_ELL, grid, (base, first_order),
                            progress=False, table_tol=None, **fit)  # fmt: skip
    assert packed.anova_pcs is not None and plain.anova_pcs is None
    b = jax.vmap(lambda t: fe.base_log_cl(packed, t) - fe.base_log_cl(plain, t))
    assert np.abs(np.asarray(b(jnp.asarray(theta, jnp.float32)))).max() < 4 * 1e-5 + 1e-5
    for e in (packed, plain):  # older files, without the newer arrays, load as before
        again = emu.load_emulator_file(emu.save_emulator(e, tmp_path / "e.npz"), preset=JADE.name)
        assert (again.anova_pcs is None) == (e.anova_pcs is None) and again.members == ()
        t = jnp.asarray(theta[0], jnp.float32)
        np.testing.assert_allclose(again.log_cl_pairs(t), e.log_cl_pairs(t), rtol=1e-6)


def test_small_omega_c_fit_is_blended_in_and_saved(tmp_path):
    """`low_data` adds a second MLP: the residual is exactly the small-Omega_c fit below
    LOW_BLEND[0], the main fit above LOW_BLEND[1], the smoothstep mix between; both are
    accurate on the toy spectra and survive a save/load round trip."""
    grid, tables = _toy_grid()
    bounds = np.array([BOX_6[n] for n in PARAMETER_NAMES])
    corner_bounds = bounds.copy()
    corner_bounds[0] = (bounds[0][0], er.CORNER_OMEGA_C_MAX)
    theta, corner = ed.design_points(600, bounds, seed=0), ed.design_points(300, corner_bounds, 2)
    e = ef.fit_emulator(
        JADE, theta, _toy_table(theta), TOY_ELL, grid, tables, progress=False,
        low_data=(corner, _toy_table(corner)), low_fit=TOY_FIT, **TOY_FIT,
    )  # fmt: skip
    assert e.low_layers and np.allclose(e.blend, ef.LOW_BLEND)
    main_only = dataclasses.replace(e, low_layers=())
    low_only = dataclasses.replace(
        e, layers=e.low_layers, pca_mean=e.low_pca_mean, pca_basis=e.low_pca_basis,
        feature_lo=e.low_feature_lo, feature_hi=e.low_feature_hi, low_layers=(),
    )  # fmt: skip
    t = jnp.asarray(FID6, jnp.float32)
    at = lambda emulator, oc: np.asarray(emulator.log_cl_pairs(t.at[0].set(oc)))  # noqa: E731
    np.testing.assert_array_equal(at(e, 0.03), at(low_only, 0.03))
    np.testing.assert_array_equal(at(e, 0.3), at(main_only, 0.3))
    mid = 0.5 * sum(ef.LOW_BLEND)
    np.testing.assert_allclose(
        at(e, mid), 0.5 * (at(low_only, mid) + at(main_only, mid)), atol=1e-6
    )
    assert float(fe.blend_weight(ef.LOW_BLEND[0], e.blend)) == 0.0
    assert float(fe.blend_weight(ef.LOW_BLEND[1], e.blend)) == 1.0
    slope = jax.grad(lambda oc: fe.blend_weight(oc, e.blend))
    peak = float(slope(mid))  # 1.5 / width; C^1: the slope vanishes at both ends
    assert abs(float(slope(ef.LOW_BLEND[0] + 1e-5))) < 0.01 * peak
    assert abs(float(slope(ef.LOW_BLEND[1] - 1e-5))) < 0.01 * peak
    test = ed.design_points(100, corner_bounds, seed=3)
    err, err_main = _toy_error(e, test), _toy_error(main_only, test)
    assert err < 3e-3 and err < err_main, (err, err_main)
    again = emu.load_emulator_file(emu.save_emulator(e, tmp_path / "blend.npz"), preset=JADE.name)
    for oc in (0.03, mid, 0.3):
        np.testing.assert_allclose(at(again, oc), at(e, oc), rtol=1e-6)


def test_small_omega_c_ensemble_averages_its_members_and_is_saved(tmp_path):
    """low_fit["members"] = 3 fits three MLPs (seeds 5, 6, 7) on the same components; below
    LOW_BLEND[0] the residual is the mean of the three single-member emulators'; a save/load
    round trip keeps every member."""
    grid, tables = _toy_grid()
    theta = ed.design_points(200, BOX_6_BOUNDS, seed=0)
    corner = ed.design_points(100, np.r_[[[0.02, er.CORNER_OMEGA_C_MAX]], BOX_6_BOUNDS[1:]], 2)
    fit = dict(TOY_FIT, steps=200)
    e = ef.fit_emulator(
        JADE, theta, _toy_table(theta), TOY_ELL, grid, tables, progress=False,
        low_data=(corner, _toy_table(corner)), low_fit=dict(fit, members=3, seed=5), **fit,
    )  # fmt: skip
    assert len(e.low_members) == 2
    singles = [dataclasses.replace(e, low_layers=m, low_members=())
               for m in (e.low_layers, *e.low_members)]  # fmt: skip
    t = jnp.asarray(FID6, jnp.float32).at[0].set(0.03)
    mean = np.mean([np.asarray(fe.residual_log_cl(s, t)) for s in singles], axis=0)
    np.testing.assert_allclose(np.asarray(fe.residual_log_cl(e, t)), mean, atol=1e-6)
    first = [np.asarray(fe.residual_log_cl(s, t)) for s in singles[:2]]
    assert np.abs(first[0] - first[1]).max() > 0.0  # other seeds, other fits
    again = emu.load_emulator_file(emu.save_emulator(e, tmp_path / "ens.npz"), preset=JADE.name)
    np.testing.assert_allclose(again.log_cl_pairs(t), e.log_cl_pairs(t), rtol=1e-6)
    assert len(again.low_members) == 2


def test_jade_preset_simulates_maps(jade):
    from numpyro_diffprior import simulator

    theta, kappa = simulator.simulate(jax.random.key(0), JADE, 2, emulator=jade)
    assert theta.shape == (2, 6) and kappa.shape == (2, 5, 128, 128)
    assert np.all(np.isfinite(np.asarray(kappa)))
    shift = np.asarray(jax.vmap(jade.shift)(theta))
    assert np.all(np.asarray(kappa) >= -shift[:, :, None, None] - 1e-6)
    assert len(np.unique(np.asarray(theta)[:, 2])) == 2  # a distinct theta per map


def test_build_recipe_rejects_bad_requests(tmp_path):
    from numpyro_diffprior.cli import main

    with pytest.raises(ValueError, match="all six parameters"):
        er.build_fitted_emulator("lsst-y10-coarse", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="only_shard must be one of"):
        er.build_fitted_emulator(JADE, cache_dir=tmp_path, only_shard="nope")
    with pytest.raises(ValueError, match="multiples"):
        er.build_fitted_emulator(JADE, cache_dir=tmp_path, num_points=1000, shard_size=300)
    with pytest.raises(ValueError, match="multiples"):
        er.build_fitted_emulator(JADE, cache_dir=tmp_path, num_tail_points=1500)
    with pytest.raises(ValueError, match="num_corner_points"):
        er.build_fitted_emulator(JADE, cache_dir=tmp_path, num_corner_points=1500)
    with pytest.raises(SystemExit, match="--cache-dir"):
        main(["build-emulator", "--preset", "lsst-y10-jade", "--shard", "0"])


def test_corner_shards_are_seeded_prefixes_at_small_omega_c():
    """Corner shard k: the first rows of a CORNER_DESIGN_SIZE design of seed 299 + seed + k,
    all with Omega_c < CORNER_OMEGA_C_MAX (so a larger shard size extends, never redraws)."""
    shards = er._shards(JADE, 5000, 2500, 1, 2000, 1000, BOX_6_BOUNDS, 2000, 1000)
    corner = [s for s in shards if s[0].startswith("corner")]
    assert [name for name, _, _ in corner] == ["corner0", "corner1"]
    bigger = er._shards(JADE, 5000, 2500, 1, 2000, 1000, BOX_6_BOUNDS, 3000, 1500)
    for k, (_, theta, file) in enumerate(corner):
        assert file == f"corner_lsst-y10-jade_{300 + k}.npz"
        assert theta.shape == (1000, 6) and theta[:, 0].max() < er.CORNER_OMEGA_C_MAX
        np.testing.assert_array_equal(
            theta, dict((n, t) for n, t, _ in bigger)[f"corner{k}"][:1000]
        )


def test_tail_shards_are_seeded_wider_designs():
    """Tail shard k: design_points(tail_shard_size, seed=200 + seed + k) from the prior widened
    TAIL_WIDEN times (2x; the main design 1.5x), so more of its draws lie beyond 3 sigma."""
    shards = er._shards(JADE, 5000, 2500, 1, 2000, 1000, BOX_6_BOUNDS, 0, 1000, 2000, 1000)
    tail = [s for s in shards if s[0].startswith("tail")]
    assert [(n, f) for n, _, f in tail] == [
        ("tail0", "tail_lsst-y10-jade_201.npz"), ("tail1", "tail_lsst-y10-jade_202.npz")
    ]  # fmt: skip
    np.testing.assert_array_equal(
        tail[1][1], ed.design_points(1000, BOX_6_BOUNDS, seed=202, widen=er.TAIL_WIDEN)
    )
    main = dict((n, t) for n, t, _ in shards)["0"]
    sd = np.array([prior_distribution(n).variance ** 0.5 for n in PARAMETER_NAMES[1:5]])
    mean = np.array([prior_distribution(n).mean for n in PARAMETER_NAMES[1:5]])
    far = lambda t: np.mean(np.any(np.abs(t[:, 1:5] - mean) > 3 * sd, axis=1))  # noqa: E731
    assert far(tail[0][1]) > 1.5 * far(main[:1000]), (far(tail[0][1]), far(main[:1000]))


def test_old_emulator_module_paths_still_import_with_a_warning():
    """emulator_fit, emulator_recipe and fitted_emulator moved into the package
    cosmology.emulator; the old modules re-export their names with a DeprecationWarning."""
    import importlib
    import sys

    for name in ("emulator_fit", "emulator_recipe", "fitted_emulator"):
        sys.modules.pop(f"numpyro_diffprior.cosmology.{name}", None)
        with pytest.warns(DeprecationWarning, match=name):
            importlib.import_module(f"numpyro_diffprior.cosmology.{name}")
    from numpyro_diffprior.cosmology.emulator_fit import LOW_FIT, build_fitted_emulator
    from numpyro_diffprior.cosmology.emulator_fit import fit_emulator as old_fit
    from numpyro_diffprior.cosmology.fitted_emulator import FittedEmulator as Old

    assert build_fitted_emulator is er.build_fitted_emulator and LOW_FIT is er.LOW_FIT
    assert old_fit is ef.fit_emulator and Old is FittedEmulator
