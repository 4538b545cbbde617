"""Benchmark: C_l emulator vs jax-cosmo, time per theta and per gradient (compile included).

Usage: python benchmarks/bench_cosmology.py [--preset NAME] [--grad-timeout SECONDS]
Writes benchmarks/results/cosmology.md (cosmology_<preset>.md for other presets). The
jax-cosmo gradient is compiled in a subprocess with a time limit (it takes minutes); a timeout
is recorded as such.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology import emulator as emu
from numpyro_diffprior.cosmology import spectra
from numpyro_diffprior.cosmology.params import FIDUCIAL, full_parameters
from numpyro_diffprior.presets import get_preset

RESULTS = pathlib.Path(__file__).parent / "results" / "cosmology.md"


def _timed(fn, *args, repeat=1):
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t0) / repeat, out


def bench_emulator(preset, theta, batch=256):
    e = emu.load_emulator(preset)
    f = jax.jit(emu.emulate_cl)
    g = jax.jit(jax.grad(lambda t: jnp.sum(jnp.log(emu.emulate_cl(e, t)))))
    fv = jax.jit(jax.vmap(emu.emulate_cl, in_axes=(None, 0)))
    thetas = jnp.tile(theta, (batch, 1)) * jnp.linspace(0.9, 1.1, batch)[:, None]
    out = {}
    out["emulator compile (s)"], _ = _timed(f, e, theta)
    out["emulator per theta (s)"], _ = _timed(f, e, theta, repeat=200)
    out["emulator grad compile (s)"], _ = _timed(g, theta)
    out["emulator per gradient (s)"], _ = _timed(g, theta, repeat=200)
    _timed(fv, e, thetas)
    t, _ = _timed(fv, e, thetas, repeat=20)
    out[f"emulator per theta, vmap batch {batch} (s)"] = t / batch
    return out


def bench_jax_cosmo(preset, theta_full, ell, repeat=5):
    out = {}
    with jax.enable_x64(True):
        f = jax.jit(lambda t: spectra.angular_cl_reference(t, preset.survey, ell))
        out["jax-cosmo compile + first call (s)"], _ = _timed(f, theta_full)
        out["jax-cosmo per theta (s)"], _ = _timed(f, theta_full, repeat=repeat)
    return out


def _grad_worker(preset_name, theta_full, ell, queue):
    preset = get_preset(preset_name)
    with jax.enable_x64(True):
        loss = lambda t: jnp.sum(jnp.log(spectra.angular_cl_reference(t, preset.survey, ell)))
        g = jax.jit(jax.grad(loss))
        t0 = time.perf_counter()
        jax.block_until_ready(g(theta_full))
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax.block_until_ready(g(theta_full))
        queue.put({"compile": compile_s, "per_gradient": time.perf_counter() - t0})


def bench_jax_cosmo_grad(preset, theta_full, ell, timeout):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_grad_worker, args=(preset.name, theta_full, ell, queue))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join()
        return {"jax-cosmo grad compile + first call (s)": f"> {timeout} (timed out, not measured)"}
    res = queue.get()
    return {
        "jax-cosmo grad compile + first call (s)": res["compile"],
        "jax-cosmo per gradient (s)": res["per_gradient"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="lsst-y10-coarse")
    parser.add_argument("--grad-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    preset = get_preset(args.preset)
    theta = jnp.asarray([FIDUCIAL[n] for n in preset.param_names], jnp.float32)
    theta_full = np.asarray(full_parameters(np.asarray(theta, np.float64), preset.param_names))
    ell = np.asarray(emu.load_emulator(preset).ell, np.float64)
    rows = bench_emulator(preset, theta)
    rows.update(bench_jax_cosmo(preset, theta_full, ell))
    rows.update(bench_jax_cosmo_grad(preset, theta_full, ell, args.grad_timeout))
    lines = [
        f"# Cosmology benchmark: emulator vs jax-cosmo ({preset.name})",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {jax.devices()[0].platform}, "
        f"jax {jax.__version__}; {preset.n_bins} bins, {ell.size} multipoles; "
        "emulator float32, jax-cosmo float64; "
        f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores "
        "(the machine is shared: absolute times are upper bounds, ratios matter).",
        "",
        "| quantity | value |",
        "|---|---|",
    ]
    for k, v in rows.items():
        lines.append(f"| {k} | {v:.3g} |" if isinstance(v, float) else f"| {k} | {v} |")
    out = (
        RESULTS
        if preset.name == "lsst-y10-coarse"
        else RESULTS.with_stem(f"cosmology_{preset.name}")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps({k: str(v) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
