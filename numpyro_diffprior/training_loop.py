"""The training loop: data sources, normaliser, data-parallel jitted updates, periodic
atomic checkpoints, exact resume, and a held-out denoising-loss table per sigma decade.

A data source is a plain function `sample_batch(rng_key, batch_size) -> (theta (B, P),
kappa (B, C, N, N))` in physical units: the on-the-fly simulator (default) or an in-memory
array set read from a dataset file written by `numpyro-diffprior simulate`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology.params import prior_mean_std
from numpyro_diffprior.diffusion.loss import weighted_errors
from numpyro_diffprior.diffusion.normalization import Normalizer, normalize
from numpyro_diffprior.diffusion.preconditioning import make_denoise_fn
from numpyro_diffprior.nets import NetworkConfig, count_params, make_network
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.sharding import (
    batch_sharding,
    make_mesh,
    replicate,
    replicated_sharding,
    shard_batch,
)
from numpyro_diffprior.strict_json import dumps_json
from numpyro_diffprior.training import TrainingConfig, batch_key, check_finite_loss, make_trainer

__all__ = ["simulator_source", "array_source", "pool_source", "dataset_source",
           "measure_normalizer", "heldout_loss_table", "format_loss_table", "run_steps",
           "train"]  # fmt: skip

SIGMA_DECADES = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


def simulator_source(preset, *, emulator=None):
    """On-the-fly log-normal simulations (`numpyro_diffprior.simulator.simulate`)."""
    from numpyro_diffprior.cosmology.emulator import load_emulator
    from numpyro_diffprior.simulator import simulate

    preset = get_preset(preset)
    emulator = load_emulator(preset) if emulator is None else emulator

    def sample_batch(rng_key, batch_size):
        return simulate(rng_key, preset, batch_size, emulator=emulator, batch_size=batch_size)

    return sample_batch


def pool_source(preset, num, rng_key, *, emulator=None):
    """Simulate `num` maps once (`simulate`, batches of 256) and draw batches from them."""
    from numpyro_diffprior.simulator import simulate

    preset = get_preset(preset)
    theta, kappa = simulate(rng_key, preset, num, emulator=emulator, batch_size=min(num, 256))
    return array_source(theta, kappa)


def array_source(theta, kappa):
    """Draw batches uniformly with replacement from arrays theta (M, P), kappa (M, C, N, N)."""
    theta, kappa = jnp.asarray(theta, jnp.float32), jnp.asarray(kappa, jnp.float32)
    if theta.shape[0] != kappa.shape[0] or theta.shape[0] == 0:
        raise ValueError(f"theta {theta.shape} and kappa {kappa.shape} disagree or are empty")

    def sample_batch(rng_key, batch_size):
        idx = jax.random.randint(rng_key, (batch_size,), 0, theta.shape[0])
        return theta[idx], kappa[idx]

    return sample_batch


def dataset_source(path, preset):
    """Load a dataset file (written by `simulate`) into memory -> (array_source, num_maps)."""
    from numpyro_diffprior.simulator.dataset import iterate_batches

    preset = get_preset(preset)
    thetas, kappas = [], []
    for theta, kappa in iterate_batches(path, 256, epochs=1, shuffle=False, drop_remainder=False):
        thetas.append(np.asarray(theta))
        kappas.append(np.asarray(kappa))
    theta, kappa = np.concatenate(thetas), np.concatenate(kappas)
    if theta.shape[1:] != (preset.n_params,) or kappa.shape[1:] != tuple(preset.map_shape):
        raise ValueError(
            f"dataset {path} holds theta {theta.shape[1:]} / kappa {kappa.shape[1:]}, preset "
            f"{preset.name!r} needs ({preset.n_params},) / {tuple(preset.map_shape)}"
        )
    return array_source(theta, kappa), theta.shape[0]


def measure_normalizer(sample_batch, preset, rng_key, *, num=512, batch_size=64) -> Normalizer:
    """theta: exact prior mean/std; kappa: per-bin pixel std over `num` maps."""
    preset = get_preset(preset)
    mean, std = prior_mean_std(preset.param_names)
    total, sq, n = jnp.zeros(preset.n_bins), jnp.zeros(preset.n_bins), 0
    for i in range(math.ceil(num / batch_size)):
        _, kappa = sample_batch(jax.random.fold_in(rng_key, i), batch_size)
        total = total + jnp.sum(kappa, axis=(0, 2, 3))
        sq = sq + jnp.sum(kappa**2, axis=(0, 2, 3))
        n += kappa.shape[0] * kappa.shape[2] * kappa.shape[3]
    kappa_std = jnp.sqrt(sq / n - (total / n) ** 2)
    return Normalizer(mean.astype(jnp.float32), std.astype(jnp.float32), kappa_std)


def heldout_loss_table(denoise_fn, x, n_params, rng_key, *, decades=SIGMA_DECADES, repeats=4):
    """EDM-weighted denoising errors on held-out x (M, D) with log sigma uniform in each
    decade -> list of dicts (sigma_lo, sigma_hi, loss_theta, loss_kappa)."""
    rows = []
    for j, (lo, hi) in enumerate(zip(decades[:-1], decades[1:], strict=True)):
        lt, lk = [], []
        for r in range(repeats):
            k1, k2 = jax.random.split(jax.random.fold_in(rng_key, 100 * j + r))
            u = jax.random.uniform(k1, (x.shape[0],))
            sigma = jnp.exp(jnp.log(lo) + u * (jnp.log(hi) - jnp.log(lo)))
            noise = jax.random.normal(k2, x.shape)
            a, b = weighted_errors(denoise_fn, x, sigma, noise, n_params)
            lt.append(float(jnp.mean(a)))
            lk.append(float(jnp.mean(b)))
        rows.append(dict(sigma_lo=lo, sigma_hi=hi, loss_theta=np.mean(lt), loss_kappa=np.mean(lk)))
    return rows


def format_loss_table(rows) -> str:
    head = ["| sigma range | loss theta | loss kappa |", "|---|---|---|"]
    row = "| [{sigma_lo:g}, {sigma_hi:g}) | {loss_theta:.4f} | {loss_kappa:.4f} |"
    return "\n".join(head + [row.format(**r) for r in rows])


def run_steps(update, state, sample_batch, data_key, batch_size, mesh, start, steps, *, log,
              bar, save, log_every, checkpoint_every, max_seconds=None):  # fmt: skip
    """Updates `start` .. `steps` - 1 on fresh batches `sample_batch(batch_key(data_key, step),
    batch_size)`, or until `max_seconds` of wall time have passed: a metrics line in `log`
    every `log_every` steps and at the end, `save(state)` every `checkpoint_every` steps (the
    caller saves the last). A non-finite loss at a logged or checkpointed step raises
    FloatingPointError before anything is saved. Returns the final state."""
    t0, ema_loss = time.perf_counter(), None
    for step in range(start, steps):
        batch = sample_batch(batch_key(data_key, step), batch_size)
        state, metrics = update(state, shard_batch(batch, mesh))
        out_of_time = max_seconds is not None and time.perf_counter() - t0 >= max_seconds
        last = step + 1 == steps or out_of_time  # the caller saves the last state
        log_now = (step + 1) % log_every == 0 or last
        checkpoint = checkpoint_every and (step + 1) % checkpoint_every == 0 and not last
        if log_now or checkpoint:
            check_finite_loss(metrics, step + 1)
        if log_now:
            m = {k: float(v) for k, v in metrics.items()}
            ema_loss = m["loss"] if ema_loss is None else 0.8 * ema_loss + 0.2 * m["loss"]
            m.update(step=step + 1, wall_s=time.perf_counter() - t0)
            log.write(dumps_json(m) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{ema_loss:.4f}", theta=f"{m['loss_theta']:.3f}")
        bar.update(1)
        if checkpoint:
            save(state)
        if out_of_time:
            break
    return state


def train(
    preset,
    out_dir,
    *,
    steps,
    sample_batch=None,
    network_config: NetworkConfig | None = None,
    training_config: TrainingConfig | None = None,
    seed=0,
    checkpoint_every=1000,
    resume=False,
    log_every=50,
    num_heldout=256,
    heldout_source=None,
    progress=True,
    devices=None,
    init_from=None,
    max_seconds=None,
):
    """Train (or resume) a joint denoiser; checkpoints go to `out_dir/checkpoint`.

    Runs until `state.step == steps` (so `--steps` is the absolute target when resuming), or
    for `max_seconds` of wall time (one process only; resuming continues). `heldout_source`
    (default `sample_batch`) draws the maps of the final held-out table. Returns the final
    Checkpoint. Writes `out_dir/metrics.jsonl` (every `log_every` steps), `heldout_loss.md`.

    `init_from` (a Checkpoint or a checkpoint directory, e.g. the shipped model) fine-tunes:
    its EMA weights start both the weights and the EMA, its network config and normaliser are
    kept, and the optimiser (`training_config`) starts fresh at step 0.

    On several hosts (`jax.distributed.initialize` first: `train --coordinator`; docs/training.md
    "Training on several hosts") every process runs this with the same arguments: the mesh
    spans all processes' devices, each process simulates the same global batch (keyed by the
    step) and keeps its devices' share, and only process 0 writes `out_dir` (checkpoints,
    metrics, held-out table) and returns the Checkpoint; the others return None.
    """
    from tqdm.auto import tqdm

    from numpyro_diffprior.checkpoints import Checkpoint, load_checkpoint, save_checkpoint

    preset = get_preset(preset)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint"
    provenance = {}
    if resume and (ckpt_path / "config.json").is_file():
        ckpt = load_checkpoint(ckpt_path, preset=preset)
        network_config, training_config = ckpt.network_config, ckpt.training_config
        normalizer, state = ckpt.normalizer, ckpt.train_state()
        provenance = ckpt.config.get("extra", {})
    else:
        if not resume and ckpt_path.exists():
            raise FileExistsError(f"{ckpt_path} exists; pass resume=True (--resume) to continue")
        network_config = network_config or NetworkConfig()
        if training_config is None:
            total = max(steps, 2)
            warmup = min(TrainingConfig().warmup_steps, total - 1)
            training_config = TrainingConfig(total_steps=total, warmup_steps=warmup)
        state = normalizer = init_params = None
        if init_from is not None:
            start_ckpt = (
                init_from if isinstance(init_from, Checkpoint) else load_checkpoint(init_from)
            )
            # a network carries over to another shift model of the same geometry (fine-tuning
            # onto new maps); anything else is a different network
            if not start_ckpt.preset.same_spectra(preset):
                raise ValueError(
                    f"init_from: checkpoint {start_ckpt.path} is for preset "
                    f"{start_ckpt.preset.name!r}, not {preset.name!r}"
                )
            network_config, normalizer = start_ckpt.network_config, start_ckpt.normalizer
            init_params = start_ckpt.ema_params
            provenance = {
                "init_from": str(start_ckpt.path),
                "init_from_step": start_ckpt.step,
                "init_from_extra": start_ckpt.config.get("extra", {}),
            }
    if sample_batch is None:
        sample_batch = simulator_source(preset)
    root = jax.random.key(seed)
    if normalizer is None:
        normalizer = measure_normalizer(sample_batch, preset, jax.random.fold_in(root, 7))
    init_fn, apply_fn = make_network(network_config, preset)
    trainer = make_trainer(init_fn, apply_fn, normalizer, preset, training_config)
    if state is None:
        state = trainer.init(root)
        if init_params is not None:  # the fresh optimiser state depends on shapes only
            state = state._replace(params=init_params, ema_params=init_params)

    mesh = make_mesh(devices)
    rep, bsh = replicated_sharding(mesh), batch_sharding(mesh)
    update = jax.jit(trainer.update, in_shardings=(rep, bsh), out_shardings=(rep, rep))
    data_key = state.rng_key  # never changes; a local copy also serves several hosts
    state = replicate(state, mesh)
    batch_size = training_config.batch_size
    save = lambda s: save_checkpoint(
        ckpt_path, s, preset=preset, normalizer=normalizer, network_config=network_config,
        training_config=training_config, extra=provenance or None,
    )  # fmt: skip
    main = jax.process_index() == 0  # on several hosts, process 0 writes out_dir
    if not main:
        save = lambda s: None
    out_dir.mkdir(parents=True, exist_ok=True)
    start = int(state.step)
    log = open(out_dir / "metrics.jsonl" if main else os.devnull, "a")
    bar = tqdm(total=steps, initial=start, disable=not (progress and main), desc="train",
               unit="step")  # fmt: skip
    try:
        state = run_steps(update, state, sample_batch, data_key, batch_size, mesh, start, steps,
                          log=log, bar=bar, save=save, log_every=log_every,
                          checkpoint_every=checkpoint_every, max_seconds=max_seconds)  # fmt: skip
    finally:
        bar.close()
        log.close()
    save(state)
    if not main:
        return None

    ckpt = load_checkpoint(ckpt_path, preset=preset)
    if not num_heldout:
        return ckpt
    # held-out table (fresh simulations from a key never used for training batches)
    held = (heldout_source or sample_batch)(jax.random.fold_in(root, 3), num_heldout)
    x = normalize(normalizer, *held)
    denoise = jax.jit(make_denoise_fn(apply_fn, ckpt.ema_params, preset.n_params, preset.map_shape))
    rows = heldout_loss_table(denoise, x, preset.n_params, jax.random.fold_in(root, 4))
    table = format_loss_table(rows)
    (out_dir / "heldout_loss.md").write_text(
        f"Held-out EDM-weighted denoising loss (EMA weights, step {ckpt.step}, "
        f"{num_heldout} maps, {count_params(ckpt.ema_params)} parameters)\n\n{table}\n"
    )
    if progress:
        print(table)
    return ckpt
