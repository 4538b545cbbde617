"""Guidance building blocks: the safeguarded CG solve, the kappa-block MMPS covariance and the
guidance clip, on closed forms and on the exact Gaussian-joint oracle."""

import jax
import jax.numpy as jnp
import numpy as np
from infer_cases import NOISE

from numpyro_diffprior.infer import shear_model
from numpyro_diffprior.infer.guidance import clip_guidance, truncated_cg
from numpyro_diffprior.infer.model_tracing import inspect_model
from numpyro_diffprior.infer.posterior import make_guidance


def test_truncated_cg_solves_spd_systems_exactly():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(12, 12))
    m = jnp.asarray(q @ q.T + 0.5 * np.eye(12))
    b = jnp.asarray(rng.normal(size=12))
    u = truncated_cg(lambda v: m @ v, b, maxiter=40)
    np.testing.assert_allclose(u, np.linalg.solve(m, b), rtol=1e-4, atol=1e-5)


def test_truncated_cg_stops_at_negative_curvature():
    m = jnp.diag(jnp.array([2.0, -1.0]))  # b = (1, 2): p^T M p = 2 - 4 < 0 at the first step
    u = truncated_cg(lambda v: m @ v, jnp.array([1.0, 2.0]), maxiter=10)
    assert np.all(np.isfinite(u))
    np.testing.assert_allclose(u, [0.0, 0.0])  # frozen before a step along that direction
    # b = (1, 1): one step (curvature 1 > 0) to (2, 2), then the next direction is frozen
    u = truncated_cg(lambda v: m @ v, jnp.array([1.0, 1.0]), maxiter=10)
    np.testing.assert_allclose(u, [2.0, 2.0])
    u = truncated_cg(lambda v: m @ v, jnp.array([1.0, 0.0]), maxiter=10)
    np.testing.assert_allclose(u, [0.5, 0.0])  # the positive-definite subspace is still solved


def test_clip_guidance_bounds_the_shift_and_leaves_small_ones():
    g = jnp.array([[30.0, 40.0, 0.0, 0.0], [0.3, 0.4, 0.0, 0.0]])  # norms 50 and 0.5
    sigma = jnp.array([0.5, 0.5])
    clipped = clip_guidance(lambda x, s: g, 2.0)(jnp.zeros((2, 4)), sigma)
    bound = 2.0 * np.sqrt(4) * 0.5 / 0.5**2  # scale sqrt(D) min(sigma, 1) / sigma^2 = 8
    np.testing.assert_allclose(np.linalg.norm(clipped[0]), bound, rtol=1e-6)
    np.testing.assert_allclose(clipped[0] / np.linalg.norm(clipped[0]), [0.6, 0.8, 0, 0])
    np.testing.assert_array_equal(clipped[1], g[1])


def _oracle_guidance(gaussian_case, **kwargs):
    kw = dict(prior=gaussian_case["prior"], shear_obs=gaussian_case["shear"], noise_std=NOISE)
    info = inspect_model(shear_model, kw, validate=False)
    return make_guidance("mmps", shear_model, info, kw, cg_maxiter=64, **kwargs)[0]


def _noisy_draws(gaussian_case, sigma, num=64):
    prior = gaussian_case["prior"]
    x0 = prior.to_normalized(prior.sample(jax.random.PRNGKey(1), (num,)))
    return x0 + sigma * jax.random.normal(jax.random.PRNGKey(2), x0.shape)


def test_kappa_block_mmps_is_the_joint_guidance_without_its_theta_part(gaussian_case):
    """The observation sees kappa only, so the CG system is the same; the kappa rows agree."""
    joint = _oracle_guidance(gaussian_case)
    kappa = _oracle_guidance(gaussian_case, mmps_covariance="kappa")
    for s in (0.05, 0.5, 3.0):
        x, sigma = _noisy_draws(gaussian_case, s), jnp.full((64,), s)
        gj, gk = joint(x, sigma), kappa(x, sigma)
        np.testing.assert_array_equal(gk[:, :2], 0.0)
        np.testing.assert_allclose(gk[:, 2:], gj[:, 2:], rtol=1e-4, atol=1e-5 * np.abs(gj).max())
        assert np.abs(gj[:, :2]).max() > 0  # the joint one does guide theta


def test_cross_block_mmps_equals_the_joint_guidance_for_a_tweedie_jacobian(gaussian_case):
    """The oracle's Jacobian is Cov[x_0 | x_t] / sigma^2 (symmetric), so guiding theta by the
    jvp of the cross block gives the joint guidance exactly, theta rows included."""
    joint = _oracle_guidance(gaussian_case)
    cross = _oracle_guidance(gaussian_case, mmps_covariance="cross")
    for s in (0.05, 0.5, 3.0):
        x, sigma = _noisy_draws(gaussian_case, s), jnp.full((64,), s)
        gj, gc = joint(x, sigma), cross(x, sigma)
        np.testing.assert_allclose(gc, gj, rtol=1e-4, atol=1e-5 * np.abs(gj).max())


def test_clip_does_not_bind_for_an_exact_gaussian_prior(gaussian_case):
    """sigma^2 g has E||.||^2 <= D min(sigma^2, 1) for exact Gaussian MMPS: a clip at twice
    that root leaves exact guidance unchanged at every noise level."""
    exact = _oracle_guidance(gaussian_case)
    clipped = _oracle_guidance(gaussian_case, clip=2.0)
    for s in (0.01, 0.1, 1.0, 10.0, 80.0):
        x, sigma = _noisy_draws(gaussian_case, s), jnp.full((64,), s)
        np.testing.assert_array_equal(clipped(x, sigma), exact(x, sigma))
