"""Benchmark: the shipped samplers against NUTS on several simulated observations.

Usage: python benchmarks/posterior_vs_nuts.py [--cases fiducial far-high far-low masked prior]
       [--methods diffusion amortized amortized-2m amortized-default]
       [--cache ~/runs/posterior_vs_nuts] [--seed 0] [--amortized-model DIR]
       [--out benchmarks/results/posterior_vs_nuts.md]

Observations (lsst-y10-coarse, the shipped prior's maps):
- fiducial: the fiducial cosmology (Omega_c 0.2664, sigma_8 0.831), LSST-Y10 noise;
- far-high: Omega_c 0.35, sigma_8 0.70; far-low: Omega_c 0.20, sigma_8 0.92;
- masked: theta 0.30 / 0.78 with about 30 % of the field hidden by square holes;
- prior: theta from the prior, noise 1.5x LSST-Y10.
Methods: "nuts" (the reference: the demo's NUTS, 4 chains x (200 + 200)), "diffusion" (the
guided sampler, `DiffusionPosteriorSampler.for_shipped_network`, 40 draws), "diffusion-exact"
(the exact library defaults, 40 draws), "amortized" (`AmortizedPosteriorSampler`, 200 draws,
the shipped conditional model or --amortized-model, Heun, 32 steps = 63 denoiser calls per
draw, on the rho = 7 ladder), "amortized-2m" (the same with DPM-Solver++(2M), 32 steps = 32
calls), "amortized-default" (the sampler's defaults: 2M, 20 steps equal in log sigma),
"amortized-fast" (`AMORTIZED_FAST_SETTINGS`: 3M, 12 steps equal in log sigma). Per
parameter: Delta mean / sd_NUTS and the sd ratio; per map: correlation of the kappa posterior
means, median pixel-sd ratio, and the ratio of the draws' mean auto power to NUTS's per
tomographic bin (all resolved l bins together, and the worst single l bin). Each run's
InferenceData is cached under --cache, so a rerun only computes what is missing; the wall time
of each run is recorded. An amortised method's runs with `--amortized-model DIR` are cached
under a name of their own per model, beside the same NUTS runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import platform
import time

import jax
import numpy as np

from numpyro_diffprior.infer.algorithms import AMORTIZED_FAST_SETTINGS

CASES = {
    "fiducial": dict(theta="fiducial", noise=1.0, masked=0.0),
    "far-high": dict(theta=(0.35, 0.70), noise=1.0, masked=0.0),
    "far-low": dict(theta=(0.20, 0.92), noise=1.0, masked=0.0),
    "masked": dict(theta=(0.30, 0.78), noise=1.0, masked=0.3),
    "prior": dict(theta=None, noise=1.5, masked=0.0),
}
NUTS = dict(num_warmup=200, num_samples=200, num_chains=4, max_tree_depth=7)


def holes_mask(npix, fraction, seed):
    """(N, N) bool, True = observed: random squares of 2-8 pixels until `fraction` is hidden."""
    rng = np.random.default_rng(seed)
    masked = np.zeros((npix, npix), bool)
    while masked.mean() < fraction:
        size = rng.integers(2, npix // 4 + 1)
        y, x = rng.integers(0, npix - size + 1, size=2)
        masked[y : y + size, x : x + size] = True
    return ~masked


def make_observation(name, preset, seed):
    from numpyro_diffprior.observations import simulate_observation

    case = CASES[name]
    key = jax.random.fold_in(jax.random.key(seed), list(CASES).index(name))
    mask = holes_mask(preset.npix, case["masked"], seed) if case["masked"] else None
    noise = np.asarray(preset.noise_std()) * case["noise"]
    return simulate_observation(key, preset, theta=case["theta"], mask=mask, noise_std=noise)


# the amortised sampler's settings per method name: Heun and DPM-Solver++(2M) on 32 steps of
# the rho = 7 ladder, the library's defaults (2M, 20 steps equal in log sigma) and its named
# faster setting (3M, 12 steps)
AMORTIZED_METHODS = {
    "amortized": dict(sampler="ode", num_steps=32, rho=7.0),
    "amortized-2m": dict(sampler="dpmpp-2m", num_steps=32, rho=7.0),
    "amortized-default": {},
    "amortized-fast": AMORTIZED_FAST_SETTINGS,
}


def run_method(method, obs, preset, prior, amortized_prior, key):
    from numpyro_diffprior.infer.models import shear_model
    from numpyro_diffprior.infer.runner import IIDSampler

    truth = {"theta": obs["theta_true"], "kappa": obs["kappa_true"]}
    data = dict(shear_obs=obs["shear"], mask=obs["mask"], noise_std=obs["noise_std"])
    if method == "nuts":
        from numpyro_diffprior.infer.nuts import nuts_baseline

        return nuts_baseline(key, preset=preset, **data, **NUTS, num_workers="auto",
                             truth=truth, progress_bar=False)  # fmt: skip
    if method in ("diffusion", "diffusion-exact"):
        from numpyro_diffprior.infer.posterior import DiffusionPosteriorSampler as DPS

        kernel = DPS.for_shipped_network(shear_model) if method == "diffusion" else DPS(shear_model)
        runner = IIDSampler(kernel, 40, chunk_size=5, num_workers="auto", progress_bar=False)
        runner.run(key, prior=prior, **data)
    elif method in AMORTIZED_METHODS:
        from numpyro_diffprior.infer.amortized import AmortizedPosteriorSampler

        kernel = AmortizedPosteriorSampler(shear_model, **AMORTIZED_METHODS[method])
        runner = IIDSampler(kernel, 200, chunk_size=100, progress_bar=False)
        runner.run(key, prior=amortized_prior, **data)
    else:
        raise ValueError(f"unknown method {method!r}")
    return runner.to_inference_data(truth=truth)


def auto_power(kappa, preset):
    from numpyro_diffprior.diagnostics.power import ell_bin_edges, power_spectrum

    edges = ell_bin_edges(preset.npix, preset.field_rad)
    _, cl = power_spectrum(kappa, preset.field_rad, edges)
    cl = np.asarray(cl)
    return np.stack([cl[:, c, c] for c in range(cl.shape[1])], axis=1)  # (S, C, B)


def compare(idata, ref, preset):
    from numpyro_diffprior.diagnostics.compare import posterior_draws

    th, ka = posterior_draws(idata)
    th_r, ka_r = posterior_draws(ref)
    sd_r = th_r.std(0)
    p, p_r = auto_power(ka, preset).mean(0), auto_power(ka_r, preset).mean(0)  # (C, B)
    km, km_r = ka.mean(0).ravel(), ka_r.mean(0).ravel()
    return {
        "delta_mean": ((th.mean(0) - th_r.mean(0)) / sd_r).tolist(),
        "sd_ratio": (th.std(0) / sd_r).tolist(),
        "kappa_corr": float(np.corrcoef(km, km_r)[0, 1]),
        "pixel_sd_ratio": float(np.median(ka.std(0) / ka_r.std(0))),
        "power_ratio": (p.sum(-1) / p_r.sum(-1)).tolist(),
        "power_worst_l": np.max(np.abs(p / p_r - 1), axis=-1).tolist(),
        "num_draws": int(len(th)),
        "num_diverged": int(idata.posterior.attrs.get("num_diverged", 0)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["diffusion", "amortized"],
        choices=["diffusion", "diffusion-exact", *AMORTIZED_METHODS],
    )
    parser.add_argument("--cache", default=os.path.expanduser("~/runs/posterior_vs_nuts"))
    parser.add_argument("--amortized-model", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/posterior_vs_nuts.md")
    args = parser.parse_args(argv)

    import arviz as az

    from numpyro_diffprior.checkpoints import load_pretrained
    from numpyro_diffprior.prior import DiffusionPrior

    ckpt = load_pretrained("lsst-y10-coarse")
    preset, prior = ckpt.preset, DiffusionPrior.from_checkpoint(ckpt)
    amortized_prior = None
    if set(AMORTIZED_METHODS) & set(args.methods):
        from numpyro_diffprior.amortized.prior import load_amortized_prior

        amortized_prior = load_amortized_prior(args.amortized_model or "lsst-y10-coarse")
    cache = pathlib.Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    cache_names = {m: cache_name(m, args.amortized_model) for m in ["nuts", *args.methods]}
    rows = {}
    for case in args.cases:
        obs = make_observation(case, preset, args.seed)
        idatas = {}
        for i, method in enumerate(["nuts", *args.methods]):
            key = jax.random.fold_in(jax.random.key(args.seed + 1), i)
            idatas[method] = cached_run(
                cache, case, cache_names[method],
                lambda: run_method(method, obs, preset, prior, amortized_prior, key),
            )  # fmt: skip
        nuts = idatas["nuts"]
        rows[case] = {
            "truth": np.asarray(obs["theta_true"]).tolist(),
            "masked": 0.0 if obs["mask"] is None else float(1 - np.mean(obs["mask"])),
            "nuts_mean": np.asarray(nuts.posterior["theta"].mean(("chain", "draw"))).tolist(),
            "nuts_sd": np.asarray(nuts.posterior["theta"].std(("chain", "draw"))).tolist(),
            "nuts_rhat": float(az.rhat(nuts, var_names=["theta"])["theta"].max()),
            "nuts_ess": float(az.ess(nuts, var_names=["theta"])["theta"].min()),
            "methods": {m: compare(idatas[m], nuts, preset) for m in args.methods},
        }
    times = _read_times(cache / "times.json")  # keyed by each run's cache name
    times = {f"{case}/{method}": times[f"{case}/{name}"] for case in rows
             for method, name in cache_names.items() if f"{case}/{name}" in times}  # fmt: skip
    write_report(args.out, rows, times, preset)


def cached_run(cache, label, name, run):
    """The InferenceData of run `label`_`name` from `cache`; where missing, computed by `run()`,
    saved, and its wall time merged into cache/times.json (another run may share the cache)."""
    import arviz as az

    from numpyro_diffprior.infer.inference_data import save_inference_data

    path = cache / f"{label}_{name}.nc"
    if not path.exists():
        start = time.perf_counter()
        idata = run()
        elapsed = time.perf_counter() - start
        save_inference_data(idata, str(path))
        times_path = cache / "times.json"
        times = _read_times(times_path)
        times[f"{label}/{name}"] = elapsed
        times_path.write_text(json.dumps(times, indent=1))
        print(f"{label} {name}: {elapsed:.0f} s", flush=True)
    return az.from_netcdf(path)


def cache_name(method, amortized_model=None):
    """The cache name of a method's runs: an amortised method with a model directory gets one
    of its own, so that runs of different models never mix (NUTS's and the shipped model's
    runs keep the method's name)."""
    if method not in AMORTIZED_METHODS or not amortized_model:
        return method
    if not pathlib.Path(amortized_model).is_dir():
        return method if amortized_model == "lsst-y10-coarse" else f"{method}-{amortized_model}"
    digest = hashlib.sha256(str(pathlib.Path(amortized_model).resolve()).encode()).hexdigest()
    return f"{method}-{digest[:10]}"


def _read_times(path):
    """{"case/method": wall s} of the cached runs (re-read: another run may share the cache)."""
    return json.loads(path.read_text()) if path.exists() else {}


def _seconds(times, key, unit=""):
    """The cached run's wall time, or a note where the cache holds no time for it (runs copied
    from another cache without their times.json)."""
    return f"{times[key]:.0f}{unit}" if key in times else "time not recorded"


def _f(values, fmt="{:+.2f}"):
    return ", ".join(fmt.format(v) for v in values)


def write_report(out, rows, times, preset):
    lines = [
        "# Shipped samplers against NUTS on simulated observations",
        "",
        f"`python benchmarks/posterior_vs_nuts.py`; preset {preset.name} ({preset.shift_model} "
        f"shifts); {platform.machine()}, {os.cpu_count()} CPU cores. NUTS: "
        f"{NUTS['num_chains']} chains x ({NUTS['num_warmup']} + {NUTS['num_samples']}), "
        f"max tree depth {NUTS['max_tree_depth']}. Parameters: {', '.join(preset.param_names)}.",
        "",
        "| observation | truth | NUTS mean ± sd (R-hat, ESS) | method | Δmean / sd_NUTS | "
        "sd ratio | κ mean corr | pixel-sd ratio | auto power / NUTS per bin | worst l bin | "
        "wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, r in rows.items():
        nuts = ", ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(r["nuts_mean"], r["nuts_sd"],
                                                                strict=True))  # fmt: skip
        head = (f"{case}" + (f" ({r['masked']:.0%} masked)" if r["masked"] else ""),
                _f(r["truth"], "{:.3f}"),
                f"{nuts} ({r['nuts_rhat']:.3f}, {r['nuts_ess']:.0f}); "
                + _seconds(times, case + "/nuts", " s"))  # fmt: skip
        for method, m in r["methods"].items():
            lines.append(
                f"| {' | '.join(head)} | {method} | {_f(m['delta_mean'])} | "
                f"{_f(m['sd_ratio'], '{:.2f}')} | {m['kappa_corr']:.3f} | "
                f"{m['pixel_sd_ratio']:.2f} | {_f(m['power_ratio'], '{:.2f}')} | "
                f"{max(m['power_worst_l']):.2f} | "
                f"{_seconds(times, case + '/' + method)} |"
            )
            head = ("", "", "")
    pathlib.Path(out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
