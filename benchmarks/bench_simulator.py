"""Benchmark: log-normal maps per second, distinct theta per map, vs the naive approach.

Usage: python benchmarks/bench_simulator.py [--presets tiny lsst-y10-coarse lsst-y10-jade]
       [--num 256] [--jax-cosmo-calls 3] [--rounds 9]
Writes benchmarks/results/simulator.md.

"Ours" = `simulator.simulate` (prior draw + emulator C_l and shifts + log-normal map, vmapped
and jitted, one compiled function reused). Where a preset has no emulator table (the
6-parameter lsst-y10-jade), a stand-in replaces the emulator by a fixed jax-cosmo C_l table at
fiducial scaled by (sigma_8 / 0.831)^2 per map: the map work per theta (a distinct C x C
square root per Fourier mode) is the same, only the (cheap) spline evaluation is missing.
"Naive" = one jax-cosmo `angular_cl` call per theta (what sbi_lens does) + the same map code
from a fixed table: jax-cosmo is timed over a few calls after compilation and extrapolated,
in float64 (as `cosmology.spectra.angular_cl_reference` runs it; the headline ratio) and in
float32 (JAX's default; faster and less accurate), and once more in float64 with one thread per
core calling it side by side (the most a user gets from jax-cosmo on all cores; ours also uses
every core: `simulate` runs one thread per core).
Both are timed in interleaved rounds (ours, then jax-cosmo) and the speed-up is the median of
the rounds' ratios, so a burst of other load on a shared machine moves it less.
"FFT floor" = the C forward and inverse real FFTs of a map alone, timed in the same run.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import time
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior import simulator
from numpyro_diffprior.cosmology.params import FIDUCIAL, full_parameters
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.lognormal import lognormal_kappa

RESULTS = pathlib.Path(__file__).parent / "results" / "simulator.md"


def _timed(fn, *args, repeat=1):
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t0) / repeat, out


def fiducial_spectra(preset):
    from numpyro_diffprior.cosmology.shifts import lognormal_shift
    from numpyro_diffprior.cosmology.spectra import angular_cl_reference, ell_grid

    ell = ell_grid(preset)
    theta_fid = np.array([FIDUCIAL[n] for n in preset.param_names])
    full = np.asarray(full_parameters(jnp.asarray(theta_fid), preset.param_names), np.float64)
    with jax.enable_x64(True):
        f = jax.jit(lambda t: angular_cl_reference(t, preset.survey, ell))
        compile_s, cl = _timed(f, np.asarray(full, np.float64))
        shift = np.asarray(lognormal_shift(jnp.asarray(full, jnp.float64), preset.survey))
    return f, full, ell, np.asarray(cl, np.float32), shift.astype(np.float32), compile_s


def ours_timer(preset, num, batch_size, stand_in):
    """(compile s, fn): fn() times `num` maps with our simulator and returns seconds per map."""
    key = jax.random.key(0)
    if stand_in is None:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        emulator = load_emulator(preset)

        def draw(n):
            return simulator.simulate(key, preset, n, emulator=emulator, batch_size=batch_size)[1]

        compile_s, _ = _timed(lambda: draw(batch_size))
        return compile_s, lambda: _timed(lambda: draw(num))[0] / num
    cl, ell, shift = stand_in
    s8 = list(preset.param_names).index("sigma_8")

    def one(k):
        theta = simulator.sample_prior_in_box(
            k, preset.param_names, jnp.array([[-10.0, 10.0]] * preset.n_params)
        )
        scale = (jnp.clip(theta[s8], 0.1, 1.6) / 0.831) ** 2
        z = jax.random.normal(jax.random.fold_in(k, 1), preset.map_shape)
        return lognormal_kappa(
            z, cl * scale, ell, shift, npix=preset.npix, field_rad=preset.field_rad
        )

    f = jax.jit(jax.vmap(one))
    keys = jax.random.split(key, batch_size)
    compile_s, _ = _timed(f, keys)
    return compile_s, lambda: _timed(f, keys, repeat=max(1, num // batch_size))[0] / batch_size


def _timed_on_all_cores(fn, arg, calls, threads):
    """Seconds per call of `fn(arg)` in float64 with `threads` threads each making `calls`."""

    def work(_):
        with jax.enable_x64(True):  # the setting is per thread
            for _ in range(calls):
                jax.block_until_ready(fn(arg))

    with ThreadPoolExecutor(threads) as pool:
        t0 = time.perf_counter()
        list(pool.map(work, range(threads)))
    return (time.perf_counter() - t0) / (calls * threads)


def fixed_table_rate(preset, cl, ell, shift, batch_size):
    f = jax.jit(
        jax.vmap(
            lambda z: lognormal_kappa(
                z, cl, ell, shift, npix=preset.npix, field_rad=preset.field_rad
            )
        )
    )
    z = jax.random.normal(jax.random.key(1), (batch_size,) + preset.map_shape)
    _timed(f, z)
    t, _ = _timed(f, z, repeat=3)
    return t / batch_size


def fft_floor(preset, batch_size):
    """Seconds per map of the physical floor: the C forward and inverse real 2-D FFTs."""
    f = jax.jit(lambda z: jnp.fft.irfft2(jnp.fft.rfft2(z), s=z.shape[-2:]))
    z = jax.random.normal(jax.random.key(2), (batch_size,) + preset.map_shape)
    _timed(f, z)
    t, _ = _timed(f, z, repeat=20)
    return t / batch_size


def bench(preset_name, num, calls, rounds):
    """One preset: compile both, then `rounds` rounds of (ours on `num` maps, jax-cosmo on
    `calls` thetas) back to back; the speed-up is the median of the rounds' ratios."""
    preset = get_preset(preset_name)
    batch = simulator.default_batch_size(preset)
    cl_fn, full, ell, cl, shift, cosmo_compile = fiducial_spectra(preset)
    from numpyro_diffprior.cosmology.spectra import angular_cl_reference

    cl_fn32 = jax.jit(lambda t: angular_cl_reference(t, preset.survey, ell, x64=False))
    full32 = jnp.asarray(full, jnp.float32)
    _timed(cl_fn32, full32)
    try:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        load_emulator(preset)
        stand_in, how = None, "emulator"
    except (FileNotFoundError, NotImplementedError):
        stand_in, how = (
            (jnp.asarray(cl), jnp.asarray(ell, jnp.float32), jnp.asarray(shift)),
            ("stand-in (fixed jax-cosmo table x sigma_8^2; no emulator table)"),
        )
    compile_s, ours_s_per_map = ours_timer(preset, num, batch, stand_in)
    map_s = fixed_table_rate(
        preset, jnp.asarray(cl), jnp.asarray(ell, jnp.float32), jnp.asarray(shift), batch
    )
    floor_s = fft_floor(preset, batch)
    cores = simulator.default_num_threads()
    ours, per_theta, per_theta32, per_theta_cores = [], [], [], []
    for _ in range(rounds):
        ours.append(ours_s_per_map())
        with jax.enable_x64(True):
            per_theta.append(_timed(cl_fn, np.asarray(full, np.float64), repeat=calls)[0])
        per_theta32.append(_timed(cl_fn32, full32, repeat=calls)[0])
        full64 = np.asarray(full, np.float64)
        per_theta_cores.append(_timed_on_all_cores(cl_fn, full64, calls, cores))
    ours, per_theta, per_theta32, per_theta_cores = map(
        np.asarray, (ours, per_theta, per_theta32, per_theta_cores)
    )
    ratios = (per_theta + map_s) / ours
    ratios32 = (per_theta32 + map_s) / ours
    ratios_cores = (per_theta_cores + map_s) / ours
    return {
        "preset": preset.name,
        "shape": "x".join(map(str, preset.map_shape)),
        "how": how,
        "ours maps/s": 1.0 / np.median(ours),
        "ours compile s": compile_s,
        "jax-cosmo s/theta": np.median(per_theta),
        "jax-cosmo compile s": cosmo_compile,
        "map from fixed table ms": 1e3 * map_s,
        "naive maps/s": 1.0 / (np.median(per_theta) + map_s),
        "speed-up": np.median(ratios),
        "speed-up range": (ratios.min(), ratios.max()),
        "jax-cosmo f32 s/theta": np.median(per_theta32),
        "speed-up f32": np.median(ratios32),
        "speed-up f32 range": (ratios32.min(), ratios32.max()),
        "jax-cosmo all cores s/theta": np.median(per_theta_cores),
        "speed-up all cores": np.median(ratios_cores),
        "speed-up all cores range": (ratios_cores.min(), ratios_cores.max()),
        "cores": cores,
        "batch": batch,
        "ours ms/map": 1e3 * np.median(ours),
        "fft floor ms": 1e3 * floor_s,
        "load": os.getloadavg()[0],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--presets", nargs="+", default=["tiny", "lsst-y10-coarse", "lsst-y10-jade"]
    )
    parser.add_argument("--num", type=int, default=256, help="maps timed per preset (ours)")
    parser.add_argument("--jax-cosmo-calls", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=9, help="interleaved rounds of both timings per preset"
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    rows = []
    for name in args.presets:
        row = bench(name, args.num, args.jax_cosmo_calls, args.rounds)
        print(row, flush=True)
        rows.append(row)
    dev = jax.devices()[0]
    lines = [
        "# Simulator benchmark",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {dev.platform} "
        f"({dev.device_kind}), jax {jax.__version__}; `python benchmarks/bench_simulator.py`.",
        "Distinct theta per map (drawn from the prior). *Naive*: one jax-cosmo call per theta "
        f"(timed over {args.jax_cosmo_calls} calls after compiling, extrapolated) + the same "
        "map code from a fixed table (a lower bound on its cost: with one table the per-mode "
        "square roots are computed once, not per theta). Compile times are excluded from the "
        f"rates. Per preset, {args.rounds} rounds each time ours ({args.num} maps) and then "
        "jax-cosmo (float64, as the project's reference spectra run, and float32, JAX's "
        "default), back to back in the same process; *speed-up* is the median of the rounds' "
        "ratios (range in brackets) and the rates are medians. The ratio falls when other work "
        "shares the cores (ours is multi-threaded, jax-cosmo mostly serial), so the load "
        f"average on the {os.cpu_count()} cores is given per preset. *FFT floor*: the C forward "
        "and inverse real 2-D FFTs of a map alone (`irfft2(rfft2(z))`, same batch), the least "
        "any such simulator costs; *ours / floor* compares our whole time per map (prior draw, "
        "emulator, shifts, log-normal map) with it. *batch*: maps per vmapped batch "
        "(`simulator.default_batch_size`); ours runs one thread per core "
        "(`simulator.default_num_threads`). *all cores*: jax-cosmo float64 called by one thread "
        "per core side by side, the time per theta of the whole.",
        "",
        "| preset | map | C_l source | batch | ours (maps/s) | naive (maps/s) | speed-up | "
        "jax-cosmo (s/theta) | speed-up, float32 jax-cosmo | jax-cosmo float32 (s/theta) | "
        "speed-up, jax-cosmo on all cores | jax-cosmo on all cores (s/theta) | "
        "map, fixed table (ms) | ours (ms/map) | FFT floor (ms/map) | "
        "ours / floor | ours compile (s) | jax-cosmo compile (s) | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['shape']} | {r['how']} | {r['batch']} | "
            f"{r['ours maps/s']:.1f} | "
            f"{r['naive maps/s']:.2f} | {r['speed-up']:.0f}x ({r['speed-up range'][0]:.0f}-"
            f"{r['speed-up range'][1]:.0f}) | {r['jax-cosmo s/theta']:.3f} | "
            f"{r['speed-up f32']:.0f}x ({r['speed-up f32 range'][0]:.0f}-"
            f"{r['speed-up f32 range'][1]:.0f}) | {r['jax-cosmo f32 s/theta']:.3f} | "
            f"{r['speed-up all cores']:.0f}x ({r['speed-up all cores range'][0]:.0f}-"
            f"{r['speed-up all cores range'][1]:.0f}) | {r['jax-cosmo all cores s/theta']:.3f} | "
            f"{r['map from fixed table ms']:.2f} | {r['ours ms/map']:.2f} | "
            f"{r['fft floor ms']:.3f} | {r['ours ms/map'] / r['fft floor ms']:.1f}x | "
            f"{r['ours compile s']:.1f} | "
            f"{r['jax-cosmo compile s']:.1f} | {r['load']:.1f} |"
        )
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
