"""`numpyro-diffprior demo`: the main job (simulate, sample four ways, compare, report)."""

from __future__ import annotations

import os

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    p = subparsers.add_parser(
        "demo",
        help="simulate an observation, run diffusion, Langevin, amortised and NUTS, write a report",
    )
    p.add_argument("--out", default="results", help="output directory (default: results)")
    p.add_argument("--preset", default=None, help="preset name (default: lsst-y10-coarse)")
    p.add_argument("--checkpoint", default=None, help="model directory (default: shipped model)")
    p.add_argument(
        "--amortized-model",
        default=None,
        help="conditional model directory (default: the shipped one; none: no amortised run)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-draws", type=int, default=None, help="posterior draws per sampler")
    p.add_argument("--quick", action="store_true", help="tiny run sizes (smoke test)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from numpyro_diffprior.observations import check_output_path

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; the demo writes a directory")
    check_output_path(os.path.join(args.out, "report.md"), what="--out")
    if args.num_draws is not None and args.num_draws < 1:
        raise ValueError(f"--num-draws must be a positive integer, got {args.num_draws}")

    from numpyro_diffprior.demo import QUICK, run_demo
    from numpyro_diffprior.presets import DEFAULT_PRESET

    settings = dict(QUICK) if args.quick else {}
    if args.num_draws is not None:
        settings["num_draws"] = settings["diffusion_draws"] = args.num_draws
    result = run_demo(
        args.out,
        preset=args.preset or DEFAULT_PRESET,
        checkpoint=args.checkpoint,
        amortized_checkpoint=args.amortized_model,
        seed=args.seed,
        settings=settings,
        progress_bar=not args.no_progress,
    )
    print(f"report: {result['report']}")
    return 0
