"""`numpyro-diffprior build-emulator --preset NAME [--out FILE]`: a C_l emulator from jax-cosmo."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "build-emulator",
        help="build the C_l(theta) emulator of a preset from jax-cosmo into an .npz",
        description=(
            "2-parameter presets: tabulate jax-cosmo (Eisenstein-Hu + Halofit, Limber) on an "
            "(Omega_c, sigma_8) grid for a spline table (~1 min). 6-parameter presets "
            "(lsst-y10-jade): jax-cosmo on a seeded design of --num-points parameter vectors "
            "(~0.25 s each; resumable through --cache-dir; shards can run in parallel with "
            "--shard), a base table, and an MLP fit of the residual (docs/cosmology.md). "
            "Without --out the emulator goes to the user cache directory, where "
            "load_emulator(preset) finds it."
        ),
    )
    parser.add_argument("--preset", default="lsst-y10-coarse", help="preset name")
    parser.add_argument("--out", default=None, help="output .npz (default: user cache dir)")
    parser.add_argument("--num-omega-c", type=int, default=None, help="Omega_c grid nodes")
    parser.add_argument("--num-sigma-8", type=int, default=None, help="sigma_8 grid nodes")
    parser.add_argument("--num-ell", type=int, default=40, help="number of multipoles")
    six = parser.add_argument_group("6-parameter presets")
    six.add_argument("--num-points", type=int, default=5000, help="jax-cosmo design points")
    six.add_argument("--shard-size", type=int, default=2500, help="design points per shard")
    six.add_argument("--seed", type=int, default=1, help="design seed of the first shard")
    six.add_argument(
        "--num-low-points", type=int, default=None, help="extra design points at small Omega_c"
    )
    six.add_argument(
        "--num-corner-points",
        type=int,
        default=None,
        help="design points at Omega_c < 0.08 for the small-Omega_c fit (default 13000; 0: none)",
    )
    six.add_argument(
        "--num-tail-points",
        type=int,
        default=None,
        help="design points from the prior widened 2x, for the main fit's tails (default 5000)",
    )
    six.add_argument("--steps", type=int, default=None, help="MLP fit steps")
    six.add_argument("--cache-dir", default=None, help="keep tabulated shards here (resume)")
    six.add_argument(
        "--shard",
        default=None,
        help="only tabulate this shard (base, 0, 1, low0, low1, tail0, ..., corner0, ...) "
        "into --cache-dir",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from numpyro_diffprior.cosmology import emulator as emu
    from numpyro_diffprior.presets import get_preset

    preset = get_preset(args.preset)
    progress = not args.no_progress
    if preset.n_params == 2:
        kwargs = {"num_ell": args.num_ell, "progress": progress}
        if args.num_omega_c is not None:
            kwargs["num_omega_c"] = args.num_omega_c
        if args.num_sigma_8 is not None:
            kwargs["num_sigma_8"] = args.num_sigma_8
        table = emu.build_emulator(preset, **kwargs)
    else:
        from numpyro_diffprior.cosmology.emulator.recipe import build_fitted_emulator

        if args.shard is not None and args.cache_dir is None:
            raise SystemExit("--shard needs --cache-dir (where the shard is kept)")
        fit_kwargs = {} if args.steps is None else {"steps": args.steps}
        if args.num_low_points is not None:
            fit_kwargs["num_low_points"] = args.num_low_points
        if args.num_corner_points is not None:
            fit_kwargs["num_corner_points"] = args.num_corner_points
        if args.num_tail_points is not None:
            fit_kwargs["num_tail_points"] = args.num_tail_points
        table = build_fitted_emulator(
            preset,
            num_points=args.num_points,
            shard_size=args.shard_size,
            seed=args.seed,
            num_ell=args.num_ell,
            cache_dir=args.cache_dir,
            only_shard=args.shard,
            progress=progress,
            **fit_kwargs,
        )
        if table is None:
            print(f"tabulated shard {args.shard} into {args.cache_dir}")
            return 0
    out = args.out or emu.default_cache_dir() / f"emulator_{preset.name}.npz"
    path = emu.save_emulator(table, out)
    print(f"wrote emulator for preset {preset.name!r} to {path}")
    return 0
