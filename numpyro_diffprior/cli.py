"""Command-line interface: `numpyro-diffprior <command> ...`.

Each command lives in `numpyro_diffprior.commands.<module>` and exposes
`add_parser(subparsers)` (which registers the sub-command and sets `func`) and `run(args)`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser"]

COMMAND_MODULES = (
    "simulate",
    "build_emulator",
    "train",
    "sample",
    "baseline",
    "evaluate",
    "calibrate",
    "export",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numpyro-diffprior",
        description="Diffusion-model joint priors for field-level weak-lensing inference.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"numpyro_diffprior.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"numpyro_diffprior.commands.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"numpyro-diffprior {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
