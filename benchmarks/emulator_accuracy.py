"""Benchmark: accuracy of the 6-parameter emulator against jax-cosmo on prior draws.

Usage: python benchmarks/emulator_accuracy.py [--emulator FILE] [--cache-dir DIR]
           [--sets 7:100,11:300,13:600] [--out FILE]

Each set `seed:num` is `num` draws from the prior restricted to the emulator box (seeded as the
slow test's `_prior_draws`, whose seed-7 set it asserts on). jax-cosmo is run once per draw and
cached in --cache-dir (resumable, ~0.25-0.5 s per draw on this CPU). For every draw the error
is the max relative error of C_l over all 15 bin pairs and the resolved multipoles. Writes
benchmarks/results/emulator_accuracy_lsst-y10-jade.md.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology import emulator as emu
from numpyro_diffprior.cosmology.emulator import design as ef
from numpyro_diffprior.presets import get_preset

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests" / "cosmology"))
from test_fitted_emulator import _prior_draws  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "emulator_accuracy_lsst-y10-jade.md"


def draw_errors(emulator, preset, theta, log_cl_ref):
    """Per draw: max |C_l^emu / C_l^jax-cosmo - 1| over bin pairs and resolved multipoles."""
    resolved = ef.resolved_ell(preset, np.asarray(emulator.ell))
    got = np.asarray(jax.jit(jax.vmap(emulator.log_cl_pairs))(jnp.asarray(theta, jnp.float32)))
    return np.abs(np.expm1(got - log_cl_ref))[..., resolved].reshape(len(theta), -1).max(1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emulator", default=None, help=".npz (default: the shipped one)")
    parser.add_argument("--cache-dir", default="runs/emulator-accuracy")
    parser.add_argument("--sets", default="7:100,11:300,13:600", help="seed:num,...")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    preset = get_preset("lsst-y10-jade")
    e = emu.load_emulator(preset) if args.emulator is None else emu.load_emulator_file(
        args.emulator, preset
    )  # fmt: skip
    ell = np.asarray(e.ell, np.float32).astype(np.float64)
    rows, all_err, all_theta = [], [], []
    for item in args.sets.split(","):
        seed, num = (int(v) for v in item.split(":"))
        theta = _prior_draws(num, seed, e.bounds)
        cache = pathlib.Path(args.cache_dir) / f"prior_{seed}_{num}.npz"
        ref = ef.tabulate_design(preset, theta, ell, cache=cache, chunk=20)
        err = draw_errors(e, preset, theta, ref)
        rows.append((f"{num} prior draws, seed {seed}", theta, err))
        all_err.append(err)
        all_theta.append(theta)
    rows.append(("all", np.concatenate(all_theta), np.concatenate(all_err)))
    lines = [
        "# Emulator accuracy vs jax-cosmo (lsst-y10-jade)",
        "",
        f"Emulator: {args.emulator or 'shipped'}. Per draw: max relative error of C_l over the "
        "15 bin pairs and the resolved multipoles; draws from the prior restricted to the "
        "emulator box.",
        "",
        "| set | median | 95th pct | max | draws > 1 % | worst draw (Omega_c, Omega_b, sigma_8, "
        "h, n_s, w_0) |",
        "|---|---|---|---|---|---|",
    ]
    for name, theta, err in rows:
        worst = ", ".join(f"{v:.3f}" for v in theta[np.argmax(err)])
        lines.append(
            f"| {name} | {100 * np.median(err):.2f} % | {100 * np.quantile(err, 0.95):.2f} % | "
            f"{100 * err.max():.2f} % | {int((err > 0.01).sum())} of {len(err)} | {worst} |"
        )
    text = "\n".join(lines) + "\n"
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
