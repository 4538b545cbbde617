"""The reverse diffusion of a posterior: the posterior denoiser D + sigma^2 guidance driving
the sampler of Karras et al. (2022), Heun's method on the probability-flow ODE (`sampler="ode"`)
or Euler-Maruyama on the reverse SDE (`sampler="sde"`), optionally followed at each level by
unadjusted Langevin corrector steps of size corrector_step_size * sigma^2 (Song et al. 2021,
predictor-corrector).

A pure function of (denoise_fn, guidance_fn); `infer.posterior.DiffusionPosteriorSampler` builds
both from a NumPyro model and jits it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from numpyro_diffprior.diffusion.samplers import edm_sigma_steps

__all__ = ["guided_reverse_diffusion"]


def guided_reverse_diffusion(
    rng_key,
    denoise_fn,
    guidance_fn,
    num,
    dim,
    *,
    num_steps=64,
    sigma_min=0.002,
    sigma_max=80.0,
    rho=7.0,
    sampler="ode",
    num_corrector_steps=0,
    corrector_step_size=0.1,
    correction_fn=None,
    x_init=None,
    step_callback=None,
):
    """Reverse diffusion with the posterior denoiser D + sigma^2 guidance -> x_n (num, dim).

    `x_init` (num, dim), if given, replaces the initial draw sigma_max * N(0, I).
    `step_callback(i)`, if given, is called on the host after each step (a progress bar).

    `correction_fn(x, sigma) -> dx`, if given, is evaluated at each step's start (x_i, sigma_i)
    and added to the step's result (DPS, Chung et al. 2023 Algorithm 1).
    """
    if sampler not in ("ode", "sde"):
        raise ValueError(f"sampler must be 'ode' or 'sde', got {sampler!r}")
    t_steps = edm_sigma_steps(num_steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    key_init, key_loop = jax.random.split(rng_key)
    x = t_steps[0] * jax.random.normal(key_init, (num, dim)) if x_init is None else x_init

    def posterior_denoise(x, t):
        sig = t * jnp.ones((num,), x.dtype)
        return denoise_fn(x, sig) + t**2 * guidance_fn(x, sig)

    def corrector(x, t, key):
        def body(k, x):
            eps = corrector_step_size * t**2
            score = (posterior_denoise(x, t) - x) / t**2
            z = jax.random.normal(jax.random.fold_in(key, k), x.shape)
            return x + eps * score + jnp.sqrt(2 * eps) * z

        return jax.lax.fori_loop(0, num_corrector_steps, body, x)

    def step(x, inputs):
        i, t_cur, t_next = inputs
        key = jax.random.fold_in(key_loop, i)
        d_cur = (x - posterior_denoise(x, t_cur)) / t_cur
        if sampler == "ode":
            x_next = x + (t_next - t_cur) * d_cur

            def heun(x_next):
                t_safe = jnp.where(t_next > 0, t_next, 1.0)
                d_next = (x_next - posterior_denoise(x_next, t_safe)) / t_safe
                return x + (t_next - t_cur) * 0.5 * (d_cur + d_next)

            x_next = jax.lax.cond(t_next > 0, heun, lambda v: v, x_next)
        else:
            dvar = t_cur**2 - t_next**2
            z = jax.random.normal(key, x.shape)
            x_next = x - dvar / t_cur * d_cur + jnp.sqrt(dvar) * z * (t_next > 0)
        if correction_fn is not None:
            x_next = x_next + correction_fn(x, t_cur * jnp.ones((num,), x.dtype))
        if num_corrector_steps:
            t_safe = jnp.where(t_next > 0, t_next, 1.0)
            x_corr = corrector(x_next, t_safe, jax.random.fold_in(key, 1))
            x_next = jnp.where(t_next > 0, x_corr, x_next)
        if step_callback is not None:
            jax.debug.callback(step_callback, i)
        return x_next, None

    x, _ = jax.lax.scan(step, x, (jnp.arange(num_steps), t_steps[:-1], t_steps[1:]))
    return x
