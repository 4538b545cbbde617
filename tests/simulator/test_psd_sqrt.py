"""The entry-by-entry Cholesky factor, triangular solve and matrix-vector product of
`simulator.psd_sqrt` against numpy's LAPACK results on a random batch."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from numpyro_diffprior.simulator.psd_sqrt import (
    cholesky_batch_last,
    matvec_batch_last,
    solve_lower_batch_last,
)


def _spd_batch(seed, n=5, batch=(3, 4)):
    """SPD matrices with condition numbers up to ~1e3, stacked batch-last (n, n, *batch)."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=batch + (n, n))
    a = m @ np.swapaxes(m, -1, -2) + 1e-2 * np.eye(n)
    return np.moveaxis(a, (-2, -1), (0, 1)).astype(np.float64), a


def test_cholesky_matches_lapack_and_reconstructs():
    a_last, a = _spd_batch(0)
    low = np.asarray(cholesky_batch_last(jnp.asarray(a_last, jnp.float32)))
    want = np.moveaxis(np.linalg.cholesky(a), (-2, -1), (0, 1))
    np.testing.assert_allclose(low, want, rtol=2e-3, atol=2e-4 * np.abs(want).max())
    assert np.all(np.triu(np.moveaxis(low, (0, 1), (-2, -1)), 1) == 0)
    # a matrix that is not positive definite gives NaN, never a silent factor
    bad = a_last.copy()
    bad[0, 0, 0, 0] = -1.0
    assert np.isnan(np.asarray(cholesky_batch_last(jnp.asarray(bad)))[:, :, 0, 0]).any()


def test_solve_lower_and_matvec_invert_each_other_on_complex_vectors():
    a_last, a = _spd_batch(1)
    low = cholesky_batch_last(jnp.asarray(a_last, jnp.float32))
    rng = np.random.default_rng(2)
    b = jnp.asarray(rng.normal(size=(5, 3, 4)) + 1j * rng.normal(size=(5, 3, 4)), jnp.complex64)
    x = solve_lower_batch_last(low, b)
    np.testing.assert_allclose(np.asarray(matvec_batch_last(low, x)), np.asarray(b), atol=1e-3)
    want = np.einsum("ij...,j...->i...", np.asarray(low, np.float64), np.asarray(b))
    np.testing.assert_allclose(np.asarray(matvec_batch_last(low, b)), want, rtol=1e-5, atol=1e-5)


def test_cholesky_gradient_matches_finite_differences():
    a_last, _ = _spd_batch(3, n=3, batch=(2,))
    sym = lambda m: cholesky_batch_last(0.5 * (m + jnp.swapaxes(m, 0, 1)))
    with jax.enable_x64():
        check_grads(sym, (jnp.asarray(a_last),), order=1, modes=("fwd", "rev"), eps=1e-5)
