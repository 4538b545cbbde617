"""Benchmark: cost of the NUTS field-level baseline on one simulated fiducial observation.

Usage: python benchmarks/bench_nuts.py [--preset lsst-y10-coarse] [--warmup 200] [--samples 200]
       [--chains 2] [--max-tree-depth 10] [--emulator FILE] [--seed 0]
Writes benchmarks/results/nuts.md.

Measures (1) the time of one jitted value-and-gradient of the model's potential (single chain
and two chains vmapped), (2) a NUTS run: warmup/sampling wall time, mean tree depth, step size,
divergences, max R-hat, min ESS over theta and the sampling time per effective sample.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import initialize_model

from numpyro_diffprior.infer.nuts import nuts_baseline
from numpyro_diffprior.observations import simulate_observation
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.model import lensing_model

RESULTS = pathlib.Path(__file__).parent / "results" / "nuts.md"


def time_gradient(preset, shear, emulator, repeat=50):
    """ms per value-and-gradient of the potential: (single chain, two chains vmapped)."""
    kwargs = dict(preset=preset, shear_obs=shear, emulator=emulator)
    info = initialize_model(
        jax.random.key(0), lensing_model, model_kwargs=kwargs, dynamic_args=False
    )
    z = info.param_info.z
    out = []
    for fn, arg in (
        (jax.jit(jax.value_and_grad(info.potential_fn)), z),
        (
            jax.jit(jax.vmap(jax.value_and_grad(info.potential_fn))),
            jax.tree.map(lambda a: jnp.stack([a, a]), z),
        ),
    ):
        jax.block_until_ready(fn(arg))
        t0 = time.perf_counter()
        for _ in range(repeat):
            res = fn(arg)
        jax.block_until_ready(res)
        out.append((time.perf_counter() - t0) / repeat * 1e3)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lsst-y10-coarse")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--max-tree-depth", type=int, default=10)
    parser.add_argument("--emulator", default=None, help="emulator .npz (default: shipped)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    if args.emulator:
        from numpyro_diffprior.cosmology.emulator import load_emulator_file

        emulator = load_emulator_file(args.emulator, preset=preset.name)
    else:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        emulator = load_emulator(preset)
    obs = simulate_observation(
        jax.random.key(args.seed), preset, theta="fiducial", emulator=emulator
    )
    ms_single, ms_pair = time_gradient(preset, obs["shear"], emulator)
    idata = nuts_baseline(
        jax.random.key(args.seed + 1),
        preset=preset,
        shear_obs=obs["shear"],
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        max_tree_depth=args.max_tree_depth,
        emulator=emulator,
        truth={"theta": obs["theta_true"], "kappa": obs["kappa_true"]},
    )
    a = idata.posterior.attrs
    theta = idata.posterior["theta"].values
    rows = [
        ("preset", preset.name),
        ("machine", f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}"),
        ("value+grad, 1 chain (ms)", f"{ms_single:.2f}"),
        ("value+grad, 2 chains vmapped (ms)", f"{ms_pair:.2f}"),
        ("chains x warmup + samples", f"{args.chains} x {args.warmup} + {args.samples}"),
        ("max tree depth", args.max_tree_depth),
        ("warmup wall time (s, incl. compile)", f"{a['warmup_time_s']:.1f}"),
        ("sampling wall time (s)", f"{a['sampling_time_s']:.1f}"),
        ("time per gradient in sampling (ms)", f"{a['time_per_gradient_s'] * 1e3:.2f}"),
        ("mean tree depth", f"{a['mean_tree_depth']:.2f}"),
        ("mean step size", f"{float(idata.sample_stats['step_size'].mean()):.4g}"),
        ("divergences", a["num_divergent"]),
        ("max R-hat (theta)", f"{a['rhat_max']:.3f}"),
        ("min ESS (theta)", f"{a['ess_min']:.1f}"),
        ("sampling time per effective sample (s)", f"{a['time_per_effective_sample_s']:.2f}"),
        ("theta mean", np.array2string(theta.mean((0, 1)), precision=4)),
        ("theta std", np.array2string(theta.std((0, 1)), precision=4)),
        ("theta truth", np.array2string(obs["theta_true"], precision=4)),
    ]
    text = "# NUTS field-level baseline cost\n\n| quantity | value |\n|---|---|\n"
    text += "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
