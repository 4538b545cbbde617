"""BlackJAX variant of the NUTS field-level baseline: window adaptation + NUTS.

The NumPyro model is turned into a potential with `numpyro.infer.util.initialize_model`;
BlackJAX's Stan-style window adaptation (step size by dual averaging, diagonal mass matrix from
windowed variances; Hoffman & Gelman 2014, Stan manual) tunes each chain, then `blackjax.nuts`
draws. Same output layout as `infer.nuts.nuts_baseline`.
"""

from __future__ import annotations

import time

import blackjax
import jax
import numpy as np
from blackjax.adaptation.base import get_filter_adapt_info_fn
from numpyro.infer.util import initialize_model

from numpyro_diffprior.infer.nuts import baseline_inference_data, convergence_summary
from numpyro_diffprior.presets import get_preset

__all__ = ["nuts_blackjax"]


def nuts_blackjax(
    rng_key,
    *,
    preset="lsst-y10-coarse",
    shear_obs,
    mask=None,
    noise_std=None,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    target_accept_prob: float = 0.8,
    max_num_doublings: int = 10,
    truth: dict | None = None,
    model=None,
    emulator=None,
):
    """NUTS with window adaptation (BlackJAX) on `lensing_model` (or `model`) given `shear_obs`.

    Chains are vmapped; warmup and sampling are each one jitted `lax.scan`. sample_stats:
    `lp` (log joint density in unconstrained space), `acceptance_rate`, `n_steps`,
    `tree_depth`, `diverging`, `step_size`.
    """
    preset = get_preset(preset)
    shear_obs = np.asarray(shear_obs, dtype=np.float32)
    if shear_obs.shape != preset.shear_shape:
        raise ValueError(
            f"shear_obs must have shape {preset.shear_shape} for preset {preset.name!r}, "
            f"got {shear_obs.shape}"
        )
    if num_warmup < 1 or num_samples < 1 or num_chains < 1:
        raise ValueError("num_warmup, num_samples and num_chains must be >= 1")
    if model is None:
        from numpyro_diffprior.simulator.model import lensing_model as model
    kwargs = dict(
        preset=preset, shear_obs=shear_obs, mask=mask, noise_std=noise_std, emulator=emulator
    )
    init_key, warm_key, sample_key = jax.random.split(rng_key, 3)
    info = initialize_model(
        jax.random.split(init_key, num_chains), model, model_kwargs=kwargs, dynamic_args=False
    )
    logdensity_fn = lambda position: -info.potential_fn(position)
    positions = info.param_info.z

    def warmup_one(key, position):
        adapt = blackjax.window_adaptation(
            blackjax.nuts,
            logdensity_fn,
            target_acceptance_rate=target_accept_prob,
            adaptation_info_fn=get_filter_adapt_info_fn(),  # keep no per-step warmup history
            max_num_doublings=max_num_doublings,
        )
        (state, params), _ = adapt.run(key, position, num_steps=num_warmup)
        return state, params

    def sample_one(key, state, params):
        kernel = blackjax.nuts(
            logdensity_fn,
            step_size=params["step_size"],
            inverse_mass_matrix=params["inverse_mass_matrix"],
            max_num_doublings=max_num_doublings,
        )

        def step(state, key):
            state, info_ = kernel.step(key, state)
            stats = (
                state.logdensity,
                info_.acceptance_rate,
                info_.num_integration_steps,
                info_.is_divergent,
            )
            return state, (info.postprocess_fn(state.position), stats)

        return jax.lax.scan(step, state, jax.random.split(key, num_samples))[1]

    start = time.perf_counter()
    states, params = jax.jit(jax.vmap(warmup_one))(
        jax.random.split(warm_key, num_chains), positions
    )
    jax.block_until_ready(states)
    warmup_time = time.perf_counter() - start
    samples, (lp, acc, n_steps, div) = jax.jit(jax.vmap(sample_one))(
        jax.random.split(sample_key, num_chains), states, params
    )
    jax.block_until_ready(samples)
    total = time.perf_counter() - start
    theta, kappa = np.asarray(samples["theta"]), np.asarray(samples["kappa"])
    n_steps = np.asarray(n_steps)
    stats = {
        "lp": np.asarray(lp),
        "acceptance_rate": np.asarray(acc),
        "n_steps": n_steps,
        "tree_depth": np.ceil(np.log2(n_steps + 1.0)).astype(np.int64),
        "diverging": np.asarray(div),
        "step_size": np.broadcast_to(np.asarray(params["step_size"])[:, None], n_steps.shape),
    }
    summary = convergence_summary(theta)
    sampling = total - warmup_time
    attrs = {
        "preset": preset.name,
        "method": "nuts_blackjax",
        "num_warmup": int(num_warmup),
        "num_samples": int(num_samples),
        "num_chains": int(num_chains),
        "wall_time_s": total,
        "warmup_time_s": warmup_time,
        "sampling_time_s": sampling,
        "time_per_gradient_s": sampling / max(float(np.sum(np.max(n_steps, axis=0))), 1.0),
        "mean_tree_depth": float(np.mean(stats["tree_depth"])),
        "num_divergent": int(np.sum(stats["diverging"])),
        **summary,
        "time_per_effective_sample_s": sampling / max(summary["ess_min"], 1e-12),
    }
    return baseline_inference_data(preset, theta, kappa, shear_obs, stats, attrs, truth, mask)
