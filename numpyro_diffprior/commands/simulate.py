"""`numpyro-diffprior simulate`: write a (theta, kappa) HDF5 training set (resumable)."""

from __future__ import annotations

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "simulate",
        help="simulate (theta, kappa) log-normal maps into an HDF5 file (resumable)",
        description="Draw theta from the prior and log-normal convergence maps, written in "
        "chunks to an HDF5 file. Rerunning the same command after an interruption resumes "
        "where it stopped; a larger --num extends a finished file.",
    )
    parser.add_argument("--preset", default="lsst-y10-coarse", help="preset name")
    parser.add_argument("--num", type=int, required=True, help="number of maps")
    parser.add_argument("--out", required=True, help="output HDF5 file")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--chunk-size", type=int, default=256, help="maps per written chunk")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from numpyro_diffprior.simulator.dataset import read_dataset_info, write_dataset

    path = write_dataset(
        args.out,
        args.preset,
        args.num,
        seed=args.seed,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    info = read_dataset_info(path)
    print(
        f"{path}: {info['num_complete']} maps of preset {info['preset'].name!r} (seed {args.seed})"
    )
    return 0
