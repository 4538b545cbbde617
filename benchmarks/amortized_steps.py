"""Benchmark: the amortised sampler's discretisation error against its step count and schedule.

Usage: python benchmarks/amortized_steps.py [--oracle-draws 4096] [--model-draws 128]
       [--skip-model] [--out benchmarks/results/amortized_steps.md]

Two parts, each comparing draws from the same initial noise with a converged flow, so the
numbers are discretisation errors free of Monte-Carlo error:
- the exact conditional oracle (`testing.conditional.gaussian_amortized_prior`, 8 x 8 maps,
  Kaiser-Squires shear with noise 0.01, with and without 30 % of the pixels masked): relative
  error of the posterior spread for DPM-Solver++(2M) at 12-32 steps on the Karras rho = 7
  ladder and on steps equal in log sigma (rho = inf), and for DPM-Solver++(3M) on the latter;
  reference: Heun, 512 steps;
- the shipped lsst-y10-coarse conditional model on two simulated observations (fiducial, and
  theta from the prior): median draw-wise error, spread error and the largest theta-mean error
  in posterior sd; reference: 2M with 128 log-uniform steps, checked against Heun's 64 steps.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.amortized import ShearObservation
from numpyro_diffprior.infer.amortized import sample_one

RESULTS = pathlib.Path(__file__).parent / "results" / "amortized_steps.md"
NOISE = 0.01
INF = math.inf


def oracle_rows(num):
    from numpyro_diffprior.simulator.shear import kaiser_squires
    from numpyro_diffprior.testing.conditional import gaussian_amortized_prior
    from numpyro_diffprior.validation import random_holes_mask

    prior = gaussian_amortized_prior((1, 8, 8), param_names=("Omega_c", "sigma_8"))[0]
    rows = []
    for masked in (False, True):
        truth = prior.sample(jax.random.key(5))
        shear = kaiser_squires(prior.unpack(truth)[1])
        shear = shear + NOISE * jax.random.normal(jax.random.key(6), shear.shape)
        std = jnp.full(shear.shape, NOISE)
        if masked:
            mask = np.broadcast_to(random_holes_mask(8, seed=2, fraction=0.3), shear.shape)
            std = jnp.where(mask, std, jnp.inf)
        obs = ShearObservation(shear, std)
        key = jax.random.key(0)
        run = lambda **kw: np.asarray(sample_one(key, prior, obs, num, check=False, **kw))
        ref = run(sampler="ode", num_steps=512, rho=7.0).std(0)
        for n in (12, 16, 20, 24, 32):
            errs = [
                np.max(np.abs(run(sampler=s, num_steps=n, rho=rho).std(0) / ref - 1))
                for s, rho in (("dpmpp-2m", 7.0), ("dpmpp-2m", INF), ("dpmpp-3m", INF))
            ]
            rows.append((f"{'30 % masked' if masked else 'no mask'}", n, *errs))
    return rows


def model_rows(num):
    from numpyro_diffprior.amortized.prior import load_amortized_prior
    from numpyro_diffprior.observations import simulate_observation

    prior = load_amortized_prior("lsst-y10-coarse")
    noise = np.asarray(prior.observation_range.reference_noise, np.float32)
    settings = [("2M, rho = 7", 32, 7.0, "dpmpp-2m"), ("2M, rho = 7", 16, 7.0, "dpmpp-2m")]
    settings += [("2M, log-uniform", n, INF, "dpmpp-2m") for n in (12, 16, 20, 24)]
    settings += [("3M, log-uniform", n, INF, "dpmpp-3m") for n in (12, 16, 20)]
    rows = []
    for seed, theta in ((0, "fiducial"), (4, None)):
        o = simulate_observation(jax.random.key(seed), "lsst-y10-coarse", theta=theta)
        std = np.broadcast_to(noise[:, None, None, None], o["shear"].shape).copy()
        obs = ShearObservation(o["shear"], std)
        key = jax.random.key(11)
        run = lambda **kw: np.asarray(sample_one(key, prior, obs, num, **kw))
        ref = run(sampler="dpmpp-2m", num_steps=128, rho=INF)
        sd = ref.std(0)
        name = "fiducial" if theta else "prior draw"

        def row(label, x):
            spread = np.abs(x.std(0) / sd - 1)
            mean = np.abs(x.mean(0) - ref.mean(0)) / sd
            d = np.median(np.abs(x - ref) / sd)
            return (name, label, d, spread[:2].max(), np.median(spread[2:]), mean[:2].max())

        rows.append(row("Heun, rho = 7, 64 steps", run(sampler="ode", num_steps=64, rho=7.0)))
        for label, n, rho, solver in settings:
            rows.append(row(f"{label}, {n} steps", run(sampler=solver, num_steps=n, rho=rho)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle-draws", type=int, default=4096)
    parser.add_argument("--model-draws", type=int, default=128)
    parser.add_argument("--skip-model", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    text = [
        "# Amortised sampler: discretisation error against steps and schedule\n",
        f"`python benchmarks/amortized_steps.py` (jax {jax.__version__}); draws from the same "
        "initial noise as a converged reference, so these are discretisation errors only.\n",
        f"## Exact conditional oracle ({args.oracle_draws} draws; reference Heun, 512 steps)\n",
        "Largest relative error of a posterior spread (theta and every pixel):\n",
        "| observation | steps (= calls per draw) | 2M, rho = 7 | 2M, rho = inf (equal in log "
        "sigma) | 3M, rho = inf |",
        "|---|---|---|---|---|",
    ]
    text += [
        f"| {o} | {n} | {a:+.1%} | {b:+.1%} | {c:+.1%} |"
        for o, n, a, b, c in oracle_rows(args.oracle_draws)
    ]
    if not args.skip_model:
        text += [
            f"\n## Shipped lsst-y10-coarse conditional model ({args.model_draws} draws; reference "
            "2M, 128 log-uniform steps)\n",
            "Errors in units of the reference's posterior sd: median over draws and dimensions; "
            "spread (theta: the larger; kappa: median pixel); theta mean (the larger):\n",
            "| observation | solver | median draw error | theta spread | kappa spread "
            "| theta mean |",
            "|---|---|---|---|---|---|",
        ]
        text += [
            f"| {o} | {s} | {d:.3f} | {a:.1%} | {b:.1%} | {m:.3f} |"
            for o, s, d, a, b, m in model_rows(args.model_draws)
        ]
    text.append(f"\nWall time {time.perf_counter() - t0:.0f} s.\n")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(text))
    tmp.replace(out)
    print("\n".join(text))


if __name__ == "__main__":
    main()
