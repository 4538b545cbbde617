"""Likelihood guidance for diffusion posterior sampling, in normalised coordinates.

Each factory returns `guidance(x (B, D), sigma (B,)) -> (B, D)`, an approximation of
grad_x log p_sigma(y | x_sigma) added to the prior score (D(x; sigma) - x) / sigma^2.
With y = A x + b + n, n ~ N(0, Sigma_n) (A acting on normalised x):

- `annealed_guidance` (Remy et al. 2023, "Probabilistic mass-mapping with neural score
  estimation", Eq. 11): log N(y; A x_sigma + b, Sigma_n + sigma^2 diag(A A^T)). This is the
  likelihood convolved with the forward noise *ignoring the prior*; we keep the diagonal of
  A A^T (exact when A A^T is diagonal, e.g. pixel-wise observations with any mask; for
  Kaiser-Squires it drops the pixel correlations of the E-mode projector). It is exact only in
  the limit sigma -> 0, so it is meant for annealed Langevin (per-level equilibrium), and biased
  when used in a one-pass reverse diffusion.
- `dps_guidance` (Chung et al. 2023, "Diffusion posterior sampling", Algorithm 1): an x-space
  step down the gradient of the whitened residual norm ||y - loc(D(x; sigma))|| through the
  denoiser after each reverse step (not a score term: the paper's step-size rule
  zeta_i = zeta' / ||y - A x0|| applied to ||.||^2); any differentiable loc works.
- `mmps_guidance` (Rozet et al. 2024, "Learning diffusion priors from observations by
  expectation maximization", Eqs. 9-12, moment matching posterior sampling):
  p(y | x_sigma) ~ N(y; A D + b, Sigma_n + A V A^T) with the Tweedie covariance
  V = sigma^2 dD/dx_sigma; the linear solve uses conjugate gradients with jvp/vjp of D.
  Exact when the prior is Gaussian (then D is affine and p(y | x_sigma) is exactly this).
  `covariance="kappa"` keeps only the kappa block of V (the likelihood sees kappa alone; theta
  then follows the prior score given the guided map): with a learned network the theta block of
  its Jacobian is what destabilises the solve (docs/sampling.md); `covariance="cross"` also
  guides theta through the theta-kappa cross block, by a jvp.

`clip_guidance` bounds any guidance per draw: in normalised coordinates the posterior-mean
shift sigma^2 g = V A^T (Sigma_n + A V A^T)^{-1} r has E||.||^2 <= tr V <= D min(sigma^2, 1)
(exact Gaussian case), so a draw whose shift exceeds `scale` sqrt(D) min(sigma, 1) is a
network-Jacobian blow-up, and it is scaled back to that bound.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "NormalisedObservation",
    "normalised_observation",
    "annealed_guidance",
    "dps_guidance",
    "mmps_guidance",
    "clip_guidance",
    "truncated_cg",
]


class NormalisedObservation(NamedTuple):
    forward: object  # v (D,) -> (M,), linear part A on normalised coordinates
    adjoint: object  # u (M,) -> (D,), A^T
    offset: jnp.ndarray  # (M,), b = loc at x_n = 0
    y: jnp.ndarray  # (M,)
    precision: jnp.ndarray  # (M,), 0 on unobserved entries
    row_norms: jnp.ndarray | None  # (M,), diag(A A^T), or None


def normalised_observation(prior, linear_gaussian, *, row_norms=False, batch_size=256):
    """Linearise the observed sites' loc in normalised coordinates (jax.linearize)."""
    zeros = jnp.zeros(prior.dim, prior.normalizer.theta_mean.dtype)
    b, forward = jax.linearize(
        lambda x_n: linear_gaussian.loc_fn(prior.from_normalized(x_n)), zeros
    )
    transpose = jax.linear_transpose(forward, zeros)
    adjoint = lambda u: transpose(u)[0]
    norms = None
    if row_norms:
        m = b.shape[0]
        norms = jax.lax.map(
            lambda i: jnp.sum(adjoint(jax.nn.one_hot(i, m, dtype=b.dtype)) ** 2),
            jnp.arange(m),
            batch_size=batch_size,
        )
    return NormalisedObservation(
        forward, adjoint, b, linear_gaussian.y, linear_gaussian.precision, norms
    )


def annealed_guidance(obs: NormalisedObservation):
    """Remy et al. (2023) convolved Gaussian likelihood score (diagonal A A^T)."""

    def guidance(x, sigma):
        resid = obs.y - (jax.vmap(obs.forward)(x) + obs.offset)
        prec = obs.precision / (1.0 + sigma[:, None] ** 2 * obs.row_norms * obs.precision)
        return jax.vmap(obs.adjoint)(prec * resid)

    return guidance


def dps_guidance(denoise_fn, residual_norm_n=None, log_likelihood_n=None, *, scale=1.0):
    """Chung et al. (2023) Algorithm 1 as an x-space correction applied after each step:
    x_{i-1} <- x'_{i-1} - scale * grad_{x_i} ||W (y - loc(D(x_i)))|| (the paper's
    zeta_i = zeta'/||r|| rule, scale = 2 zeta'); needs Normal observed sites (any loc).
    Without them (`residual_norm_n=None`), x <- x + scale * grad log p(y | D(x_i)).
    Returns `correction(x (B, D), sigma (B,)) -> (B, D)`.
    """

    def correction(x, sigma):
        if residual_norm_n is not None:
            total = lambda v: -jnp.sum(jax.vmap(residual_norm_n)(denoise_fn(v, sigma)))
        else:
            total = lambda v: jnp.sum(jax.vmap(log_likelihood_n)(denoise_fn(v, sigma)))
        return scale * jax.grad(total)(x)

    return correction


def truncated_cg(matvec, b, maxiter):
    """`maxiter` conjugate-gradient iterations for M u = b from u = 0 (Hestenes & Stiefel
    1952), frozen at the first direction of non-positive curvature p^T M p <= 0 (Steihaug 1983),
    which a learned denoiser's Jacobian can produce."""

    def body(_, carry):
        u, r, p, rr, done = carry
        mp = matvec(p)
        curvature = jnp.vdot(p, mp)
        done = done | (curvature <= 1e-12 * rr)
        alpha = jnp.where(done, 0.0, rr / jnp.where(done, 1.0, curvature))
        u, r = u + alpha * p, r - alpha * mp
        rr_new = jnp.vdot(r, r)
        p = jnp.where(done, p, r + rr_new / jnp.where(rr > 0, rr, 1.0) * p)
        return u, r, p, jnp.where(done, rr, rr_new), done

    init = (jnp.zeros_like(b), b, b, jnp.vdot(b, b), jnp.asarray(False))
    return jax.lax.fori_loop(0, maxiter, body, init)[0]


def mmps_guidance(denoise_fn, obs: NormalisedObservation, *, cg_maxiter=10, covariance="joint",
                  n_params=0):  # fmt: skip
    """Rozet et al. (2024) moment-matching guidance, solved by `truncated_cg`.

    covariance: "joint" (all of V); "kappa": V restricted to the kappa block (coordinates
    n_params:), guidance on kappa only; "cross": the kappa block for the solve, and the theta
    rows from the cross block, (J w)_theta by one more jvp, where
    w = A^T (Sigma + sigma^2 A J A^T)^{-1} r lives on kappa. For a Tweedie Jacobian
    (J = Cov[x_0 | x_t] / sigma^2, symmetric) this is exactly the joint guidance, but it never
    differentiates the kappa outputs with respect to the theta inputs (the vjp path that blows
    up with trained networks).
    """
    sqrt_prec = jnp.sqrt(obs.precision)

    def one(x, sigma):
        d1 = lambda v: denoise_fn(v[None], sigma[None])[0]
        x0, jac = jax.linearize(d1, x)
        jac_t = jax.linear_transpose(jac, x)
        block = jnp.ones_like(x)
        if covariance != "joint":
            block = block.at[:n_params].set(0.0)
        resid = sqrt_prec * (obs.y - obs.forward(x0) - obs.offset)

        def matvec(u):  # (I + sigma^2 W A J A^T W) u, W = Sigma_n^{-1/2}
            v = jac(block * obs.adjoint(sqrt_prec * u)) * block
            return u + sigma**2 * sqrt_prec * obs.forward(v)

        u = truncated_cg(matvec, resid, cg_maxiter)
        w = block * obs.adjoint(sqrt_prec * u)
        g = jac_t(w)[0] * block
        if covariance == "cross":
            g = g + jac(w) * (1.0 - block)
        return g

    return jax.vmap(one)


def clip_guidance(guidance_fn, scale):
    """Scale each draw's guidance g (B, D) so that ||sigma^2 g|| <= scale sqrt(D) min(sigma, 1)."""

    def guidance(x, sigma):
        g = guidance_fn(x, sigma)
        bound = scale * jnp.sqrt(x.shape[-1]) * jnp.minimum(sigma, 1.0) / sigma**2
        norm = jnp.linalg.norm(g, axis=-1)
        return g * jnp.minimum(1.0, bound / jnp.maximum(norm, 1e-30))[:, None]

    return guidance
