"""Training the amortised (conditional) denoiser on fresh simulations:
`numpyro-diffprior train --conditional`.

Each step draws a batch of (theta, kappa) from the data source (the on-the-fly simulator by
default, `training_loop.simulator_source`), then for every map a noisy, masked shear
observation from the `ObservationRange` family (`amortized.simulate.draw_observations`: noise
0.5-2x the preset's pixel noise, masks none / holes / edges hiding 0-40 %, 10 % no data), and
takes one step of the EDM loss of the joint prior (`diffusion.loss.denoising_loss`, same
preconditioning, optimiser and EMA as `training`) with the conditional denoiser
D(x; sigma, features(observation)). Randomness is a pure function of (rng_key, step), so a
resumed run equals an uninterrupted one; checkpoints are atomic (`checkpoints`) and record
"conditional": true with the observation range.

`init_from` (a joint prior's checkpoint, e.g. the shipped model) starts from its EMA weights
with the observation path at zero (`amortized.denoiser.conditional_params`): at step 0 the model
is that prior.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import optax

from numpyro_diffprior.amortized.denoiser import (
    ConditionalNetworkDenoiser,
    conditional_network_config,
    conditional_params,
)
from numpyro_diffprior.amortized.simulate import ObservationRange, draw_observations
from numpyro_diffprior.diffusion.loss import denoising_loss
from numpyro_diffprior.diffusion.normalization import normalize
from numpyro_diffprior.nets import NetworkConfig, make_network
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.sharding import (
    batch_sharding,
    make_mesh,
    replicate,
    replicated_sharding,
)
from numpyro_diffprior.training import (
    Trainer,
    TrainingConfig,
    TrainState,
    ema_decay,
    make_optimizer,
    make_optimizer_schedule,
)
from numpyro_diffprior.training_loop import measure_normalizer, run_steps, simulator_source

__all__ = ["make_conditional_trainer", "train_conditional"]


def make_conditional_trainer(network_config, normalizer, preset, config: TrainingConfig,
                             obs_range: ObservationRange) -> Trainer:  # fmt: skip
    """-> Trainer(init, update) with update(state, (theta, kappa)) drawing the observations."""
    init_fn, _ = make_network(network_config, preset)
    denoiser = ConditionalNetworkDenoiser(network_config, preset, config.sigma_data)
    optimizer, schedule_fn = make_optimizer(config), make_optimizer_schedule(config)

    def init(rng_key):
        key_params, key_train = jax.random.split(rng_key)
        params = init_fn(key_params)
        return TrainState(jnp.zeros((), jnp.int32), params, params, optimizer.init(params),
                          key_train)  # fmt: skip

    def loss_fn(params, x, features, key):
        denoise = lambda xx, sigma: denoiser(params, xx, sigma, features)
        parts = denoising_loss(key, denoise, x, preset.n_params, P_mean=config.P_mean,
                               P_std=config.P_std, sigma_data=config.sigma_data,
                               theta_weight=config.theta_weight)  # fmt: skip
        return parts.total, parts

    def update(state: TrainState, batch):
        theta, kappa = batch
        key = jax.random.fold_in(jax.random.fold_in(state.rng_key, 2), state.step)
        k_obs, k_loss = jax.random.split(key)
        obs = draw_observations(k_obs, kappa, obs_range)
        features = denoiser.encode(None, obs, normalizer)
        x = normalize(normalizer, theta, kappa)
        grads, parts = jax.grad(loss_fn, has_aux=True)(state.params, x, features, k_loss)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        beta = ema_decay(step, config.ema_halflife, config.ema_rampup_ratio)
        ema = jax.tree_util.tree_map(lambda e, p: beta * e + (1 - beta) * p,
                                     state.ema_params, params)  # fmt: skip
        metrics = {"loss": parts.total, "loss_theta": parts.theta, "loss_kappa": parts.kappa,
                   "grad_norm": optax.tree.norm(grads),
                   "learning_rate": schedule_fn(state.step)}  # fmt: skip
        return TrainState(step, params, ema, opt_state, state.rng_key), metrics

    return Trainer(init, update)


def _start(preset, init_from, network_config):
    """(network config, normaliser, params or None, provenance) of a fresh run."""
    from numpyro_diffprior.checkpoints import Checkpoint, load_checkpoint

    if init_from is None:
        cfg = network_config or NetworkConfig()
        return conditional_network_config(cfg, preset.n_bins), None, None, {}
    ckpt = init_from if isinstance(init_from, Checkpoint) else load_checkpoint(init_from)
    if not ckpt.preset.same_spectra(preset):
        raise ValueError(
            f"init_from: checkpoint {ckpt.path} is for preset {ckpt.preset.name!r}, "
            f"not {preset.name!r}"
        )
    provenance = {"init_from": str(ckpt.path), "init_from_step": ckpt.step,
                  "init_from_conditional": bool(ckpt.config.get("conditional"))}  # fmt: skip
    if ckpt.config.get("conditional"):  # fine-tune a conditional model
        return ckpt.network_config, ckpt.normalizer, ckpt.ema_params, provenance
    cfg = conditional_network_config(ckpt.network_config, preset.n_bins)
    fresh = jax.eval_shape(make_network(cfg, preset)[0], jax.random.key(0))
    fresh = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), fresh)
    # the new weights (obs_in, obs_emb) are zero-initialised anyway: zeros are their init
    return cfg, ckpt.normalizer, conditional_params(ckpt.ema_params, fresh), provenance


def train_conditional(preset, out_dir, *, steps, sample_batch=None, network_config=None,
                      training_config=None, observation_range=None, seed=0,
                      checkpoint_every=1000, resume=False, log_every=50, progress=True,
                      init_from=None, devices=None, max_seconds=None):  # fmt: skip
    """Train (or resume) an amortised model; checkpoints go to `out_dir/checkpoint`.

    Runs until step `steps`; writes `out_dir/metrics.jsonl`. init_from: a joint prior's (or a
    conditional) Checkpoint or directory. observation_range: default
    `ObservationRange.for_preset(preset)`. `max_seconds`: as `training_loop.train`. Returns
    the final Checkpoint."""
    from tqdm.auto import tqdm

    from numpyro_diffprior.checkpoints import load_checkpoint, save_checkpoint

    preset = get_preset(preset)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint"
    state = params = None
    if resume and (ckpt_path / "config.json").is_file():
        ckpt = load_checkpoint(ckpt_path, preset=preset)
        if not ckpt.config.get("conditional"):
            raise ValueError(f"{ckpt_path} is not a conditional checkpoint; cannot resume it")
        network_config, training_config = ckpt.network_config, ckpt.training_config
        normalizer, state = ckpt.normalizer, ckpt.train_state()
        observation_range = ObservationRange.from_dict(ckpt.config["observation_range"])
        provenance = ckpt.config.get("extra", {})
    else:
        if ckpt_path.exists():
            raise FileExistsError(f"{ckpt_path} exists; pass resume=True (--resume) to continue")
        network_config, normalizer, params, provenance = _start(preset, init_from, network_config)
        if training_config is None:
            total = max(steps, 2)
            warmup = min(TrainingConfig().warmup_steps, total - 1)
            training_config = TrainingConfig(total_steps=total, warmup_steps=warmup)
    observation_range = observation_range or ObservationRange.for_preset(preset)
    sample_batch = sample_batch or simulator_source(preset)
    root = jax.random.key(seed)
    if normalizer is None:
        normalizer = measure_normalizer(sample_batch, preset, jax.random.fold_in(root, 7))
    trainer = make_conditional_trainer(network_config, normalizer, preset, training_config,
                                       observation_range)  # fmt: skip
    if state is None:
        state = trainer.init(root)
        if params is not None:  # the fresh optimiser state depends on shapes only
            state = state._replace(params=params, ema_params=params)
    mesh = make_mesh(devices)
    rep, bsh = replicated_sharding(mesh), batch_sharding(mesh)
    update = jax.jit(trainer.update, in_shardings=(rep, bsh), out_shardings=(rep, rep))
    data_key = state.rng_key  # never changes
    state = replicate(state, mesh)
    save = lambda s: save_checkpoint(
        ckpt_path, s, preset=preset, normalizer=normalizer, network_config=network_config,
        training_config=training_config, extra=provenance or None,
        observation_range=observation_range.to_dict(),
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    start = int(state.step)
    bar = tqdm(total=steps, initial=start, disable=not progress, desc="train --conditional",
               unit="step")  # fmt: skip
    with open(out_dir / "metrics.jsonl", "a") as log:
        try:
            state = run_steps(update, state, sample_batch, data_key, training_config.batch_size,
                              mesh, start, steps, log=log, bar=bar, save=save,
                              log_every=log_every, checkpoint_every=checkpoint_every,
                              max_seconds=max_seconds)  # fmt: skip
        finally:
            bar.close()
    save(state)
    return load_checkpoint(ckpt_path, preset=preset)
