"""Diffusion posterior vs the NUTS field-level baseline on one observation.

    python examples/diffusion_vs_hmc.py --num 256 --warmup 150 --samples 150 --out compare/

Both posteriors come back as ArviZ InferenceData with identical names, dims and coords, so ArviZ
and the package's report (`diagnostics.report.write_report`) treat them alike.
"""

from __future__ import annotations

import argparse

import arviz as az
import jax

from numpyro_diffprior import DiffusionPrior
from numpyro_diffprior.diagnostics.report import write_report
from numpyro_diffprior.infer import DiffusionPosteriorSampler, IIDSampler, shear_model
from numpyro_diffprior.infer.nuts import nuts_baseline
from numpyro_diffprior.observations import simulate_observation


def main(args):
    prior = (
        DiffusionPrior.load(args.checkpoint)
        if args.checkpoint
        else DiffusionPrior.from_pretrained("lsst-y10-coarse")
    )
    obs = simulate_observation(jax.random.key(args.seed), prior.preset, theta="fiducial")
    truth = {"theta": obs["theta_true"], "kappa": obs["kappa_true"]}

    # MMPS with the settings measured to match NUTS with the shipped network (docs/sampling.md)
    sampler = DiffusionPosteriorSampler.for_shipped_network(shear_model, num_steps=args.steps)
    runner = IIDSampler(sampler, args.num, chunk_size=64)  # at most 64 draws per chunk
    runner.run(jax.random.key(1), prior=prior, shear_obs=obs["shear"])
    diffusion = runner.to_inference_data(truth=truth)

    nuts = nuts_baseline(
        jax.random.key(2),
        preset=prior.preset,
        shear_obs=obs["shear"],
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=2,
        max_tree_depth=args.max_tree_depth,
        num_workers="auto",  # on a CPU: one process per core (docs/validation.md)
        truth=truth,
    )
    for name, idata in (("diffusion", diffusion), ("nuts", nuts)):
        print(name)
        print(az.summary(idata, var_names=["theta"]))
    report = write_report(
        args.out,
        {"diffusion": diffusion, "nuts": nuts},
        truth=truth,
        preset=prior.preset,
        reference="nuts",
    )
    print(f"report: {report}")
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument("--samples", type=int, default=150)
    p.add_argument("--max-tree-depth", type=int, default=7)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="compare")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
