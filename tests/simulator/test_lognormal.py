"""Log-normal simulator against closed forms: power, moments, positivity bound, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from numpyro_diffprior.diagnostics.power import (
    binned_theory,
    cosmic_variance,
    ell_bin_edges,
    modes_per_bin,
    power_spectrum,
)
from numpyro_diffprior.simulator.lognormal import (
    _gaussian_power,
    _quadrant,
    gaussian_field,
    half_plane_orbits,
    interpolate_cl,
    isotropic_psd_sqrt,
    jacobi_eigh,
    lognormal_kappa,
    lognormal_theory_power,
    power_grid,
    psd_sqrt,
    wavenumber_grid,
)

N = 32
FIELD = float(np.radians(5.0))
ELL = jnp.geomspace(10.0, 5000.0, 64)
NUM = 128


def power_law_cl(amplitudes, slope=-1.2, ell=ELL):
    """C_ij(l) = A_ij (l / 100)^slope with a correlated (C, C) amplitude matrix."""
    return jnp.asarray(amplitudes)[:, :, None] * (ell / 100.0) ** slope


AMP3 = np.array([[1.0, 0.6, 0.4], [0.6, 1.5, 0.8], [0.4, 0.8, 2.0]]) * 1e-9
AMP2 = np.array([[1.0, 0.7], [0.7, 2.0]]) * 2e-9


def white_noise(num, n_bins, seed=0):
    return jax.random.normal(jax.random.key(seed), (num, n_bins, N, N))


def test_interpolation_exact_at_nodes_and_zero_mode():
    cl = power_law_cl(AMP3)
    out = interpolate_cl(cl, ELL, ELL[5:9])
    np.testing.assert_allclose(out, cl[:, :, 5:9], rtol=1e-4)
    grid = power_grid(cl, ELL, N, FIELD)
    assert grid.shape == (3, 3, N, N)
    assert float(jnp.abs(grid[:, :, 0, 0]).max()) == 0.0
    k1 = 2 * np.pi / FIELD  # fundamental mode (0, 1)
    np.testing.assert_allclose(
        grid[:, :, 0, 1], cl[:, :, 0] * 0 + AMP3 * (k1 / 100) ** -1.2 * (N / FIELD) ** 2, rtol=1e-4
    )


@pytest.mark.parametrize("npix", [N, 15])
def test_power_grid_equals_interpolation_at_every_mode(npix):
    # power_grid interpolates once per distinct |k| and copies; the direct evaluation at each
    # mode of the grid is the reference.
    cl = power_law_cl(AMP3)
    for half in (False, True):
        direct = interpolate_cl(cl, ELL, wavenumber_grid(npix, FIELD, half=half))
        direct = direct * (npix / FIELD) ** 2
        np.testing.assert_allclose(power_grid(cl, ELL, npix, FIELD, half=half), direct, rtol=1e-5)


@pytest.mark.parametrize("npix", [N, 15])
def test_isotropic_psd_sqrt_equals_per_mode_sqrt(npix):
    rep_y, rep_x, inverse = half_plane_orbits(npix)
    assert inverse.shape == (npix, npix // 2 + 1)
    m = npix // 2 + 1  # distinct |k_y| and |k_x| values: unordered pairs of them
    assert len(rep_y) == m * (m + 1) // 2
    # the Gaussian power of a log-normal field is constant on each set of modes (to rounding)
    p_g = _gaussian_power(power_law_cl(AMP3), ELL, jnp.array([0.01, 0.02, 0.03]), npix, FIELD)
    p_max = float(jnp.abs(p_g).max())
    np.testing.assert_allclose(p_g[rep_y, rep_x][inverse], p_g, atol=1e-6 * p_max)
    s_full = psd_sqrt(p_g)
    np.testing.assert_allclose(isotropic_psd_sqrt(p_g), s_full, atol=1e-5 * float(s_full.max()))


def test_psd_sqrt_square_and_clipping():
    a = jnp.array([[2.0, 0.5], [0.5, 1.0]])
    s = psd_sqrt(a)
    np.testing.assert_allclose(s @ s, a, rtol=1e-5)
    indefinite = jnp.array([[1.0, 2.0], [2.0, 1.0]])  # eigenvalues 3, -1
    s = psd_sqrt(indefinite)
    np.testing.assert_allclose(s @ s, 1.5 * jnp.ones((2, 2)), rtol=1e-5)


def test_psd_sqrt_gradient_matches_finite_differences_and_is_finite_when_degenerate():
    a = jnp.array([[2.0, 0.5, 0.1], [0.5, 1.0, 0.2], [0.1, 0.2, 1.5]], dtype=jnp.float32)
    check_grads(
        lambda m: psd_sqrt(0.5 * (m + m.T)),
        (a,),
        order=1,
        modes=["fwd", "rev"],
        atol=2e-2,
        rtol=2e-2,
        eps=1e-3,
    )
    for degenerate in (jnp.eye(3), jnp.zeros((3, 3)), jnp.diag(jnp.array([1.0, 1.0, -1.0]))):
        grad = jax.grad(lambda m: jnp.sum(psd_sqrt(m) * jnp.arange(9.0).reshape(3, 3)))(degenerate)
        assert bool(jnp.all(jnp.isfinite(grad)))

    # the naive eigh gradient is NaN at a degenerate point: the custom rule is what saves us
    def naive(m):
        w, v = jnp.linalg.eigh(m)
        return jnp.sum((v * jnp.sqrt(jnp.maximum(w, 0.0))) @ v.T * jnp.arange(9.0).reshape(3, 3))

    assert not bool(jnp.all(jnp.isfinite(jax.grad(naive)(jnp.eye(3)))))


def test_gaussian_field_power_matches_input_within_cosmic_variance():
    cl = power_law_cl(AMP3)
    p_half = jnp.moveaxis(power_grid(cl, ELL, N, FIELD, half=True), (0, 1), (-2, -1))
    sqrt_p = psd_sqrt(p_half)
    maps = jax.vmap(lambda z: gaussian_field(z, sqrt_p))(white_noise(NUM, 3))
    edges = ell_bin_edges(N, FIELD)
    _, measured = power_spectrum(maps, FIELD, edges)
    theory = binned_theory(power_grid(cl, ELL, N, FIELD), N, FIELD, edges)
    sigma = jnp.sqrt(cosmic_variance(theory, modes_per_bin(N, FIELD, edges)) / NUM)
    pull = (measured.mean(0) - theory) / sigma
    assert float(jnp.abs(pull).max()) < 4.0, pull
    # and the scatter between maps is the cosmic variance (tested in detail in test_power)
    ratio = measured.var(0, ddof=1) / cosmic_variance(theory, modes_per_bin(N, FIELD, edges))
    assert 0.6 < float(ratio.mean()) < 1.4
    # pixel covariance: sum_k P / N^2 (exact for the Gaussian field)
    var_theory = power_grid(cl, ELL, N, FIELD).sum(axis=(-1, -2)) / N**2
    cov = jnp.einsum("bixy,bjxy->ij", maps, maps) / (NUM * N * N)
    np.testing.assert_allclose(cov, var_theory, rtol=0.1)


@pytest.mark.parametrize("shift_scale", [1.0, 0.25])
def test_lognormal_power_matches_input(shift_scale):
    """Two-point function preserved: theory on the grid within 1%, measured within 4 s.e."""
    cl = power_law_cl(AMP2)
    shift = jnp.array([0.02, 0.04]) * shift_scale
    f = jax.jit(jax.vmap(lambda z: lognormal_kappa(z, cl, ELL, shift, npix=N, field_rad=FIELD)))
    kappa = f(white_noise(NUM, 2, seed=1))
    edges = ell_bin_edges(N, FIELD)
    p_in = power_grid(cl, ELL, N, FIELD)
    p_ln = lognormal_theory_power(cl, ELL, shift, npix=N, field_rad=FIELD)
    # grid effects (zero mode removed from xi_G) change the power by < 1% at k != 0
    rel = jnp.abs(p_ln - p_in)[:, :, 1:, 1:] / p_in[:, :, 1:, 1:]
    assert float(rel.max()) < 0.01
    theory = binned_theory(p_in, N, FIELD, edges)
    _, per_map = power_spectrum(kappa, FIELD, edges)
    stderr = per_map.std(0, ddof=1) / np.sqrt(NUM)  # non-Gaussian: empirical error bars
    pull = (per_map.mean(0) - theory) / stderr
    assert float(jnp.abs(pull).max()) < 4.0, pull


def test_lognormal_bound_mean_and_variance():
    cl = power_law_cl(AMP2)
    shift = jnp.array([0.005, 0.01])  # strongly non-Gaussian
    f = jax.jit(jax.vmap(lambda z: lognormal_kappa(z, cl, ELL, shift, npix=N, field_rad=FIELD)))
    kappa = np.asarray(f(white_noise(NUM, 2, seed=2)))
    assert np.all(kappa >= -np.asarray(shift)[None, :, None, None])
    skew = ((kappa - kappa.mean()) ** 3).mean(axis=(0, 2, 3)) / kappa.var(axis=(0, 2, 3)) ** 1.5
    assert np.all(skew > 0.5)  # genuinely log-normal, not Gaussian
    per_map_mean = kappa.mean(axis=(2, 3))
    assert np.all(np.abs(per_map_mean.mean(0)) < 4 * per_map_mean.std(0) / np.sqrt(NUM))
    var_theory = (
        np.diagonal(
            lognormal_theory_power(cl, ELL, shift, npix=N, field_rad=FIELD).sum(axis=(-1, -2))
        )
        / N**2
    )
    var_input = np.diagonal(power_grid(cl, ELL, N, FIELD).sum(axis=(-1, -2))) / N**2
    np.testing.assert_allclose(var_theory, var_input, rtol=0.01)
    per_map_var = (kappa**2).mean(axis=(2, 3))
    err = per_map_var.std(0) / np.sqrt(NUM)
    assert np.all(np.abs(per_map_var.mean(0) - var_theory) < 4 * err)


def test_lognormal_gradients_finite_under_jit():
    cl = power_law_cl(np.eye(3) * 1e-9)  # uncorrelated equal bins: degenerate eigenvalues
    shift = jnp.array([0.02, 0.02, 0.02])
    z = white_noise(1, 3)[0]

    def loss(shift, cl, z):
        return jnp.sum(lognormal_kappa(z, cl, ELL, shift, npix=N, field_rad=FIELD) ** 2)

    for c in (cl, power_law_cl(AMP3)):
        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(shift, c, z)
        for g in grads:
            assert bool(jnp.all(jnp.isfinite(g)))
        assert float(jnp.abs(grads[0]).sum()) > 0 and float(jnp.abs(grads[2]).sum()) > 0


def test_lognormal_gradient_matches_finite_differences():
    cl = power_law_cl(AMP2)
    z = jax.random.normal(jax.random.key(3), (2, 16, 16))

    def stat(log_amp, log_shift):
        kappa = lognormal_kappa(
            z, cl * jnp.exp(log_amp), ELL, jnp.exp(log_shift), npix=16, field_rad=FIELD
        )
        return jnp.mean(kappa**3) * 1e6

    check_grads(
        jax.jit(stat),
        (jnp.array(0.0), jnp.log(jnp.array([0.02, 0.04]))),
        order=1,
        modes=["rev"],
        atol=5e-2,
        rtol=5e-2,
        eps=1e-2,
    )


def test_bad_shapes_raise():
    cl = power_law_cl(AMP2)
    with pytest.raises(ValueError, match="z must have shape"):
        lognormal_kappa(jnp.zeros((2, 16, 16)), cl, ELL, jnp.ones(2), npix=N, field_rad=FIELD)
    with pytest.raises(ValueError, match="cl must have shape"):
        lognormal_kappa(
            jnp.zeros((2, N, N)), cl[..., :10], ELL, jnp.ones(2), npix=N, field_rad=FIELD
        )
    with pytest.raises(ValueError, match="shift must have shape"):
        lognormal_kappa(jnp.zeros((2, N, N)), cl, ELL, jnp.ones(3), npix=N, field_rad=FIELD)


def _reference_gaussian_power(cl, ell, shift, npix, field_rad):
    """Steps 1-2 of the module docstring with full 2-D FFTs (the pre-quadrant implementation)."""
    p = power_grid(cl, ell, npix, field_rad)
    xi = jnp.fft.ifft2(p).real
    lam = shift[:, None] * shift[None, :]
    xi_g = jnp.log(jnp.maximum(1.0 + xi / lam[..., None, None], 1e-6))
    p_g = jnp.fft.rfft2(xi_g).real.at[:, :, 0, 0].set(0.0)
    p_g = jnp.moveaxis(p_g, (0, 1), (-2, -1))
    return 0.5 * (p_g + jnp.swapaxes(p_g, -1, -2))


@pytest.mark.parametrize("npix", [N, 15])
def test_quadrant_cosine_transforms_equal_full_ffts(npix):
    shift = jnp.array([0.01, 0.02, 0.03])
    fast = _gaussian_power(power_law_cl(AMP3), ELL, shift, npix, FIELD)
    ref = _reference_gaussian_power(power_law_cl(AMP3), ELL, shift, npix, FIELD)
    np.testing.assert_allclose(fast, ref, atol=2e-6 * float(jnp.abs(ref).max()))
    # the orbits' full-grid multiplicities add up to the grid
    assert _quadrant(npix)[5].sum() == npix * npix


def _constructed_batch(n_bins=5, num=64, seed=4):
    """Symmetric matrices spanning 1e-4 in scale: PD, PSD of rank 1-4 (singular), zero,
    identity (degenerate), and indefinite ones."""
    rng = np.random.default_rng(seed)
    mats = []
    for i in range(num):
        rank = i % (n_bins + 1)
        x = rng.normal(size=(n_bins, rank)) * 10.0 ** rng.uniform(-2, 0)
        mats.append(x @ x.T)
    mats += [np.zeros((n_bins, n_bins)), np.eye(n_bins)]
    for _ in range(8):
        x = rng.normal(size=(n_bins, n_bins))
        mats.append(0.5 * (x + x.T))
    return np.stack(mats).astype(np.float32)


def test_jacobi_eigh_matches_lapack_on_a_constructed_batch():
    a = _constructed_batch()
    w, v = jacobi_eigh(jnp.moveaxis(jnp.asarray(a), 0, -1))
    w, v = np.asarray(w).T, np.moveaxis(np.asarray(v), -1, 0)
    scale = np.abs(a).max(axis=(1, 2), keepdims=True) + 1e-30
    eig_err = (np.sort(w, -1) - np.linalg.eigvalsh(a)) / scale[:, 0]
    np.testing.assert_allclose(eig_err, 0.0, atol=2e-6)
    np.testing.assert_allclose((np.einsum("bik,bk,bjk->bij", v, w, v) - a) / scale, 0.0, atol=2e-6)
    np.testing.assert_allclose(np.einsum("bki,bkj->bij", v, v) - np.eye(5), 0.0, atol=2e-6)


def test_psd_sqrt_clips_negative_eigenvalues_and_is_finite_when_singular():
    a = _constructed_batch()
    s = psd_sqrt(jnp.asarray(a))
    assert bool(jnp.all(jnp.isfinite(s)))
    w, v = np.linalg.eigh(a.astype(np.float64))
    clipped = np.einsum("bik,bk,bjk->bij", v, np.maximum(w, 0.0), v)  # a_+
    scale = np.abs(a).max(axis=(1, 2), keepdims=True) + 1e-30
    np.testing.assert_allclose((np.asarray(s @ s) - clipped) / scale, 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(s), np.swapaxes(np.asarray(s), -1, -2), atol=1e-6)
    singular = np.linalg.matrix_rank(a[:60]) < 5
    assert singular.sum() >= 40 and (w[60:] < 0).any()  # the batch has what it claims
    grad = jax.grad(lambda m: jnp.sum(jnp.sin(psd_sqrt(m))))(jnp.asarray(a))
    assert bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.slow  # 128 x 128 x 5 maps and gradients: ~20 s on 2 cores
def test_lsst_y10_jade_power_and_gradients():
    """128 x 128 x 5 maps (lsst-y10-jade, shipped emulator) at fiducial: power within 5 s.e.
    of the exact grid theory; gradients in theta and z finite, also at a corner of the box
    where most modes' Gaussian power has negative eigenvalues (clipped)."""
    from numpyro_diffprior.cosmology.emulator import emulate_cl, load_emulator
    from numpyro_diffprior.cosmology.params import FIDUCIAL
    from numpyro_diffprior.cosmology.shifts import preset_shift
    from numpyro_diffprior.presets import get_preset
    from numpyro_diffprior.simulator.lognormal import simulate_kappa

    preset = get_preset("lsst-y10-jade")
    emulator = load_emulator(preset)
    theta = jnp.array([FIDUCIAL[n] for n in preset.param_names])
    num = 16
    z = jax.random.normal(jax.random.key(5), (num,) + preset.map_shape)
    kappa = jax.jit(jax.vmap(lambda zz: simulate_kappa(theta, zz, emulator, preset)))(z)
    cl, shift = emulate_cl(emulator, theta), preset_shift(preset, theta)
    npix, field = preset.npix, preset.field_rad
    p_ln = lognormal_theory_power(cl, emulator.ell, shift, npix=npix, field_rad=field)
    edges = ell_bin_edges(npix, field, 12)
    theory = binned_theory(p_ln, npix, field, edges)
    _, per_map = power_spectrum(kappa, field, edges)
    pull = (per_map.mean(0) - theory) / (per_map.std(0, ddof=1) / np.sqrt(num))
    assert float(jnp.abs(pull).max()) < 5.0, pull
    # against the input C_l: grid effects only (zero mode, clipping) at k != 0
    p_in = power_grid(cl, emulator.ell, npix, field)
    assert float(jnp.abs(p_ln / p_in - 1.0)[:, :, 1:, 1:].max()) < 0.01

    weights = jax.random.normal(jax.random.key(6), preset.map_shape)
    grad = jax.jit(
        jax.grad(lambda t, zz: jnp.sum(weights * simulate_kappa(t, zz, emulator, preset)), (0, 1))
    )
    corner = jnp.asarray(emulator.bounds)[:, 0]
    for t in (theta, corner):
        g_theta, g_z = grad(t, z[0])
        assert bool(jnp.all(jnp.isfinite(g_theta))) and bool(jnp.all(jnp.isfinite(g_z)))
        assert float(jnp.abs(g_z).sum()) > 0
    assert float(jnp.abs(grad(theta, z[0])[0]).sum()) > 0
