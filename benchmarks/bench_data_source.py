"""What fresh simulations cost per training step -> benchmarks/results/data_source.md.

Side by side in one run, for one preset and batch size: the time to draw a batch from the
on-the-fly simulator (`training_loop.simulator_source`, the default: new theta and white noise
every batch), from a pool of simulated maps (`pool_source`, uniform draws with replacement) and
one jitted training update of the default network on that batch.

    python benchmarks/bench_data_source.py [--preset P] [--batch-size 128] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.diffusion.normalization import Normalizer
from numpyro_diffprior.nets import NetworkConfig, make_network
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.training import TrainingConfig, make_trainer
from numpyro_diffprior.training_loop import pool_source, simulator_source


def _best(fn, repeats):
    jax.block_until_ready(fn(0))  # compile
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(i + 1))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="lsst-y10-coarse")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--pool", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_source.md"))
    args = ap.parse_args(argv)
    preset = get_preset(args.preset)
    key = jax.random.key(0)
    fresh = simulator_source(preset)
    pool = pool_source(preset, args.pool, jax.random.fold_in(key, 1))
    b = args.batch_size

    t_fresh = _best(lambda i: fresh(jax.random.fold_in(key, 100 + i), b), args.repeats)
    t_pool = _best(lambda i: pool(jax.random.fold_in(key, 200 + i), b), args.repeats)

    norm = Normalizer(
        jnp.zeros(preset.n_params), jnp.ones(preset.n_params), jnp.ones(preset.n_bins)
    )
    init_fn, apply_fn = make_network(NetworkConfig(), preset)
    trainer = make_trainer(
        init_fn, apply_fn, norm, preset, TrainingConfig(batch_size=b, total_steps=1000)
    )
    state = jax.jit(trainer.init)(key)
    update = jax.jit(trainer.update)
    batch = fresh(jax.random.fold_in(key, 3), b)
    t_step = _best(lambda i: update(state, batch)[0].params, max(2, args.repeats // 2))

    load = os.getloadavg()[0]
    lines = [
        "# Fresh simulations against a pool of maps, per training step",
        "",
        f"Preset {preset.name}, batch {b}, default network; medians of {args.repeats} calls after "
        f"compilation, measured side by side in one run (load average {load:.1f}).",
        "",
        "| data source | s per batch | share of an update step |",
        "|---|---|---|",
        f"| fresh simulations (default) | {t_fresh:.4f} | {t_fresh / t_step:.1%} |",
        f"| pool of {args.pool} maps | {t_pool:.4f} | {t_pool / t_step:.1%} |",
        f"| one training update | {t_step:.3f} | 100% |",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
