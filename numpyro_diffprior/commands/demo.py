"""`numpyro-diffprior demo`: the main job (simulate, sample three ways, compare, report)."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    from numpyro_diffprior.presets import DEFAULT_PRESET

    p = subparsers.add_parser(
        "demo", help="simulate an observation, run diffusion, Langevin and NUTS, write a report"
    )
    p.add_argument("--out", default="results", help="output directory (default: results)")
    p.add_argument("--preset", default=DEFAULT_PRESET)
    p.add_argument("--checkpoint", default=None, help="model directory (default: shipped model)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-draws", type=int, default=None, help="posterior draws per sampler")
    p.add_argument("--quick", action="store_true", help="tiny run sizes (smoke test)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from numpyro_diffprior.demo import QUICK, run_demo

    settings = dict(QUICK) if args.quick else {}
    if args.num_draws is not None:
        settings["num_draws"] = settings["diffusion_draws"] = args.num_draws
    result = run_demo(
        args.out,
        preset=args.preset,
        checkpoint=args.checkpoint,
        seed=args.seed,
        settings=settings,
        progress_bar=not args.no_progress,
    )
    print(f"report: {result['report']}")
    return 0
