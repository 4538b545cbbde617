"""Benchmark: how long `numpyro-diffprior` takes to answer `--help` and a bad argument.

Usage: python benchmarks/bench_cli_startup.py [--repeats 3]
Writes benchmarks/results/cli_startup.md.

Each command runs in a fresh subprocess (`python -m numpyro_diffprior.cli ...`, the console
script's code path), best of `--repeats` wall times. Target: at most 2 s each: the CLI imports
only the chosen command's module, and no command imports jax, numpyro, haiku, arviz or
matplotlib before it runs (tests/test_bad_input.py checks the imports, without timing).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import subprocess
import sys
import time

COMMANDS = [
    ["--help"],
    ["sample", "--help"],
    ["train", "--help"],
    ["observe", "--help"],
    ["sample", "--obs", "missing.npz", "--out", "x.nc"],  # an error: missing observation
    ["evaluate", "--idata", "one.nc", "--out", "report"],  # an error: one file
]
TARGET_S = 2.0


def time_command(argv, repeats) -> tuple[float, int]:
    best, rc = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "numpyro_diffprior.cli", *argv],
            capture_output=True,
            text=True,
        )
        best = min(best, time.perf_counter() - start)
        rc = proc.returncode
    return best, rc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out",
        default=str(pathlib.Path(__file__).parent / "results" / "cli_startup.md"),
    )
    args = parser.parse_args()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_s = time.perf_counter() - start
    rows = []
    for argv in COMMANDS:
        best, rc = time_command(argv, args.repeats)
        rows.append((" ".join(argv), best, rc))
        print(f"numpyro-diffprior {' '.join(argv)}: {best:.3f} s (exit {rc})")
    lines = [
        "# CLI start-up time",
        "",
        f"`python benchmarks/bench_cli_startup.py` on {platform.processor() or platform.machine()}"
        f" ({os.cpu_count()} cores), Python {platform.python_version()}; best of "
        f"{args.repeats} fresh subprocesses; target <= {TARGET_S:g} s. A bare "
        f"`python -c pass` takes {python_s:.3f} s here.",
        "",
        "| command | wall time (s) | exit code | within target |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `numpyro-diffprior {cmd}` | {t:.3f} | {rc} | {'yes' if t <= TARGET_S else 'NO'} |"
        for cmd, t, rc in rows
    ]
    lines += [
        "",
        "Each command imports its heavy modules (jax, numpyro, haiku, arviz) only once its "
        "arguments are checked.",
        "",
    ]
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
