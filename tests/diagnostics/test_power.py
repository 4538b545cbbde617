"""Power-spectrum estimator: normalisation, cosmic variance, cross-correlation, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from numpyro_diffprior.diagnostics.power import (
    binned_theory,
    cosmic_variance,
    cross_correlation_coefficient,
    ell_bin_edges,
    modes_per_bin,
    power_spectrum,
)

N = 16
FIELD = float(np.radians(5.0))


def test_edges_cover_fundamental_to_nyquist_and_modes_add_up():
    edges = ell_bin_edges(N, FIELD)
    assert len(edges) == 5
    assert edges[0] < 2 * np.pi / FIELD < edges[1] and edges[-1] > np.pi * N / FIELD
    counts = modes_per_bin(N, FIELD, edges)
    k = 2 * np.pi * np.fft.fftfreq(N, d=FIELD / N)
    kk = np.hypot(k[:, None], k[None, :])
    inside = (kk >= edges[0]) & (kk < edges[-1])
    assert counts.sum() == inside.sum() and counts[0] == 4 + 4  # (±1,0),(0,±1),(±1,±1)
    assert np.all(np.diff(edges) > 0)


def test_white_noise_power_is_pixel_variance_times_pixel_area():
    """Exact closed form: white noise of variance s^2 has C_l = s^2 A_pix at every l."""
    s = 0.3
    maps = s * jax.random.normal(jax.random.key(0), (256, 2, N, N))
    edges = ell_bin_edges(N, FIELD)
    centers, cl = power_spectrum(maps, FIELD, edges)
    assert cl.shape == (256, 2, 2, 4) and centers.shape == (4,)
    assert np.all((centers > edges[:-1]) & (centers < edges[1:]))
    expected = s**2 * (FIELD / N) ** 2
    mean = cl.mean(0)
    n_modes = modes_per_bin(N, FIELD, edges)
    sigma = np.sqrt(expected**2 / n_modes / 256)  # auto: (C^2 + C^2)/n_modes; cross: C^2/n
    np.testing.assert_allclose(mean[0, 0], expected, atol=4 * np.sqrt(2) * sigma.max())
    np.testing.assert_allclose(mean[0, 1], 0.0, atol=4 * sigma.max())


def test_cosmic_variance_formula_matches_scatter_between_maps():
    """var(C_ij) = (C_ii C_jj + C_ij^2) / n_modes for correlated Gaussian maps (real-field rule)."""
    k1, k2 = jax.random.split(jax.random.key(1))
    a = jax.random.normal(k1, (4000, N, N))
    b = 0.6 * a + 0.8 * jax.random.normal(k2, (4000, N, N))
    maps = jnp.stack([a, b], axis=1)
    edges = ell_bin_edges(N, FIELD)
    _, cl = power_spectrum(maps, FIELD, edges)
    pix = (FIELD / N) ** 2
    theory = jnp.array([[1.0, 0.6], [0.6, 1.0]])[:, :, None] * pix * jnp.ones(4)
    predicted = cosmic_variance(theory, modes_per_bin(N, FIELD, edges))
    ratio = np.asarray(cl.var(0) / predicted)
    # sampling error of a variance from 4000 draws is ~ sqrt(2/4000) ~ 2.2% (more for few modes)
    np.testing.assert_allclose(ratio, 1.0, atol=0.12)
    np.testing.assert_allclose(ratio[..., 2:], 1.0, atol=0.06)


def test_binned_theory_of_flat_grid_power():
    edges = ell_bin_edges(N, FIELD)
    flat = jnp.full((N, N), 2.0)
    np.testing.assert_allclose(
        binned_theory(flat, N, FIELD, edges), 2.0 * (FIELD / N) ** 2, rtol=1e-5
    )


def test_cross_correlation_coefficient():
    k1, k2 = jax.random.split(jax.random.key(2))
    a = jax.random.normal(k1, (3, N, N))
    noise = jax.random.normal(k2, (3, N, N))
    edges = ell_bin_edges(N, FIELD, n_bins=2)
    np.testing.assert_allclose(cross_correlation_coefficient(a, a, FIELD, edges), 1.0, rtol=1e-5)
    np.testing.assert_allclose(
        cross_correlation_coefficient(a, -2 * a, FIELD, edges), -1.0, rtol=1e-5
    )
    assert cross_correlation_coefficient(a, noise, FIELD, edges).shape == (3, 2)
    big = jax.random.normal(k1, (200, 1, N, N))
    b = 0.6 * big + 0.8 * jax.random.normal(k2, (200, 1, N, N))
    r = cross_correlation_coefficient(big, b, FIELD, edges).mean(0)
    np.testing.assert_allclose(r, 0.6, atol=0.05)


def test_bad_input():
    edges = ell_bin_edges(N, FIELD)
    with pytest.raises(ValueError, match="increasing"):
        power_spectrum(jnp.zeros((2, N, N)), FIELD, edges[::-1])
    with pytest.raises(ValueError, match="empty ell bin"):
        power_spectrum(jnp.zeros((2, N, N)), FIELD, np.linspace(1.0, 3.0, 4))
    with pytest.raises(ValueError, match="shape"):
        power_spectrum(jnp.zeros((N, N)), FIELD, edges)
    with pytest.raises(ValueError, match="same shape"):
        cross_correlation_coefficient(jnp.zeros((1, N, N)), jnp.zeros((2, N, N)), FIELD, edges)
    with pytest.raises(ValueError, match="n_bins"):
        ell_bin_edges(N, FIELD, n_bins=0)


@pytest.mark.parametrize("npix", [16, 32, 64, 128])
def test_default_ell_bins_all_hold_modes(npix):
    """The default bin count is the largest up to npix // 4 (at least 4) whose bins all hold
    modes: 4 and 8 at 16 and 32 pixels; at 128 pixels 32 log bins would leave the lowest ones
    between the discrete |k|, and binned_theory refuses an empty bin."""
    edges = ell_bin_edges(npix, FIELD)
    n = len(edges) - 1
    assert np.all(modes_per_bin(npix, FIELD, edges) > 0)
    if npix <= 32:
        assert n == max(4, npix // 4)
    assert 8 <= n <= max(4, npix // 4) or npix == 16
    for more in range(n + 1, max(4, npix // 4) + 1):
        assert np.any(modes_per_bin(npix, FIELD, ell_bin_edges(npix, FIELD, more)) == 0)
    with pytest.raises(ValueError, match="empty ell bin"):
        binned_theory(np.ones((128, 128)), 128, FIELD, ell_bin_edges(128, FIELD, 32))
    theory = binned_theory(np.ones((npix, npix)), npix, FIELD, edges)
    np.testing.assert_allclose(np.asarray(theory), (FIELD / npix) ** 2, rtol=1e-4)
