"""Training of the joint EDM denoiser: pure `init` / `update` over a NamedTuple state.

Optax AdamW (decoupled weight decay on kernels only) with global-norm clipping and a linear
warm-up + cosine decay of the learning rate; EMA of the weights with a half-life in steps and
EDM's ramp-up (Karras et al. 2022, App. F: ema_halflife, ema_rampup_ratio). Randomness is a
pure function of (state.rng_key, state.step): the data batch of step t uses
`batch_key(rng_key, t)` and the noise of step t `fold_in(noise_key, t)`, so a resumed run
equals an uninterrupted one. The loop lives in `numpyro_diffprior.training_loop`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from numpyro_diffprior.diffusion.loss import denoising_loss
from numpyro_diffprior.diffusion.normalization import normalize
from numpyro_diffprior.diffusion.preconditioning import make_denoise_fn

__all__ = [
    "TrainingConfig",
    "TrainState",
    "Trainer",
    "make_optimizer",
    "make_trainer",
    "batch_key",
    "ema_decay",
    "check_finite_loss",
    "make_optimizer_schedule",
]


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Optimisation and loss settings (saved in every checkpoint)."""

    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 200
    total_steps: int = 20000
    final_lr_ratio: float = 0.02
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    ema_halflife: float = 500.0  # steps
    ema_rampup_ratio: float = 0.1
    P_mean: float = -1.0
    P_std: float = 1.4
    sigma_data: float = 1.0
    theta_weight: float = 1.0

    def __post_init__(self):
        if self.batch_size < 1 or self.total_steps < 1 or self.learning_rate <= 0:
            raise ValueError("batch_size, total_steps and learning_rate must be positive")
        if self.warmup_steps < 0 or self.warmup_steps >= self.total_steps:
            raise ValueError(
                f"warmup_steps={self.warmup_steps} must be in [0, total_steps={self.total_steps})"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> TrainingConfig:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown TrainingConfig fields: {sorted(unknown)}")
        return cls(**d)


class TrainState(NamedTuple):
    step: jnp.ndarray  # int32 scalar, number of updates done
    params: dict
    ema_params: dict
    opt_state: optax.OptState
    rng_key: jnp.ndarray  # base key; never split in place


class Trainer(NamedTuple):
    init: callable
    update: callable


def make_optimizer(config: TrainingConfig) -> optax.GradientTransformation:
    schedule = make_optimizer_schedule(config)
    kernel_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, weight_decay=config.weight_decay, mask=kernel_mask),
    )


def batch_key(rng_key, step):
    """Key of the data batch of `step` (pure in (rng_key, step))."""
    return jax.random.fold_in(jax.random.fold_in(rng_key, 1), step)


def check_finite_loss(metrics, step: int) -> float:
    """The loss of `metrics` as a float; a FloatingPointError naming the step if it is NaN or
    infinite (the caller then stops before a checkpoint overwrites the last good one)."""
    loss = float(metrics["loss"])
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"the training loss is {loss} at step {step}: training stopped, and the last "
            "checkpoint is kept. Resume with a lower learning rate (--lr) or a smaller batch."
        )
    return loss


def ema_decay(step, halflife, rampup_ratio):
    """beta = 0.5^(1/h) with h = min(halflife, rampup_ratio * step) (EDM ramp-up), in steps."""
    h = jnp.minimum(halflife, rampup_ratio * step) if rampup_ratio else halflife
    return jnp.where(h > 0, 0.5 ** (1.0 / jnp.maximum(h, 1e-8)), 0.0)


def make_trainer(init_fn, apply_fn, normalizer, preset, config: TrainingConfig) -> Trainer:
    """-> Trainer(init, update).

    init(rng_key) -> TrainState;
    update(state, batch) -> (state, metrics), batch = (theta (B, P), kappa (B, C, N, N)) in
    physical units; metrics: loss, loss_theta, loss_kappa, grad_norm, learning_rate.
    """
    optimizer = make_optimizer(config)
    n_params, map_shape = preset.n_params, tuple(preset.map_shape)
    schedule_fn = make_optimizer_schedule(config)

    def init(rng_key):
        key_params, key_train = jax.random.split(rng_key)
        params = init_fn(key_params)
        return TrainState(
            jnp.zeros((), jnp.int32), params, params, optimizer.init(params), key_train
        )

    def loss_fn(params, x, key):
        denoise_fn = make_denoise_fn(
            apply_fn, params, n_params, map_shape, sigma_data=config.sigma_data
        )
        parts = denoising_loss(
            key,
            denoise_fn,
            x,
            n_params,
            P_mean=config.P_mean,
            P_std=config.P_std,
            sigma_data=config.sigma_data,
            theta_weight=config.theta_weight,
        )
        return parts.total, parts

    def update(state: TrainState, batch):
        theta, kappa = batch
        x = normalize(normalizer, theta, kappa)
        key = jax.random.fold_in(jax.random.fold_in(state.rng_key, 2), state.step)
        grads, parts = jax.grad(loss_fn, has_aux=True)(state.params, x, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        beta = ema_decay(step, config.ema_halflife, config.ema_rampup_ratio)
        ema = jax.tree_util.tree_map(
            lambda e, p: beta * e + (1 - beta) * p, state.ema_params, params
        )
        metrics = {
            "loss": parts.total,
            "loss_theta": parts.theta,
            "loss_kappa": parts.kappa,
            "grad_norm": optax.tree.norm(grads),
            "learning_rate": schedule_fn(state.step),
        }
        return TrainState(step, params, ema, opt_state, state.rng_key), metrics

    return Trainer(init, update)


def make_optimizer_schedule(config: TrainingConfig):
    return optax.warmup_cosine_decay_schedule(
        0.0,
        config.learning_rate,
        config.warmup_steps,
        config.total_steps,
        config.learning_rate * config.final_lr_ratio,
    )
