"""Benchmark: posterior samplers on the exact oracles (bias table) and on the shipped prior.

Usage: python benchmarks/bench_sampling.py [--num-gaussian 1024] [--num-amplitude 512]
       [--num-pretrained 16] [--skip-oracles]
Writes benchmarks/results/sampling.md (with --skip-oracles, only its shipped-prior section).

(1) Oracles (docs/design.md §2.7) on a 1 x 8 x 8 map observed through Kaiser-Squires with noise 0.01
(kappa std 0.02): each method's bias against the exact posterior - Gaussian joint: max over
theta of |mean error| / posterior std, theta std ratio, correlation of the kappa mean map with
the exact one, median kappa pixel std ratio; amplitude: mean and std of A vs exact, KS distance
to the exact CDF. (2) Draws per second (second run, compiled) and denoiser calls per draw,
on the oracles and on the shipped network prior with a prior-predictive observation, with
the demo's settings (`numpyro_diffprior.demo.FULL`; the oracles' exact settings are unstable
with the network, docs/sampling.md).
"""

from __future__ import annotations

import argparse
import pathlib
import platform
import time

import jax
import numpy as np
from numpyro.infer import Predictive

from numpyro_diffprior import demo
from numpyro_diffprior import testing as oracles
from numpyro_diffprior.infer import (
    AnnealedLangevinSampler,
    DiffusionPosteriorSampler,
    IIDSampler,
    shear_model,
)
from numpyro_diffprior.prior import DiffusionPrior
from numpyro_diffprior.simulator.shear import kaiser_squires

RESULTS = pathlib.Path(__file__).parent / "results" / "sampling.md"
PRETRAINED = pathlib.Path(__file__).parents[1] / "numpyro_diffprior/data/pretrained/lsst-y10-coarse"
MAP_SHAPE, NOISE = (1, 8, 8), 0.01
# The library defaults are the exact-oracle settings (Heun ODE from sigma_max 80; MMPS with the
# joint covariance, CG 10, no clip); the Langevin ladder runs from sigma_max 10.
METHODS = {
    "diffusion / mmps": lambda: DiffusionPosteriorSampler(
        shear_model, guidance="mmps", num_steps=32
    ),
    "diffusion / annealed": lambda: DiffusionPosteriorSampler(
        shear_model, guidance="annealed", num_steps=32
    ),
    "diffusion / dps": lambda: DiffusionPosteriorSampler(shear_model, guidance="dps", num_steps=32),
    "langevin / annealed": lambda: AnnealedLangevinSampler(
        shear_model,
        sigma_max=10.0,
        num_levels=200,
        num_steps_per_level=10,
        step_size=0.2,
        sigma_min=0.005,
    ),
}


def _observe(prior, seed):
    truth = prior.sample(jax.random.PRNGKey(seed))
    noise = NOISE * jax.random.normal(jax.random.PRNGKey(seed + 1), (1, 2) + MAP_SHAPE[1:])
    return kaiser_squires(prior.unpack(truth)[1]) + noise


def gaussian_case():
    prior, oracle, normalizer = oracles.gaussian_oracle_prior(MAP_SHAPE)
    shear = _observe(prior, 5)
    op = oracles.linear_operator_matrix(kaiser_squires, MAP_SHAPE)
    return prior, shear, oracles.gaussian_posterior(oracle, normalizer, MAP_SHAPE, op, shear, NOISE)


def amplitude_case():
    oracle, normalizer = oracles.amplitude_oracle(MAP_SHAPE)
    prior = DiffusionPrior(
        apply_fn=oracles.amplitude_denoise,
        params=oracle,
        normalizer=normalizer,
        n_params=1,
        map_shape=MAP_SHAPE,
    )
    shear = _observe(prior, 3)
    op = oracles.linear_operator_matrix(kaiser_squires, MAP_SHAPE)
    exact = oracles.amplitude_posterior(oracle, normalizer, MAP_SHAPE, op, shear, NOISE)
    return prior, shear, exact


def timed_run(sampler, num, **kwargs):
    """(draws, draws per second of a compiled second run, denoiser calls per draw)."""
    if not isinstance(sampler, IIDSampler):
        sampler = IIDSampler(sampler, num, progress_bar=False)
    sampler.num_samples = sampler.chunk_size = num
    sampler.run(jax.random.PRNGKey(0), **kwargs)  # compile
    start = time.perf_counter()
    sampler.run(jax.random.PRNGKey(1), **kwargs)
    rate = num / (time.perf_counter() - start)
    calls = sampler.kernel.settings()["denoiser_calls_per_draw"]
    return sampler.get_samples()["theta_kappa"], rate, calls


def oracle_tables(num_gaussian, num_amplitude):
    rows_g, rows_a = [], []
    prior, shear, exact = gaussian_case()
    mean, sd = exact.mean, np.sqrt(np.diag(exact.cov))
    for name, make in METHODS.items():
        x, rate, calls = timed_run(
            make(), num_gaussian, prior=prior, shear_obs=shear, noise_std=NOISE
        )
        bias = np.max(np.abs(x[:, :2].mean(0) - mean[:2]) / sd[:2])
        std_ratio = x[:, :2].std(0) / sd[:2]
        corr = np.corrcoef(x[:, 2:].mean(0), mean[2:])[0, 1]
        kstd = np.median(x[:, 2:].std(0) / sd[2:])
        rows_g.append(
            f"| {name} | {bias:.3f} | {std_ratio[0]:.3f}, {std_ratio[1]:.3f} | {corr:.4f} | "
            f"{kstd:.3f} | {calls} | {rate:.1f} |"
        )
        print(rows_g[-1], flush=True)
    prior, shear, exact = amplitude_case()
    for name, make in METHODS.items():
        x, rate, calls = timed_run(
            make(), num_amplitude, prior=prior, shear_obs=shear, noise_std=NOISE
        )
        a = x[:, 0]
        ks = oracles.ks_distance(a, exact.grid, exact.cdf)
        corr = np.corrcoef(x[:, 1:].mean(0), exact.kappa_mean.ravel())[0, 1]
        rows_a.append(
            f"| {name} | {a.mean():.3f} ({(a.mean() - exact.mean) / exact.std:+.2f} σ) | "
            f"{a.std():.3f} ({a.std() / exact.std:.2f}x) | {ks:.3f} | {corr:.4f} | {calls} | "
            f"{rate:.1f} |"
        )
        print(rows_a[-1], flush=True)
    return rows_g, rows_a, exact


def pretrained_rows(num):
    """Draws/s of the demo's samplers on the shipped prior, or None without it."""
    if not PRETRAINED.exists():
        return None
    prior = DiffusionPrior.load(PRETRAINED)
    pred = Predictive(shear_model, num_samples=1)(jax.random.PRNGKey(0), prior)
    shear = pred["shear"][0]
    settings = dict(demo.FULL, diffusion_draws=num, num_draws=num, sampler_workers=1)
    samplers = {
        "diffusion / mmps (demo settings)": demo.diffusion_sampler(settings, progress_bar=False),
        "langevin / annealed (demo ladder)": demo.langevin_sampler(settings, progress_bar=False),
    }
    rows = []
    for name, sampler in samplers.items():
        _, rate, calls = timed_run(sampler, num, prior=prior, shear_obs=shear)
        rows.append(f"| {name} | {calls} | {rate:.3f} | {1 / rate:.2f} |")
        print(rows[-1], flush=True)
    return rows


def _kept_oracle_sections() -> list[str]:
    """The oracle part of the existing results file (everything before the shipped section)."""
    if not RESULTS.exists():
        return []
    text = RESULTS.read_text()
    start = text.find("## Gaussian-joint oracle")
    end = text.find("## Shipped prior")
    if start < 0:
        return []
    return text[start : end if end > 0 else None].rstrip("\n").split("\n") + [""]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-gaussian", type=int, default=1024)
    parser.add_argument("--num-amplitude", type=int, default=512)
    parser.add_argument("--num-pretrained", type=int, default=16)
    parser.add_argument("--skip-oracles", action="store_true")
    args = parser.parse_args(argv)
    lines = [
        "# Posterior sampling benchmark",
        "",
        f"`python benchmarks/bench_sampling.py` on {platform.processor() or platform.machine()}, "
        f"{jax.device_count()} {jax.default_backend()} device(s), jax {jax.__version__}.",
        "Settings: diffusion = 32 Heun steps (63 denoiser calls), sigma in [0.002, 80], MMPS with "
        "10 CG iterations; Langevin = 200 geometric levels from 10 to 0.005, 10 steps per level, "
        "step 0.2 sigma^2. Draws/s from a second (compiled) run, one batch.",
        "",
    ]
    if args.skip_oracles:
        lines += _kept_oracle_sections()
    else:
        rows_g, rows_a, exact = oracle_tables(args.num_gaussian, args.num_amplitude)
        lines += [
            f"## Gaussian-joint oracle ({args.num_gaussian} draws; 1 x 8 x 8 map, 2 parameters)",
            "",
            "| method | max theta bias / post. std | theta std ratio | kappa mean corr. | "
            "kappa std ratio (median) | denoiser calls/draw | draws/s |",
            "|---|---|---|---|---|---|---|",
            *rows_g,
            "",
            f"## Amplitude oracle ({args.num_amplitude} draws; exact A = {exact.mean:.3f} ± "
            f"{exact.std:.3f})",
            "",
            "| method | mean of A | std of A | KS distance | kappa mean corr. | "
            "denoiser calls/draw | draws/s |",
            "|---|---|---|---|---|---|---|",
            *rows_a,
            "",
            "MC error of the mean at these sizes: 1/sqrt(n) = "
            f"{1 / np.sqrt(args.num_gaussian):.3f} "
            f"(Gaussian), {1 / np.sqrt(args.num_amplitude):.3f} (amplitude) posterior std; "
            f"KS distance of an exact sampler ~ {0.87 / np.sqrt(args.num_amplitude):.3f} (median).",
            "",
        ]
    rows = pretrained_rows(args.num_pretrained)
    lines += ["## Shipped prior (lsst-y10-coarse)", ""]
    if rows is None:
        where = "numpyro_diffprior/data/pretrained/lsst-y10-coarse/"
        lines += [f"Not run: no pretrained model at `{where}`.", ""]
    else:
        lines += [
            f"{args.num_pretrained} draws of a prior-predictive observation, the demo's settings "
            "(`numpyro_diffprior.demo.FULL`), one process.",
            "",
            "| method | denoiser calls/draw | draws/s | s/draw |",
            "|---|---|---|---|",
            *rows,
            "",
            "Denoiser calls count forward evaluations; each MMPS step also differentiates "
            "the network (a linearisation, `cg_maxiter` jvps and a vjp), which is why 64 "
            "MMPS steps cost about as much as 500 Langevin evaluations.",
            "",
        ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
