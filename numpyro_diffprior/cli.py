"""Command-line interface: `numpyro-diffprior <command> ...`.

Each command lives in `numpyro_diffprior.commands.<module>` and exposes
`add_parser(subparsers)` (which registers the sub-command and sets `func`) and `run(args)`.

`main` imports only the module of the command named on the command line (the others are
listed by name and one-line help from `COMMANDS`), and no command imports jax, numpyro, haiku,
arviz or matplotlib before `run`: `--help` and argument errors come back in well under 2 s
(benchmarks/bench_cli_startup.py).
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser", "COMMANDS", "COMMAND_MODULES"]

# command name -> (module in numpyro_diffprior.commands, one-line help shown by `--help`).
COMMANDS = {
    "observe": ("observe", "simulate one shear observation into an .npz (the samplers' input)"),
    "simulate": (
        "simulate",
        "simulate (theta, kappa) log-normal maps into an HDF5 file (resumable)",
    ),
    "build-emulator": (
        "build_emulator",
        "build the C_l(theta) emulator of a preset from jax-cosmo into an .npz",
    ),
    "train": ("train", "train the joint diffusion prior (EDM)"),
    "sample": ("sample", "posterior sampling with a diffusion prior"),
    "baseline": (
        "baseline",
        "NUTS on the explicit log-normal field-level model (the HMC baseline)",
    ),
    "evaluate": ("evaluate", "compare posteriors (InferenceData files) of one observation"),
    "calibrate": ("calibrate", "TARP and MIRA over simulated observations with known truth"),
    "export": ("export", "keep a checkpoint's EMA weights only (to ship)"),
    "demo": ("demo", "simulate an observation, run diffusion, Langevin and NUTS, write a report"),
}
COMMAND_MODULES = tuple(module for module, _ in COMMANDS.values())

_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)


def _chosen_command(argv) -> str | None:
    """The command named in `argv` (the first non-option word), or None."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(command: str | None = None, *, lazy: bool = False) -> argparse.ArgumentParser:
    """The CLI parser. Every command's module is imported and its full parser built, unless
    `lazy`: then only `command`'s (if any), the others are listed by name and help only."""
    parser = argparse.ArgumentParser(
        prog="numpyro-diffprior",
        description="Diffusion-model joint priors for field-level weak-lensing inference. "
        "New here? `numpyro-diffprior observe --preset tiny --out obs.npz` writes an "
        "observation; docs/quickstart.md goes on from there.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if lazy and name != command:
            sub.add_parser(name, help=help_text)
            continue
        try:
            module = importlib.import_module(f"numpyro_diffprior.commands.{module_name}")
        except ModuleNotFoundError as err:
            if err.name == f"numpyro_diffprior.commands.{module_name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_chosen_command(argv), lazy=True)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):  # a command whose module was not built
        parser.error(f"command {args.command!r} is not available")
    try:
        result = args.func(args)
    except _ERRORS as err:
        print(f"numpyro-diffprior {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
