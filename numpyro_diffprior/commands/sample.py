"""`numpyro-diffprior sample`: posterior of (theta, kappa) given an observation file, with a
diffusion prior (guided reverse diffusion or annealed Langevin), written as InferenceData."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_parser", "run", "load_prior"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sample",
        help="posterior sampling with a diffusion prior",
        description=(
            "Sample p(theta, kappa | shear) for the observation in --obs (an .npz written by "
            "observations.save_observation: shear (C,2,N,N), preset, optional mask, noise_std, "
            "theta_true, kappa_true) under infer.models.shear_model, and write InferenceData "
            "(netCDF) to --out."
        ),
    )
    parser.add_argument(
        "--model",
        default=None,
        help="preset name of a pretrained prior or a checkpoint directory (default: the "
        "observation's preset)",
    )
    parser.add_argument("--obs", required=True, help="observation .npz")
    parser.add_argument("--out", required=True, help="output InferenceData .nc")
    parser.add_argument("--method", choices=("diffusion", "langevin"), default="diffusion")
    parser.add_argument(
        "--guidance",
        choices=("mmps", "annealed", "dps"),
        default=None,
        help="likelihood guidance (default: mmps for diffusion, annealed for langevin)",
    )
    parser.add_argument("--num", type=int, default=1000, help="number of posterior draws")
    parser.add_argument(
        "--steps", type=int, default=None, help="reverse steps (diffusion) or levels (langevin)"
    )
    parser.add_argument("--steps-per-level", type=int, default=5, help="langevin only")
    parser.add_argument("--corrector-steps", type=int, default=0, help="diffusion only")
    parser.add_argument(
        "--sampler", choices=("sde", "ode"), default="sde", help="diffusion only: reverse process"
    )
    parser.add_argument(
        "--sigma-max", type=float, default=None,
        help="largest noise level (default: 5 for diffusion, 1 for langevin; docs/sampling.md)",
    )  # fmt: skip
    parser.add_argument(
        "--mmps-covariance", choices=("kappa", "cross", "joint"), default="kappa",
        help="diffusion + mmps only: Tweedie covariance blocks (docs/sampling.md)",
    )  # fmt: skip
    parser.add_argument(
        "--guidance-clip", type=float, default=2.0,
        help="bound on each draw's guidance in sqrt(D) min(sigma, 1) units; 0 turns it off",
    )  # fmt: skip
    parser.add_argument("--cg-maxiter", type=int, default=3, help="diffusion + mmps only")
    parser.add_argument(
        "--theta-refresh-steps",
        type=int,
        default=0,
        help="diffusion only: end each draw with theta ~ p(theta | kappa) in this many steps",
    )
    parser.add_argument("--chunk-size", type=int, default=128, help="draws per jitted batch")
    parser.add_argument("--chains", type=int, default=4, help="chains the i.i.d. draws form")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def load_prior(model):
    """A DiffusionPrior from a checkpoint directory or a pretrained preset name."""
    from numpyro_diffprior.presets import PRESETS
    from numpyro_diffprior.prior import DiffusionPrior

    if os.path.isdir(model):
        return DiffusionPrior.load(model)
    if model in PRESETS:
        return DiffusionPrior.from_pretrained(model)
    raise FileNotFoundError(
        f"model {model!r} is neither a checkpoint directory nor a preset ({', '.join(PRESETS)})"
    )


def run(args) -> int:
    import jax

    from numpyro_diffprior.infer import AnnealedLangevinSampler, DiffusionPosteriorSampler
    from numpyro_diffprior.infer.inference_data import save_inference_data
    from numpyro_diffprior.infer.models import shear_model
    from numpyro_diffprior.observations import load_observation

    obs = load_observation(args.obs)
    prior = load_prior(args.model or obs["preset"])
    if prior.preset is not None and prior.preset != obs["preset"]:
        raise ValueError(
            f"the prior is for preset {prior.preset!r} but the observation for {obs['preset']!r}"
        )
    if args.num < args.chains:
        raise ValueError(f"--num must be >= --chains ({args.chains}), got {args.num}")
    common = dict(
        chunk_size=min(args.chunk_size, args.num),
        num_chains=args.chains,
        progress_bar=not args.no_progress,
    )
    if args.method == "diffusion":
        sampler = DiffusionPosteriorSampler(
            shear_model,
            guidance=args.guidance or "mmps",
            num_steps=args.steps or 64,
            num_corrector_steps=args.corrector_steps,
            theta_refresh_steps=args.theta_refresh_steps,
            sampler=args.sampler,
            sigma_max=args.sigma_max or 5.0,
            mmps_covariance=args.mmps_covariance,
            guidance_clip=args.guidance_clip or None,
            cg_maxiter=args.cg_maxiter,
            **common,
        )
    else:
        sampler = AnnealedLangevinSampler(
            shear_model,
            guidance=args.guidance or "annealed",
            num_levels=args.steps or 100,
            num_steps_per_level=args.steps_per_level,
            sigma_max=args.sigma_max or 1.0,
            **common,
        )
    sampler.run(
        jax.random.key(args.seed),
        args.num,
        prior=prior,
        shear_obs=obs["shear"],
        mask=obs["mask"],
        noise_std=obs["noise_std"],
    )
    truth = {}
    if obs["theta_true"] is not None:
        truth["theta"] = obs["theta_true"]
    if obs["kappa_true"] is not None:
        truth["kappa"] = obs["kappa_true"]
    if obs["mask"] is not None:
        truth["mask"] = obs["mask"]
    idata = sampler.to_inference_data(truth=truth or None)
    directory = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(directory, exist_ok=True)
    save_inference_data(idata, args.out)
    theta = idata.posterior["theta"]
    mean, std = theta.mean(("chain", "draw")).values, theta.std(("chain", "draw")).values
    summary = ", ".join(
        f"{n} = {m:.4g} ± {s:.2g}" for n, m, s in zip(prior.param_names, mean, std, strict=True)
    )
    wall = idata.posterior.attrs["wall_time_s"]
    print(f"wrote {args.out}: {args.num} draws in {wall:.1f} s; {summary}")
    return 0
