"""Training throughput of the joint EDM denoiser -> benchmarks/results/training.md.

For each preset: maps/s of one jitted `update` (batch B), XLA's FLOP count of the step
(`jit(update).lower(...).compile().cost_analysis()`), achieved GFLOP/s against this CPU's
fp32 peak (cores x 32 FLOP/cycle (2 AVX2 FMA units x 8 lanes x 2) x clock), and the share of
the step's FLOPs in convolutions (summed over `conv_general_dilated` in the step's jaxpr).

    python benchmarks/bench_training.py [--presets lsst-y10-coarse,lsst-y10-jade] [--steps 5]
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
from numpyro_diffprior.nets import NetworkConfig, count_params, make_network
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.training import TrainingConfig, make_trainer


def cpu_peak_gflops():
    mhz = [float(l.split(":")[1]) for l in open("/proc/cpuinfo") if l.startswith("cpu MHz")]
    cores = os.cpu_count() or 1
    return cores * 32 * (max(mhz) / 1e3 if mhz else 2.5), cores, (max(mhz) if mhz else None)


def conv_flops(jaxpr):
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            lhs, rhs = eqn.invars[0].aval, eqn.invars[1].aval
            out = eqn.outvars[0].aval
            dn = eqn.params["dimension_numbers"]
            k_spatial = np.prod([rhs.shape[d] for d in dn.rhs_spec[2:]])
            c_in = rhs.shape[dn.rhs_spec[1]]
            total += 2.0 * np.prod(out.shape) * c_in * k_spatial
            del lhs
        for v in eqn.params.values():
            if hasattr(v, "jaxpr"):
                total += conv_flops(v.jaxpr)
    return total


def bench(preset_name, batch_size, steps, network_config):
    preset = get_preset(preset_name)
    norm = Normalizer(
        jnp.zeros(preset.n_params), jnp.ones(preset.n_params), jnp.ones(preset.n_bins)
    )
    init_fn, apply_fn = make_network(network_config, preset)
    trainer = make_trainer(
        init_fn, apply_fn, norm, preset, TrainingConfig(batch_size=batch_size, total_steps=1000)
    )
    state = jax.jit(trainer.init)(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = (
        jnp.asarray(rng.standard_normal((batch_size, preset.n_params)), jnp.float32),
        jnp.asarray(rng.standard_normal((batch_size,) + preset.map_shape), jnp.float32),
    )
    t0 = time.perf_counter()
    compiled = jax.jit(trainer.update).lower(state, batch).compile()
    t_compile = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    flops = float(cost.get("flops", float("nan")))
    cflops = conv_flops(jax.make_jaxpr(trainer.update)(state, batch).jaxpr)
    state, m = compiled(state, batch)
    jax.block_until_ready(m)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, m = compiled(state, batch)
        jax.block_until_ready(m)
        times.append(time.perf_counter() - t0)
    t = float(np.median(times))
    return dict(
        preset=preset_name,
        params=count_params(state.params),
        batch=batch_size,
        compile_s=t_compile,
        step_s=t,
        maps_s=batch_size / t,
        gflop_step=flops / 1e9,
        gflops=flops / 1e9 / t,
        conv_share=cflops / flops,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="lsst-y10-coarse,lsst-y10-jade")
    ap.add_argument("--batch", default="32,8")
    ap.add_argument("--steps", default="5,2")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "training.md"))
    args = ap.parse_args()
    peak, cores, mhz = cpu_peak_gflops()
    rows = []
    for name, b, s in zip(
        args.presets.split(","), args.batch.split(","), args.steps.split(","), strict=True
    ):
        r = bench(name, int(b), int(s), NetworkConfig())
        print(r, flush=True)
        rows.append(r)
    load = os.getloadavg()
    lines = [
        "# Training throughput (default NetworkConfig, one jitted update incl. EMA + AdamW)",
        "",
        f"Device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {cores} cores at "
        f"{mhz} MHz; fp32 peak {peak:.0f} GFLOP/s (cores x 32 FLOP/cycle x clock). "
        f"Load average during the run: {load[0]:.1f} (shared machine), jax {jax.__version__}.",
        "",
        "| preset | params | batch | compile s | step s | maps/s | GFLOP/step | GFLOP/s | % peak "
        "| conv FLOP share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['params']:,} | {r['batch']} | {r['compile_s']:.0f} | "
            f"{r['step_s']:.3f} | {r['maps_s']:.1f} | {r['gflop_step']:.2f} | {r['gflops']:.1f} "
            f"| {100 * r['gflops'] / peak:.1f} | {100 * r['conv_share']:.0f}% |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
