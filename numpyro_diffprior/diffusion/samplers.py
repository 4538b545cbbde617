"""Samplers for the probability-flow ODE / reverse SDE of a variance-exploding diffusion,
driven by any `denoise_fn(x (B, D), sigma (B,)) -> x_hat (B, D)` (Karras et al. 2022).

- `edm_sampler`: Algorithm 2 of Karras et al. (Heun's 2nd-order method on the ODE
  dx/dsigma = (x - D(x; sigma)) / sigma, with optional stochastic churn S_churn), Eq. 5
  time steps. Every knob is a keyword argument at the paper's default.
- `dpmpp_2m_sampler`: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Alg. 2), a
  second-order multistep solver of the same ODE in log sigma with one denoiser call per step
  (Heun needs two), on the same time steps.
- `dpmpp_3m_sampler`: its third-order multistep form (DPM-Solver++(3M)): the same exponential
  integrator with D extrapolated by the quadratic through the last three denoiser outputs.
- `euler_maruyama_sampler`: the reverse SDE for sigma(t) = t,
  x <- x + (s_i^2 - s_{i+1}^2) score(x; s_i) + sqrt(s_i^2 - s_{i+1}^2) z.

Pure functions (lax.scan over steps); the caller jits (with `num`, `dim` and `num_steps`
static).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "edm_sigma_steps",
    "edm_sampler",
    "dpmpp_2m_sampler",
    "dpmpp_3m_sampler",
    "euler_maruyama_sampler",
    "sample_theta_given_kappa",
    "denoiser_calls",
]


def edm_sigma_steps(num_steps=32, *, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """Karras Eq. 5: sigma_i = (s_max^(1/rho) + i/(n-1) (s_min^(1/rho) - s_max^(1/rho)))^rho,
    followed by sigma_n = 0; shape (num_steps + 1,). rho = inf is the limit, equal steps in
    log sigma (the log-SNR-uniform schedule of Lu et al. 2022):
    sigma_i = s_max (s_min / s_max)^(i/(n-1))."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0 (inf: log-uniform steps), got {rho}")
    i = jnp.arange(num_steps, dtype=jnp.float32)
    frac = i / max(num_steps - 1, 1)
    if math.isinf(rho):
        t = sigma_max * (sigma_min / sigma_max) ** frac
    else:
        t = sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
        t = t**rho
    return jnp.concatenate([t, jnp.zeros(1, t.dtype)])


def denoiser_calls(sampler: str, num_steps: int) -> int:
    """Denoiser evaluations per draw: 2 num_steps - 1 for Heun ("ode", whose last step is
    Euler), num_steps for DPM-Solver++(2M) and (3M) ("dpmpp-2m", "dpmpp-3m") and Euler-Maruyama
    ("sde")."""
    return 2 * int(num_steps) - 1 if sampler == "ode" else int(num_steps)


def _initial(rng_key, num, dim, sigma_max, x_init):
    if x_init is not None:
        return x_init
    return sigma_max * jax.random.normal(rng_key, (num, dim))


def edm_sampler(
    rng_key,
    denoise_fn,
    num,
    dim,
    *,
    num_steps=32,
    sigma_min=0.002,
    sigma_max=80.0,
    rho=7.0,
    S_churn=0.0,
    S_min=0.0,
    S_max=float("inf"),
    S_noise=1.0,
    x_init=None,
):
    """Karras et al. (2022) Algorithm 2 -> x (num, dim) at sigma = 0.

    `x_init` (num, dim), if given, replaces the initial draw sigma_max * N(0, I).
    """
    key_init, key_churn = jax.random.split(rng_key)
    t_steps = edm_sigma_steps(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    x = _initial(key_init, num, dim, t_steps[0], x_init)
    gamma_max = min(S_churn / num_steps, 2**0.5 - 1)

    def step(x_cur, inputs):
        i, t_cur, t_next = inputs
        gamma = jnp.where((t_cur >= S_min) & (t_cur <= S_max), gamma_max, 0.0)
        t_hat = t_cur + gamma * t_cur
        eps = S_noise * jax.random.normal(jax.random.fold_in(key_churn, i), x_cur.shape)
        x_hat = x_cur + jnp.sqrt(jnp.maximum(t_hat**2 - t_cur**2, 0.0)) * eps
        ones = jnp.ones(x_cur.shape[:1], x_cur.dtype)
        d_cur = (x_hat - denoise_fn(x_hat, t_hat * ones)) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur

        def heun(x_next):
            t_safe = jnp.where(t_next > 0, t_next, 1.0)
            d_prime = (x_next - denoise_fn(x_next, t_safe * ones)) / t_safe
            return x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)

        x_next = jax.lax.cond(t_next > 0, heun, lambda x: x, x_next)
        return x_next, None

    steps = (jnp.arange(num_steps), t_steps[:-1], t_steps[1:])
    x, _ = jax.lax.scan(step, x, steps)
    return x


def dpmpp_2m_sampler(
    rng_key, denoise_fn, num, dim, *, num_steps=32, sigma_min=0.002, sigma_max=80.0, rho=7.0,
    x_init=None,
):  # fmt: skip
    """DPM-Solver++(2M) on the probability-flow ODE -> x (num, dim) at sigma = 0, with
    `num_steps` denoiser calls on the `edm_sigma_steps` ladder.

    With h_i = log(sigma_i / sigma_{i+1}) and D_i = D(x_i; sigma_i) (Lu et al. 2022, Alg. 2,
    for alpha = 1): x_{i+1} = (sigma_{i+1} / sigma_i) x_i + (1 - sigma_{i+1} / sigma_i) D',
    where D' = D_0 at the first step and otherwise the extrapolation
    D' = (1 + 1 / (2 r)) D_i - D_{i-1} / (2 r), r = h_{i-1} / h_i. The last step (to
    sigma = 0) is x = D(x; sigma_min). `x_init` as in `edm_sampler`.
    """
    t_steps = edm_sigma_steps(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    x = _initial(rng_key, num, dim, t_steps[0], x_init)
    ones = jnp.ones(x.shape[:1], x.dtype)

    def step(carry, inputs):
        x_cur, d_prev, h_prev = carry
        i, t_cur, t_next = inputs
        d_cur = denoise_fn(x_cur, t_cur * ones)
        h = jnp.log(t_cur / jnp.where(t_next > 0, t_next, 1.0))
        r = h_prev / jnp.where(h > 0, h, 1.0)
        weight = jnp.where(i > 0, 0.5 / jnp.where(r > 0, r, 1.0), 0.0)
        d_mix = (1.0 + weight) * d_cur - weight * d_prev
        ratio = t_next / t_cur
        x_next = jnp.where(t_next > 0, ratio * x_cur + (1.0 - ratio) * d_mix, d_cur)
        return (x_next, d_cur, h), None

    steps = (jnp.arange(num_steps), t_steps[:-1], t_steps[1:])
    (x, _, _), _ = jax.lax.scan(step, (x, jnp.zeros_like(x), jnp.zeros((), x.dtype)), steps)
    return x


def dpmpp_3m_sampler(
    rng_key, denoise_fn, num, dim, *, num_steps=32, sigma_min=0.002, sigma_max=80.0, rho=7.0,
    x_init=None,
):  # fmt: skip
    """DPM-Solver++(3M) on the probability-flow ODE -> x (num, dim) at sigma = 0, with
    `num_steps` denoiser calls on the `edm_sigma_steps` ladder.

    In lambda = -log sigma the ODE's exact solution over one step of length h is
    x_{i+1} = e^{-h} x_i + int_0^h e^{-(h - s)} D(lambda_i + s) ds (Lu et al. 2022, Eq. 9 for
    alpha = 1). With D replaced by its Taylor polynomial D_i + D' s + D'' s^2 / 2 the integrals
    are closed form: x_{i+1} = e^{-h} x_i + (1 - e^{-h}) D_i + (h - 1 + e^{-h}) D'
    + (h^2 / 2 - h + 1 - e^{-h}) D''. D' and D'' are those of the quadratic through the last
    three outputs (divided differences on the lambda grid): first order at the first step,
    second at the second, third from then on. The last step (to sigma = 0) is
    x = D(x; sigma_min). `x_init` as in `edm_sampler`.
    """
    t_steps = edm_sigma_steps(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    lam = -jnp.log(jnp.where(t_steps > 0, t_steps, 1.0))
    x = _initial(rng_key, num, dim, t_steps[0], x_init)
    ones = jnp.ones(x.shape[:1], x.dtype)

    def safe(v, ok):
        return jnp.where(ok, v, 1.0)

    def step(carry, inputs):
        x_cur, d_1, d_2, h_1, h_2 = carry  # the last two outputs and the steps between them
        i, t_cur, t_next, h = inputs
        d_cur = denoise_fn(x_cur, t_cur * ones)
        slope = jnp.where(i > 0, (d_cur - d_1) / safe(h_1, i > 0), 0.0)
        slope_1 = jnp.where(i > 1, (d_1 - d_2) / safe(h_2, i > 1), 0.0)
        curv = jnp.where(i > 1, (slope - slope_1) / safe(h_1 + h_2, i > 1), 0.0)  # D'' / 2
        e = jnp.exp(-h)
        x_next = (e * x_cur + (1.0 - e) * d_cur + (h - 1.0 + e) * (slope + curv * h_1)
                  + (h * h / 2 - h + 1.0 - e) * 2.0 * curv)  # fmt: skip
        x_next = jnp.where(t_next > 0, x_next, d_cur)
        return (x_next, d_cur, d_1, h, h_1), None

    steps = (jnp.arange(num_steps), t_steps[:-1], t_steps[1:], lam[1:] - lam[:-1])
    zeros, zero = jnp.zeros_like(x), jnp.zeros((), x.dtype)
    (x, *_), _ = jax.lax.scan(step, (x, zeros, zeros, zero, zero), steps)
    return x


def euler_maruyama_sampler(
    rng_key,
    denoise_fn,
    num,
    dim,
    *,
    num_steps=128,
    sigma_min=0.002,
    sigma_max=80.0,
    rho=7.0,
    denoise_last=True,
    x_init=None,
):
    """Reverse-SDE Euler-Maruyama on the Eq. 5 sigma ladder -> x (num, dim).

    With `denoise_last` the final state at sigma_min is replaced by D(x; sigma_min)
    (Tweedie mean), removing the residual sigma_min noise.
    """
    key_init, key_noise = jax.random.split(rng_key)
    t_steps = edm_sigma_steps(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    t_steps = t_steps[:-1]  # end at sigma_min
    x = _initial(key_init, num, dim, t_steps[0], x_init)

    def step(x_cur, inputs):
        i, t_cur, t_next = inputs
        ones = jnp.ones(x_cur.shape[:1], x_cur.dtype)
        score = (denoise_fn(x_cur, t_cur * ones) - x_cur) / t_cur**2
        dvar = t_cur**2 - t_next**2
        z = jax.random.normal(jax.random.fold_in(key_noise, i), x_cur.shape)
        return x_cur + dvar * score + jnp.sqrt(dvar) * z, None

    steps = (jnp.arange(num_steps - 1), t_steps[:-1], t_steps[1:])
    x, _ = jax.lax.scan(step, x, steps)
    if denoise_last:
        x = denoise_fn(x, t_steps[-1] * jnp.ones(x.shape[:1], x.dtype))
    return x


def sample_theta_given_kappa(
    rng_key, denoise_fn, x, n_params, *, num_steps=32, sigma_min=0.002, sigma_max=80.0, rho=7.0
):
    """theta ~ p(theta | kappa) from a joint denoiser, for each row of x (num, dim) -> x with
    its first `n_params` entries (theta) redrawn and kappa unchanged.

    Heun on the probability-flow ODE of theta alone while the kappa part of every denoiser
    input is replaced by its forward-noised version kappa + sigma eps (one eps per row): the
    "replacement" conditional sampler (Song et al. 2021, score-based SDEs, App. I.2). Used as a
    Gibbs step after a joint posterior sampler: since the likelihood sees only kappa,
    p(theta | kappa, y) = p(theta | kappa).
    """
    key_init, key_eps = jax.random.split(rng_key)
    kappa = x[:, n_params:]
    eps = jax.random.normal(key_eps, kappa.shape, kappa.dtype)

    def conditional_denoise(theta, sigma):
        joint = jnp.concatenate([theta, kappa + sigma[:, None] * eps], axis=1)
        return denoise_fn(joint, sigma)[:, :n_params]

    theta = edm_sampler(
        key_init,
        conditional_denoise,
        x.shape[0],
        n_params,
        num_steps=num_steps,
        sigma_min=sigma_min,
        sigma_max=sigma_max,
        rho=rho,
    )
    return jnp.concatenate([theta, kappa], axis=1)
