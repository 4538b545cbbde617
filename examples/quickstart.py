"""Quick start: a NumPyro model whose prior is the shipped joint diffusion prior.

    python examples/quickstart.py --num 256 --out quickstart_idata.nc

Simulates a fiducial LSST-Y10 observation, samples p(theta, kappa | shear) with the diffusion
posterior sampler, prints the ArviZ summary of theta and saves the InferenceData.
"""

from __future__ import annotations

import argparse

import arviz as az
import jax
import numpyro
import numpyro.distributions as dist

from numpyro_diffprior import DiffusionPrior, get_preset
from numpyro_diffprior.infer import DiffusionPosteriorSampler, IIDSampler
from numpyro_diffprior.observations import simulate_observation
from numpyro_diffprior.simulator.shear import kaiser_squires


def model(prior, shear_obs=None, noise_std=0.01193):
    """An ordinary NumPyro model: learned joint prior + Gaussian shear likelihood."""
    x = numpyro.sample("theta_kappa", prior)
    theta, kappa = prior.unpack(x)
    numpyro.deterministic("theta", theta)
    numpyro.deterministic("kappa", kappa)
    numpyro.sample(
        "shear", dist.Normal(kaiser_squires(kappa), noise_std).to_event(4), obs=shear_obs
    )


def main(args):
    prior = (
        DiffusionPrior.load(args.checkpoint)
        if args.checkpoint
        else DiffusionPrior.from_pretrained("lsst-y10-coarse")
    )
    obs = simulate_observation(jax.random.key(args.seed), prior.preset, theta="fiducial")
    # The settings that compensate for the shipped network's errors (docs/sampling.md); with an
    # exact or accurate network, DiffusionPosteriorSampler(model) has the exact defaults.
    sampler = DiffusionPosteriorSampler.for_shipped_network(
        model, guidance=args.guidance, num_steps=args.steps
    )
    # The run: chunks hold at most 64 draws; fewer draws make one chunk.
    runner = IIDSampler(sampler, args.num, chunk_size=64)
    noise = float(get_preset(prior.preset).noise_std()[0])  # 0.01193 per pixel and component
    runner.run(
        jax.random.key(args.seed + 1),
        prior=prior,
        shear_obs=obs["shear"],
        noise_std=noise,
    )
    idata = runner.to_inference_data(truth={"theta": obs["theta_true"], "kappa": obs["kappa_true"]})
    print(az.summary(idata, var_names=["theta"], kind="stats"))
    print("truth:", dict(zip(prior.param_names, obs["theta_true"].tolist(), strict=True)))
    if args.out:
        idata.to_netcdf(args.out)
    return idata


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--guidance", default="mmps", choices=["mmps", "annealed", "dps"])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
