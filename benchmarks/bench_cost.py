"""Benchmark: cost per independent posterior draw, diffusion sampler vs NUTS, side by side.

Usage: python benchmarks/bench_cost.py [--draws 40] [--chains 4] [--warmup 120] [--samples 120]
       [--chain-method auto] [--workers auto] [--seed 0] [--amortized-model DIR]
       [--amortized-draws 200] [--amortized-steps 32] [--amortized-solver ode|dpmpp-2m|dpmpp-3m]
       [--skip-diffusion] [--out benchmarks/results/cost.md]
Writes benchmarks/results/cost.md.

On one simulated fiducial observation of the default preset, in one run:
(1) the diffusion posterior sampler with the demo's settings (`demo.FULL`, shipped model): the
    same batch of draws twice, so that the second run is the compiled cost; its draws are
    independent, so time per independent draw = time / draws; and, as NUTS's chains do on a
    multi-core CPU, the same number of draws split over one worker process per core (each
    runs its share twice; the compiled time is the slowest worker's second run);
(2) NUTS on the explicit log-normal model (the demo's baseline settings): time per effective
    sample = time / min ESS over theta, both for the sampling phase alone and for the whole
    run (warmup and compilation included).
(3) with a conditional model (`--amortized-model DIR`, or the shipped one where it exists), the
    amortised sampler: `--amortized-draws` draws in one batch per CPU core computed side by side
    (`IIDSampler(num_threads="auto")`, as in the demo), twice (the first run includes
    compilation); time per draw against NUTS's time per effective sample.
The ratio of the two is the issue's cost target (NUTS time per effective sample >= 100x the
diffusion time per draw; >= 10x for the amortised sampler on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time

import jax
import numpy as np

from numpyro_diffprior.demo import FULL, diffusion_sampler, nuts_reference
from numpyro_diffprior.infer.amortized import SOLVER_NAMES
from numpyro_diffprior.observations import simulate_observation
from numpyro_diffprior.prior import DiffusionPrior
from numpyro_diffprior.runtime.processes import imap_in_processes, resolve_num_workers

RESULTS = pathlib.Path(__file__).parent / "results" / "cost.md"


def time_diffusion(prior, shear, draws, seed):
    """(first run s, incl. compilation; second run s; theta draws of the second run)."""
    settings = {**FULL, "diffusion_draws": draws, "sampler_workers": 1}  # this process only
    return time_twice(diffusion_sampler(settings, progress_bar=False), prior, shear, seed)


def time_twice(runner, prior, shear, seed):
    """Run an `IIDSampler` twice on `shear` -> (first s, second s, theta of the second run)."""
    times = []
    for k in range(2):
        t0 = time.perf_counter()
        runner.run(jax.random.key(seed + k), prior=prior, shear_obs=shear)
        jax.block_until_ready(runner.get_samples())
        times.append(time.perf_counter() - t0)
    return times[0], times[1], np.asarray(runner.get_samples()["theta"])


class TimedDiffusion:
    """Runs `time_diffusion` in a worker on the preset's shipped prior -> (first, second) s."""

    def __init__(self, preset, shear, draws):
        self.preset, self.shear, self.draws = preset, np.asarray(shear), draws

    def __call__(self, seed):
        prior = DiffusionPrior.from_pretrained(self.preset)
        return time_diffusion(prior, self.shear, self.draws, seed)[:2]


def time_diffusion_processes(preset, shear, draws, seed, workers):
    """(wall s of the whole pool incl. start-up and compilation, slowest second run s, draws
    per worker): `draws` split over `workers` spawned processes."""
    per_worker = -(-draws // workers)
    t0 = time.perf_counter()
    times = list(
        imap_in_processes(
            TimedDiffusion(preset, shear, per_worker),
            [(seed + 100 * w,) for w in range(workers)],
            num_workers=workers,
        )
    )
    return time.perf_counter() - t0, max(t[1] for t in times), per_worker


def time_amortized(model, shear, draws, seed, num_steps, solver):
    """(first run s incl. compilation, second run s, theta draws) of the amortised sampler."""
    from numpyro_diffprior.amortized.prior import load_amortized_prior
    from numpyro_diffprior.demo import amortized_sampler

    prior = load_amortized_prior(model)
    settings = {**FULL, "amortized_draws": draws, "amortized_steps": num_steps,
                "amortized_solver": solver}  # fmt: skip
    return time_twice(amortized_sampler(settings, progress_bar=False), prior, shear, seed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lsst-y10-coarse")
    parser.add_argument("--draws", type=int, default=FULL.diffusion_draws)
    parser.add_argument("--chains", type=int, default=FULL.nuts_chains)
    parser.add_argument("--warmup", type=int, default=FULL.nuts_warmup)
    parser.add_argument("--samples", type=int, default=FULL.nuts_samples)
    parser.add_argument("--max-tree-depth", type=int, default=FULL.nuts_max_tree_depth)
    parser.add_argument("--chain-method", default="auto")
    parser.add_argument("--workers", default="auto", help="diffusion processes (auto: cores)")
    parser.add_argument(
        "--amortized-model",
        default=None,
        help="conditional model DIR or preset (default: the shipped one, if any)",
    )
    parser.add_argument("--amortized-draws", type=int, default=FULL.amortized_draws)
    parser.add_argument("--amortized-steps", type=int, default=FULL.amortized_steps)
    parser.add_argument(
        "--amortized-solver", choices=("ode", "dpmpp-2m", "dpmpp-3m"),
        default=FULL.amortized_solver,
        help="ode: Heun (2 steps - 1 denoiser calls per draw); dpmpp-2m|3m: DPM-Solver++(2M|3M)",
    )  # fmt: skip
    parser.add_argument("--skip-diffusion", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    obs = simulate_observation(jax.random.key(args.seed), args.preset, theta="fiducial")
    rows = [
        ("machine", f"{platform.machine()}, {os.cpu_count()} cores, {jax.default_backend()}"),
        ("observation", f"{args.preset}, fiducial theta, seed {args.seed}"),
        ("JAX compilation cache", os.environ.get("JAX_COMPILATION_CACHE_DIR") or "none"),
    ]
    costs = {}  # method: (s per draw compiled, s per draw incl. compilation)
    if not args.skip_diffusion:
        rows += diffusion_rows(args, obs, costs)
    amortized = args.amortized_model
    if amortized is None and _amortized_ships(args.preset):
        amortized = args.preset
    if amortized is not None:
        first, second, theta_a = time_amortized(
            amortized, obs["shear"], args.amortized_draws, args.seed + 30, args.amortized_steps,
            args.amortized_solver,
        )  # fmt: skip
        n = args.amortized_draws
        costs["amortized"] = (second / n, first / n)
        rows += [
            (f"**amortised** ({SOLVER_NAMES[args.amortized_solver]} ODE, "
             f"{args.amortized_steps} steps equal in log sigma, one batch per core side by "
             "side)", ""),
            ("draws per run", n),
            ("first run incl. compilation / second run (s)", f"{first:.1f} / {second:.1f}"),
            ("time per draw (s), compiled / incl. compilation",
             f"{second / n:.3f} / {first / n:.3f}"),
            ("theta mean ± std", _mean_std(theta_a)),
        ]  # fmt: skip
    nuts_settings = {
        "nuts_warmup": args.warmup, "nuts_samples": args.samples, "nuts_chains": args.chains,
        "nuts_max_tree_depth": args.max_tree_depth,
        # "auto"/"processes": worker processes (num_workers), else NumPyro's method in-process
        **({"nuts_workers": "auto"} if args.chain_method in ("auto", "processes") else
           {"nuts_workers": 1, "nuts_chain_method": args.chain_method}),
    }  # fmt: skip
    idata = nuts_reference(
        jax.random.key(args.seed + 1), args.preset, obs, nuts_settings, progress_bar=False
    )
    a = idata.posterior.attrs
    theta_n = idata.posterior["theta"].values.reshape(-1, len(idata.posterior["param"]))
    per_ess, per_ess_all = a["time_per_effective_sample_s"], a["wall_time_s"] / a["ess_min"]
    method = a["chain_method"]
    rows += [
        (f"**NUTS** ({args.chains} chains, {method}, max tree depth {args.max_tree_depth})", ""),
        ("warmup + samples per chain", f"{args.warmup} + {args.samples}"),
        (
            "wall time: warmup incl. compilation / sampling (s)",
            f"{a['warmup_time_s']:.1f} / {a['sampling_time_s']:.1f}",
        ),  # fmt: skip
        ("max R-hat, min ESS (theta)", f"{a['rhat_max']:.3f}, {a['ess_min']:.0f}"),
        ("mean tree depth, divergences", f"{a['mean_tree_depth']:.2f}, {a['num_divergent']}"),
        (
            "time per effective sample (s): sampling / whole run",
            f"{per_ess:.2f} / {per_ess_all:.2f}",
        ),  # fmt: skip
        ("theta mean ± std", _mean_std(theta_n)),
        ("**ratio** NUTS time per effective sample / sampler time per draw", ""),
    ]
    for name, (compiled, cold) in costs.items():
        rows += [
            (f"{name}: sampling phase vs compiled", f"{per_ess / compiled:.2f}x"),
            (f"{name}: whole run vs incl. compilation", f"{per_ess_all / cold:.2f}x"),
        ]
    rows.append(("targets", "diffusion >= 100x; amortised >= 10x on a 2-core CPU"))
    text = (
        "# Cost per independent posterior draw: samplers vs NUTS (one run, side by side)\n\n"
        f"`python benchmarks/bench_cost.py` (jax {jax.__version__}). A ratio above 1 means the "
        "sampler is cheaper.\n\n| quantity | value |\n|---|---|\n"
        + "\n".join(f"| {k} | {v} |" for k, v in rows)
        + "\n"
    )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, out)
    print(text)


def diffusion_rows(args, obs, costs):
    """Rows of the guided diffusion sampler (one process, then one process per core)."""
    prior = DiffusionPrior.from_pretrained(args.preset)
    first, second, theta_d = time_diffusion(prior, obs["shear"], args.draws, args.seed + 10)
    workers = resolve_num_workers(args.workers, args.draws)
    pool_wall, pool_second, per_worker = time_diffusion_processes(
        args.preset, obs["shear"], args.draws, args.seed + 20, workers
    )
    per_draw_pool = pool_second / (per_worker * workers)
    per_draw_pool_cold = pool_wall / (2 * per_worker * workers)
    per_draw, per_draw_cold = second / args.draws, first / args.draws
    costs["diffusion"] = (per_draw, per_draw_cold)
    costs[f"diffusion in {workers} processes"] = (per_draw_pool, per_draw_pool_cold)
    return [
        ("**diffusion** (demo settings: MMPS, 64 SDE steps, kappa covariance, CG 3)", ""),
        ("draws per run", args.draws),
        ("first run, incl. compilation (s)", f"{first:.1f}"),
        ("second run (s)", f"{second:.1f}"),
        (
            "time per independent draw (s), compiled / incl. compilation",
            f"{per_draw:.2f} / {per_draw_cold:.2f}",
        ),  # fmt: skip
        ("theta mean ± std", _mean_std(theta_d)),
        (
            f"{workers} worker processes x {per_worker} draws, each run twice: whole pool "
            "incl. start-up and compilation / slowest second run (s)",
            f"{pool_wall:.1f} / {pool_second:.1f}",
        ),  # fmt: skip
        (
            f"time per independent draw in {workers} processes (s), compiled / whole pool "
            "over both runs",
            f"{per_draw_pool:.2f} / {per_draw_pool_cold:.2f}",
        ),  # fmt: skip
    ]


def _amortized_ships(preset):
    from numpyro_diffprior.amortized.prior import AmortizedPrior

    try:
        AmortizedPrior.from_pretrained(preset)
    except ValueError:
        return False
    return True


def _mean_std(theta):
    return ", ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(theta.mean(0), theta.std(0), strict=True))


if __name__ == "__main__":
    main()
