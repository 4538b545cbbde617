"""`numpyro-diffprior calibrate`: TARP and MIRA over K simulated observations with known truth.

Argument parsing only: the run is `diagnostics.calibrate.run_calibration` with the samplers of
`diagnostics.calibration_samplers` ("diffusion", "langevin": the trained prior on
`infer.models.shear_model`; "nuts": `infer.nuts.nuts_baseline`). Those names are re-exported
here for old imports. "amortized" runs `diagnostics.calibrate_amortized`: each observation's
mask and noise level drawn from the conditional model's training family, `--obs-per-batch`
observations per batched sampling call, in this process (--workers and --scheduler refused).
The command has no fixed --mask/--noise: the other methods use the preset's default noise and
no mask, the amortised one the training family.
"""

from __future__ import annotations

import argparse
import os

import jax

from numpyro_diffprior.commands.amortized_sampling import load_prior_for
from numpyro_diffprior.diagnostics.calibrate import run_calibration
from numpyro_diffprior.diagnostics.calibration_samplers import (
    LazySamplerFn,
    diffusion_sampler_fn,
    nuts_sampler_fn,
    pretrained_sampler_fn,
)
from numpyro_diffprior.runtime.executors import check_scheduler
from numpyro_diffprior.runtime.processes import resolve_num_workers

__all__ = [
    "add_parser",
    "run",
    "run_calibration",
    "diffusion_sampler_fn",
    "pretrained_sampler_fn",
    "nuts_sampler_fn",
    "LazySamplerFn",
]


def _progress_path(out_dir) -> str:
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, "progress.npz")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "calibrate",
        help="TARP and MIRA over simulated observations with known truth",
        description=(
            "Simulate --num-obs observations (theta from the prior), sample each posterior with "
            "--method and write report.md, tarp.png, mira.png and calibration.json to --out. "
            "Draws are saved to --out/progress.npz after every observation (every batch for "
            "--method amortized); rerunning the same command resumes there. With --method "
            "amortized each observation gets its own mask and noise level, drawn from the "
            "conditional model's training family (its checkpoint's observation_range); the "
            "other methods use no mask and the preset's pixel noise."
        ),
    )
    parser.add_argument(
        "--model",
        default="lsst-y10-coarse",
        help="preset name (pretrained prior) or checkpoint path",
    )
    parser.add_argument(
        "--method", choices=("diffusion", "langevin", "nuts", "amortized"), default="diffusion",
        help="amortized: a conditional model (--model: a `train --conditional` checkpoint)",
    )  # fmt: skip
    parser.add_argument("--num-obs", type=int, default=200, help="simulated observations K")
    parser.add_argument(
        "--num-draws", type=int, default=100, help="posterior draws per observation"
    )
    parser.add_argument("--guidance", default=None, help="guidance (annealed|dps|mmps)")
    parser.add_argument(
        "--num-steps", type=int, default=None, help="diffusion steps / Langevin levels"
    )
    parser.add_argument(
        "--sampler", choices=("ode", "dpmpp-2m", "dpmpp-3m", "sde"), default=None,
        help="--method amortized: reverse process (dpmpp-2m: DPM-Solver++(2M), one denoiser "
        "call per step, the default; dpmpp-3m: its third-order form, one; ode: Heun, two)",
    )  # fmt: skip
    parser.add_argument("--warmup", type=int, default=300, help="NUTS warmup per observation")
    parser.add_argument(
        "--obs-per-batch", type=int, default=8,
        help="--method amortized: observations per batched sampling call (the results do not "
        "depend on it; memory does)",
    )  # fmt: skip
    parser.add_argument(
        "--chunk-size", default="auto",
        help="--method amortized: draws per compiled program (auto: 5 on a CPU, where small "
        "chunks keep the network in the caches; each batch whole on an accelerator)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", default="auto",
        help="--method amortized: threads computing chunks side by side (auto: 1 per core)",
    )  # fmt: skip
    parser.add_argument(
        "--workers",
        default="auto",
        help="processes sampling observations in parallel (auto: one per CPU core on a CPU, "
        "1 on a GPU; with --scheduler local: the cluster's worker processes)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="sample the observations on Dask: 'local' starts a LocalCluster of --workers "
        "processes, an address (tcp://host:8786) uses a running `dask scheduler` and its "
        "workers; the results equal a local run's (docs/validation.md)",
    )
    parser.add_argument(
        "--save-every",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="save the draws so far to OUT/progress.npz at most this often (0: after every "
        "observation or batch) and when the run ends or stops; a rerun resumes from it",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from numpyro_diffprior.presets import get_preset

    if args.num_draws < 3:
        raise ValueError(f"--num-draws must be >= 3, got {args.num_draws}")
    if args.method == "amortized":
        return _report(args, *_run_amortized(args))
    for flag, value in (("--sampler", args.sampler), ("--chunk-size", args.chunk_size),
                        ("--threads", args.threads)):  # fmt: skip
        if value not in (None, "auto"):
            raise ValueError(f"{flag} applies to --method amortized only")
    workers = resolve_num_workers(args.workers, args.num_obs)
    scheduler = check_scheduler(args.scheduler)
    if args.method in ("diffusion", "langevin"):
        preset = get_preset(load_prior_for(args.method, args.model).preset)
        kwargs = {} if args.guidance is None else {"guidance": args.guidance}
        if args.num_steps is not None:
            kwargs["num_levels" if args.method == "langevin" else "num_steps"] = args.num_steps
        sampler_fn = LazySamplerFn(
            pretrained_sampler_fn,
            model=args.model,
            num_draws=args.num_draws,
            method=args.method,
            **kwargs,
        )
    else:
        preset = get_preset(args.model)
        # Several workers already use the cores: each runs its chains one after the other.
        # (and Dask's worker processes cannot start processes of their own)
        chains = {"chain_method": "sequential"} if workers > 1 or scheduler else {}
        sampler_fn = LazySamplerFn(
            nuts_sampler_fn,
            preset=preset.name,
            num_draws=args.num_draws,
            num_warmup=args.warmup,
            **chains,
        )
    result = run_calibration(
        jax.random.key(args.seed),
        preset,
        sampler_fn,
        args.num_obs,
        progress=not args.no_progress,
        seed=args.seed,
        progress_file=_progress_path(args.out),
        run_label=f"{args.model} {args.method} draws={args.num_draws} guidance={args.guidance} "
        f"steps={args.num_steps} warmup={args.warmup}",
        num_workers=workers,
        scheduler=scheduler,
        save_every_s=args.save_every,
    )
    where = f"{workers} worker process(es)" if scheduler is None else f"Dask ({scheduler})"
    return _report(args, preset, result, where)


def _run_amortized(args):
    """(preset, result, where) of `run_amortized_calibration` for the command's flags."""
    from numpyro_diffprior.diagnostics.calibrate_amortized import run_amortized_calibration
    from numpyro_diffprior.presets import get_preset

    for flag, given in (("--guidance", args.guidance), ("--scheduler", args.scheduler),
                        ("--workers", str(args.workers) not in ("auto", "1"))):  # fmt: skip
        if given:
            raise ValueError(
                f"{flag} does not apply to --method amortized: it has no guidance, and samples "
                "--obs-per-batch observations per batched call in this process"
            )
    if args.obs_per_batch < 1:
        raise ValueError(f"--obs-per-batch must be >= 1, got {args.obs_per_batch}")
    prior = load_prior_for("amortized", args.model)
    rng = prior.observation_range
    if rng is not None:
        print(
            "amortised calibration: each observation's mask and noise level are drawn from the "
            f"model's training family (masks {', '.join(rng.mask_family)} hiding 0-"
            f"{rng.max_masked_fraction:.0%}, noise {rng.noise_factor[0]:g}-"
            f"{rng.noise_factor[1]:g} x the preset's pixel noise)"
        )
    settings = {} if args.num_steps is None else {"num_steps": args.num_steps}
    if args.sampler is not None:
        settings["sampler"] = args.sampler
    result = run_amortized_calibration(
        jax.random.key(args.seed),
        prior,
        args.num_obs,
        num_draws=args.num_draws,
        obs_per_batch=args.obs_per_batch,
        chunk_size=args.chunk_size,
        num_threads=args.threads,
        progress=not args.no_progress,
        seed=args.seed,
        progress_file=_progress_path(args.out),
        run_label=f"{args.model} amortized",
        save_every_s=args.save_every,
        **settings,
    )
    frac, factor = result["masked_fraction"], result["noise_factor"]
    where = (
        f"batches of {args.obs_per_batch} observations, masks and noise from the training "
        f"family (masked {frac.min():.0%}-{frac.max():.0%}, noise {factor.min():.2f}-"
        f"{factor.max():.2f} x the pixel noise)"
    )
    return get_preset(prior.preset), result, where


def _report(args, preset, result, where) -> int:
    from numpyro_diffprior.diagnostics.report import write_calibration_report

    notes = (
        f"Preset `{preset.name}`, method `{args.method}`, {args.num_draws} draws per "
        f"observation, {where}, wall time {result['wall_time_s']:.1f} s."
    )
    path = write_calibration_report(
        args.out, result["summary"], title=f"Calibration: {args.method}", notes=notes
    )
    print(f"wrote {path}")
    for block, res in result["summary"].items():
        m = res["mira"]
        print(
            f"{block:6s} MIRA {m.score:.3f} ± {m.error:.3f} (calibrated: {m.expected:.3f}); "
            f"TARP ATC {res['tarp'].atc:+.3f}, KS p {res['tarp'].ks_pvalue:.3g}"
        )
    return 0
