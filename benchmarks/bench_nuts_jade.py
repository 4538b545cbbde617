"""Benchmark: the NUTS field-level baseline at 128 pixels within a wall-clock budget.

Usage: python benchmarks/bench_nuts_jade.py [--preset lsst-y10-jade] [--budget-s 6000]
       [--warmup 200] [--samples 5000] [--chains 1] [--max-tree-depth 8] [--segment 1]
       [--workdir ~/runs/nuts-jade] [--out benchmarks/results/nuts_lsst-y10-jade.md] [--seed 0]

On one simulated fiducial observation (saved as <workdir>/obs.npz, so that
`numpyro-diffprior baseline --obs <workdir>/obs.npz` runs the same posterior), it measures
(1) the time of one compiled value-and-gradient of the model's potential (one chain), and
(2) a NUTS run in segments of `--segment` iterations (`infer.nuts_segments`, resumable from
<workdir>/checkpoint: rerun the same command to continue a killed run): per iteration the
leapfrog steps, step size and divergences (<workdir>/iterations.csv), and, after sampling, the
min ESS over theta and the ESS per gradient. The run stops when its next segment would exceed
the budget (counted from this run's start, warmup included), or after --samples draws.
After every segment <workdir>/progress.json and the markdown report (--out) are rewritten, so a
killed run still leaves its numbers. The report projects the wall time of a converged
reference (JADE: 10 chains x 3,500 iterations) and of ESS 100 / 1000 from these numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import time

import jax
import numpy as np
from numpyro.infer import init_to_median
from numpyro.infer.util import constrain_fn

from numpyro_diffprior.atomic import atomic_write
from numpyro_diffprior.infer.mcmc_checkpoint import observation_hash, open_checkpoint
from numpyro_diffprior.infer.nuts_segments import EXTRA_FIELDS, run_nuts_segments, sample_stats
from numpyro_diffprior.observations import save_observation, simulate_observation
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.runtime.model_init import initial_params, model_potential
from numpyro_diffprior.simulator.model import lensing_model

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from nuts_jade_report import report  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "nuts_lsst-y10-jade.md"


def time_gradient(model_kwargs, init_key, repeat: int):
    """(compile s, ms per value-and-gradient, dimension) of the potential at the initial point."""
    info = initial_params(init_key, lensing_model, model_kwargs, init_to_median(num_samples=15))
    fn = jax.jit(jax.value_and_grad(model_potential(lensing_model, model_kwargs)))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(info.z))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(info.z))
        times.append(time.perf_counter() - t0)
    dim = sum(int(np.size(v)) for v in jax.tree.leaves(info.z))
    return compile_s, 1e3 * np.median(times), 1e3 * np.min(times), dim


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lsst-y10-jade")
    parser.add_argument("--budget-s", type=float, default=6000.0, help="wall-clock budget")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--samples", type=int, default=5000, help="at most this many draws")
    parser.add_argument("--chains", type=int, default=1)
    parser.add_argument("--max-tree-depth", type=int, default=8)
    parser.add_argument("--segment", type=int, default=1, help="iterations per segment")
    parser.add_argument("--grad-repeat", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=os.path.expanduser("~/runs/nuts-jade"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    start = time.time()
    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    preset = get_preset(args.preset)
    obs = simulate_observation(jax.random.key(args.seed), preset, theta="fiducial")
    obs_path = workdir / "obs.npz"
    if not obs_path.exists():
        save_observation(
            obs_path,
            obs["shear"],
            preset=preset,
            theta_true=obs["theta_true"],
            kappa_true=obs["kappa_true"],
        )
    kw = dict(
        preset=preset, shear_obs=np.asarray(obs["shear"]), mask=None, noise_std=None, emulator=None
    )
    run = {
        "preset": preset.name,
        "chains": args.chains,
        "num_warmup": args.warmup,
        "max_tree_depth": args.max_tree_depth,
        "budget_s": args.budget_s,
        "seed": args.seed,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{jax.devices()[0].platform}, jax {jax.__version__}",
        "command": " ".join(sys.argv),
        "theta_true": np.asarray(obs["theta_true"]).tolist(),
        "param_names": list(preset.param_names),
    }
    progress_path = workdir / "progress.json"
    prior = json.loads(progress_path.read_text()) if progress_path.exists() else {}
    if "grad_ms" in prior:  # a resumed run keeps its first measurement
        grad = {k: prior[k] for k in ("grad_compile_s", "grad_ms", "grad_ms_min", "dim")}
    else:
        c, med, low, dim = time_gradient(kw, jax.random.key(args.seed + 2), args.grad_repeat)
        grad = {"grad_compile_s": c, "grad_ms": med, "grad_ms_min": low, "dim": dim}
    run.update(grad, loadavg_start=os.getloadavg()[0])
    print(
        f"value+grad: {grad['grad_ms']:.1f} ms (min {grad['grad_ms_min']:.1f}, compile "
        f"{grad['grad_compile_s']:.1f} s), {grad['dim']} dimensions",
        flush=True,
    )
    theta_of = jax.jit(jax.vmap(lambda p: constrain_fn(lensing_model, (), kw, p, True)["theta"]))

    def to_theta(z):  # unconstrained draws (chain, draw, ...) -> theta (chain, draw, P)
        lead = jax.tree.leaves(z)[0].shape[:2]
        flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), z)
        return np.asarray(theta_of(flat)).reshape(lead + (-1,))

    settings = dict(
        preset=preset.name,
        observation=observation_hash(kw["shear_obs"]),
        seed=args.seed,
        chains=args.chains,
        warmup=args.warmup,
        max_tree_depth=args.max_tree_depth,
    )
    open_checkpoint(workdir / "checkpoint", settings)
    theta_draws, last = [], {"t": time.time(), "iteration": None}

    def write(fields, warmup_time, sampling_time, done: bool) -> None:
        stats = sample_stats(fields, "sequential")[0]
        theta = np.concatenate(theta_draws, axis=1) if theta_draws else None
        data = dict(
            run,
            elapsed_s=time.time() - start,
            warmup_time_s=warmup_time,
            sampling_time_s=sampling_time,
            finished=done,
            loadavg=os.getloadavg(),
            n_steps=stats["n_steps"].tolist(),
            step_size=stats["step_size"].tolist(),
            diverging=stats["diverging"].astype(int).tolist(),
            accept=stats["acceptance_rate"].tolist(),
            theta=None if theta is None else theta.tolist(),
        )
        atomic_write(progress_path, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(data)))
        pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, lambda tmp: pathlib.Path(tmp).write_text(report(data)))

    def on_segment(info):
        fields, i, now = info["fields"], info["iteration"], time.time()
        for z in info["draws"][len(theta_draws) :]:  # also those of an earlier run
            theta_draws.append(to_theta(z))
        first = i - args.segment if last["iteration"] is None else last["iteration"]
        steps = np.asarray(fields["num_steps"])[:, max(first, 0) : i]
        seconds = now - last["t"]
        line = {
            "iteration": i,
            "phase": "warmup" if i <= args.warmup else "sampling",
            "segment_s": round(seconds, 2),
            "n_steps": steps.ravel().tolist(),
            "step_size": float(np.mean(np.asarray(fields["adapt_state.step_size"])[:, i - 1])),
            "divergent": int(np.sum(np.asarray(fields["diverging"]))),
            "ms_per_grad": round(1e3 * seconds / max(int(steps.sum()), 1), 1),
            "load": round(os.getloadavg()[0], 2),
            "elapsed_s": round(now - start, 1),
        }
        print(json.dumps(line), flush=True)
        with open(workdir / "iterations.csv", "a") as f:
            f.write(
                f"{i},{line['segment_s']},{line['elapsed_s']},{line['step_size']:.5g},"
                + ";".join(str(int(n)) for n in steps.ravel())
                + "\n"
            )
        write(fields, info["warmup_time"], info["sampling_time"], done=False)
        last.update(t=now, iteration=i)
        return now + seconds > start + args.budget_s  # the next segment would overrun

    kernel = dict(
        init_strategy=init_to_median(num_samples=15),
        target_accept_prob=0.8,
        max_tree_depth=args.max_tree_depth,
        dense_mass=False,
    )
    key = jax.random.key(args.seed + 1)
    result = run_nuts_segments(
        key if args.chains == 1 else jax.random.split(key, args.chains),
        args.chains,
        False,
        model=lensing_model,
        kernel_kwargs=kernel,
        num_warmup=args.warmup,
        num_samples=args.samples,
        chain_method="sequential",
        model_kwargs=kw,
        checkpoint=workdir / "checkpoint",
        every=args.segment,
        on_segment=on_segment,
    )
    theta_draws[:] = [] if result["theta"] is None else [result["theta"]]
    fields = {
        k: np.concatenate([result["warmup_stats"][v], result["stats"][v]], axis=1)
        for k, v in EXTRA_FIELDS.items()
    }
    fields["potential_energy"] = -fields["potential_energy"]  # sample_stats flips it back
    write(fields, result["warmup_time"], result["sampling_time"], done=True)
    print(pathlib.Path(args.out).read_text())


if __name__ == "__main__":
    main()
