"""`numpyro-diffprior simulate`: write a (theta, kappa) HDF5 training set (resumable)."""

from __future__ import annotations

import os

__all__ = ["add_parser", "run", "check_out", "is_hdf5"]


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


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path) -> bool:
    """True if `path` starts with an HDF5 superblock (at byte 0, 512, 1024, 2048, ...)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            fh.seek(offset)
            if fh.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else 2 * offset
    return False


def check_out(path) -> None:
    """`--out` may be a new file or an HDF5 dataset to resume or extend; anything else (a
    directory, another kind of file) is refused before it is opened, and left untouched."""
    from numpyro_diffprior.observations import check_output_path

    check_output_path(path, what="--out")
    if os.path.exists(path) and not is_hdf5(path):
        raise ValueError(
            f"--out {path!r} exists and is not an HDF5 file ({os.path.getsize(path)} bytes); "
            "simulate writes HDF5 datasets and resumes only its own: give a new path"
        )


def run(args) -> int:
    if args.num < 1:
        raise ValueError(f"--num must be a positive number of maps, got {args.num}")
    if args.chunk_size < 1:
        raise ValueError(f"--chunk-size must be a positive integer, got {args.chunk_size}")
    check_out(args.out)

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
