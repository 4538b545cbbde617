"""`numpyro-diffprior baseline`: NUTS field-level baseline on an observation file."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "baseline",
        help="NUTS on the explicit log-normal field-level model (the HMC baseline)",
        description=(
            "Run NumPyro NUTS on simulator.model.lensing_model conditioned on the shear in --obs "
            "(an .npz written by observations.save_observation) and write InferenceData "
            "(netCDF) to --out. With --checkpoint DIR the run is resumable: NUTS saves its "
            "state and draws to DIR every --checkpoint-every iterations (warmup included), and "
            "the same command run again continues from there."
        ),
    )
    parser.add_argument("--preset", default=None, help="preset (default: the observation's)")
    parser.add_argument("--obs", required=True, help="observation .npz")
    parser.add_argument("--out", required=True, help="output InferenceData .nc")
    parser.add_argument("--warmup", type=int, default=500, help="warmup iterations per chain")
    parser.add_argument("--samples", type=int, default=500, help="draws per chain")
    parser.add_argument("--chains", type=int, default=4, help="number of chains")
    parser.add_argument(
        "--workers",
        default="auto",
        help="processes that run the chains (auto, the default: one per CPU core on a CPU, "
        "1 on a GPU)",
    )
    parser.add_argument(
        "--chain-method",
        default="vectorized",
        choices=["vectorized", "sequential", "parallel", "auto", "processes"],
        help="how chains run within one process (with --workers 1); auto and processes are "
        "deprecated spellings of --workers",
    )
    parser.add_argument("--max-tree-depth", type=int, default=10)
    parser.add_argument("--target-accept", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--checkpoint",
        default=None,
        metavar="DIR",
        help="directory that makes the run resumable: rerun the same command to continue an "
        "interrupted run (a run with another observation or settings is refused; --samples "
        "may grow); without it, nothing is saved until the end",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=100,
        metavar="N",
        help="iterations between checkpoints (default 100)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from numpyro_diffprior.observations import check_output_path, load_observation

    # Every input is checked before jax and NumPyro are imported.
    for flag in ("warmup", "samples", "chains"):
        value = getattr(args, flag)
        if value < (0 if flag == "warmup" else 1):
            bound = ">= 0" if flag == "warmup" else ">= 1"
            raise ValueError(f"--{flag} must be an integer {bound}, got {value}")
    if not 0 < args.target_accept < 1:
        raise ValueError(f"--target-accept must be in (0, 1), got {args.target_accept}")
    if args.max_tree_depth < 1:
        raise ValueError(f"--max-tree-depth must be >= 1, got {args.max_tree_depth}")
    if args.checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    if args.checkpoint is not None and os.path.isfile(args.checkpoint):
        raise ValueError(f"--checkpoint {args.checkpoint!r} is a file; it must be a directory")
    check_output_path(args.out, what="--out")
    obs = load_observation(args.obs)

    import jax

    from numpyro_diffprior.infer.inference_data import save_inference_data
    from numpyro_diffprior.infer.nuts import nuts_baseline

    preset = args.preset or obs["preset"]
    if args.preset and args.preset != obs["preset"]:
        raise ValueError(
            f"--preset {args.preset!r} differs from the observation's {obs['preset']!r}"
        )
    if args.checkpoint is not None and os.path.exists(os.path.join(args.checkpoint, "run.json")):
        print(f"continuing the run saved in {args.checkpoint}", flush=True)
    truth = {}
    if obs["theta_true"] is not None:
        truth["theta"] = obs["theta_true"]
    if obs["kappa_true"] is not None:
        truth["kappa"] = obs["kappa_true"]
    idata = nuts_baseline(
        jax.random.key(args.seed),
        preset=preset,
        shear_obs=obs["shear"],
        mask=obs["mask"],
        noise_std=obs["noise_std"],
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method=args.chain_method,
        num_workers=args.workers,
        max_tree_depth=args.max_tree_depth,
        target_accept_prob=args.target_accept,
        truth=truth or None,
        progress_bar=not args.no_progress,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
    )
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    save_inference_data(idata, args.out)
    a = idata.posterior.attrs
    print(
        f"wrote {args.out}: max R-hat {a['rhat_max']:.3f}, min ESS {a['ess_min']:.0f}, "
        f"{a['num_divergent']} divergences, mean tree depth {a['mean_tree_depth']:.1f}, "
        f"{a['time_per_gradient_s'] * 1e3:.2f} ms/gradient, "
        f"{a['time_per_effective_sample_s']:.3f} s per effective sample"
    )
    return 0
