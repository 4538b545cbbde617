"""`numpyro-diffprior sample`: posterior of (theta, kappa) given an observation file, with a
diffusion prior (guided reverse diffusion or annealed Langevin), written as InferenceData."""

from __future__ import annotations

import argparse
import os
import sys

from numpyro_diffprior.commands import amortized_sampling

__all__ = ["add_parser", "run", "load_prior", "sampler_from_args", "resolve_model"]


# exit status of a run that wrote its file but whose draws diverged
DIVERGED_EXIT_CODE = 3


def _algorithms():
    """`infer.algorithms` (plain dataclasses and default settings). When `numpyro_diffprior.infer`
    is not imported yet, a private copy is loaded from its file, so that building the parser (the
    help strings quote its defaults) does not import the infer package and jax with it."""
    if "numpyro_diffprior.infer" in sys.modules:
        from numpyro_diffprior.infer import algorithms

        return algorithms
    import importlib.util

    name = "numpyro_diffprior.commands._algorithm_defaults"
    if name not in sys.modules:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        spec = importlib.util.spec_from_file_location(
            name, os.path.join(here, "infer", "algorithms.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def add_parser(subparsers) -> argparse.ArgumentParser:
    alg = _algorithms()
    _S, _L, _G = alg.SHIPPED_NETWORK_SETTINGS, alg.LANGEVIN_DEFAULTS, alg.SHIPPED_NETWORK_GUIDANCE
    _A = alg.AMORTIZED_DEFAULTS
    MMPS, RUN_DEFAULTS = alg.MMPS, alg.RUN_DEFAULTS
    parser = subparsers.add_parser(
        "sample",
        help="posterior sampling with a diffusion prior",
        description=(
            "Sample p(theta, kappa | shear) for the observation in --obs (an .npz written by "
            "observations.save_observation: shear (C,2,N,N), preset, optional mask, noise_std, "
            "theta_true, kappa_true) under infer.models.shear_model, and write InferenceData "
            "(netCDF) to --out. The diffusion defaults are the settings that compensate for the "
            "shipped network's errors (DiffusionPosteriorSampler.for_shipped_network: MMPS with "
            "the kappa-block covariance, CG 3, clip 2, reverse SDE, 64 steps from sigma_max 5), "
            "not the library's exact defaults; the langevin defaults are the library's "
            "(AnnealedLangevinSampler)."
        ),
    )
    parser.add_argument("--model", default=None, help="preset name of a pretrained prior or a "
                        "checkpoint directory (default: the observation's preset)")  # fmt: skip
    parser.add_argument("--obs", required=True, help="observation .npz")
    parser.add_argument("--out", required=True, help="output InferenceData .nc")
    parser.add_argument(
        "--method", choices=("diffusion", "langevin", "amortized"), default="diffusion",
        help="amortized: a conditional model (train --conditional), no guidance",
    )  # fmt: skip
    parser.add_argument(
        "--guidance", choices=("mmps", "annealed", "dps"), default=None,
        help="likelihood guidance (default: mmps for diffusion, annealed for langevin)",
    )  # fmt: skip
    parser.add_argument("--num", type=int, default=1000, help="number of posterior draws")
    parser.add_argument(
        "--steps", type=int, default=None,
        help=f"reverse steps (diffusion, default {_S['num_steps']}; amortized, default "
        f"{_A['num_steps']}, equal in log sigma) or levels (langevin, default {_L['num_levels']})",
    )  # fmt: skip
    parser.add_argument(
        "--steps-per-level", type=int, default=None,
        help=f"langevin only (default {_L['num_steps_per_level']})",
    )  # fmt: skip
    parser.add_argument("--corrector-steps", type=int, default=None, help="diffusion only (0)")
    parser.add_argument(
        "--sampler", choices=("sde", "ode", "dpmpp-2m", "dpmpp-3m"), default=None,
        help=f"reverse process (diffusion: sde|ode, default {_S['sampler']}; amortized: "
        "dpmpp-2m = DPM-Solver++(2M) (default), dpmpp-3m = its third-order form, ode = Heun, "
        "twice the calls, or sde)",
    )  # fmt: skip
    parser.add_argument(
        "--sigma-max", type=float, default=None,
        help=f"largest noise level (default: {_S['sigma_max']:g} for diffusion, "
        f"{_L['sigma_max']:g} for langevin; docs/sampling.md)",
    )  # fmt: skip
    parser.add_argument(
        "--mmps-covariance", choices=("kappa", "cross", "joint"), default=None,
        help=f"mmps only: Tweedie covariance blocks (default {_G['mmps'].covariance} for "
        "diffusion, joint for langevin; docs/sampling.md)",
    )  # fmt: skip
    parser.add_argument(
        "--guidance-clip", type=float, default=None,
        help="mmps/annealed only: bound on each draw's guidance in sqrt(D) min(sigma, 1) units; "
        f"0 turns it off (default {_G['mmps'].clip:g} for diffusion, off for langevin)",
    )  # fmt: skip
    parser.add_argument(
        "--cg-maxiter", type=int, default=None,
        help=f"mmps only (default {_G['mmps'].cg_maxiter} for diffusion, "
        f"{MMPS().cg_maxiter} for langevin)",
    )  # fmt: skip
    parser.add_argument(
        "--theta-refresh-steps",
        type=int,
        default=None,
        help="diffusion only: end each draw with theta ~ p(theta | kappa) in this many steps",
    )
    parser.add_argument(
        "--chunk-size", type=int, default=RUN_DEFAULTS["chunk_size"],
        help="draws per jitted batch",
    )  # fmt: skip
    parser.add_argument(
        "--workers", default=RUN_DEFAULTS["num_workers"],
        help="processes that compute the draws (auto: one per CPU core on a CPU)",
    )  # fmt: skip
    parser.add_argument("--threads", default=1, help="threads computing chunks (auto: 1 per core)")
    parser.add_argument(
        "--scheduler", default=None,
        help="compute the draws on Dask: 'local' starts a LocalCluster (--workers processes, "
        "default one per core), an address (tcp://host:8786) uses a running `dask scheduler`; "
        "docs/sampling.md",
    )  # fmt: skip
    parser.add_argument(
        "--chains", type=int, default=None,
        help="deprecated and ignored: the draws are stored as 4, 3 or 2 chains (whichever "
        "divides --num) or 1, so that none is dropped",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def load_prior(model):
    """A DiffusionPrior from a checkpoint directory or a pretrained preset name (kept here for
    old imports; the library's is `numpyro_diffprior.prior.load_prior`)."""
    from numpyro_diffprior.prior import load_prior as _load_prior

    return _load_prior(model)


def resolve_model(model):
    """`--model` checked before anything heavy: a preset name passes through; a directory must
    hold a checkpoint (`config.json`). A `train --out` folder (checkpoint in `checkpoint/`) gets a
    ValueError that names the right path."""
    if model is None or not (os.sep in model or "/" in model or os.path.exists(model)):
        return model  # a preset name: checked by load_prior
    if not os.path.exists(model):
        raise FileNotFoundError(f"--model {model!r}: no such checkpoint directory")
    if not os.path.isdir(model):
        raise ValueError(f"--model {model!r} is a file; give a checkpoint directory or a preset")
    if not os.path.exists(os.path.join(model, "config.json")):
        inner = os.path.join(model, "checkpoint")
        if os.path.exists(os.path.join(inner, "config.json")):
            raise ValueError(
                f"--model {model!r} is a training folder (`train --out`), not a checkpoint: "
                f"use --model {inner}"
            )
        raise ValueError(
            f"--model {model!r} is not a checkpoint directory (no config.json in it); give the "
            "directory written by `train` (OUT/checkpoint) or `export`, or a preset name"
        )
    return model


def _guidance(args, name):
    """The guidance object of the flags: the shipped-network version for diffusion, the
    library defaults for langevin, with the flags that apply to it; ValueError otherwise."""
    from numpyro_diffprior.infer.algorithms import DPS, MMPS, SHIPPED_NETWORK_GUIDANCE, Annealed

    _G = SHIPPED_NETWORK_GUIDANCE
    base = _G[name] if args.method == "diffusion" else {"mmps": MMPS(), "annealed": Annealed(),
                                                         "dps": DPS()}[name]  # fmt: skip
    flags = {"mmps_covariance": "covariance", "cg_maxiter": "cg_maxiter", "guidance_clip": "clip"}
    fields = {}
    for flag, field in flags.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if not hasattr(base, field):
            option = "--" + flag.replace("_", "-")
            raise ValueError(f"{option} does not apply to guidance {name!r}")
        fields[field] = (value or None) if field == "clip" else value
    return type(base)(**{**vars(base), **fields})


def sampler_from_args(args):
    """(sampler, run options) of the `sample` flags."""
    from numpyro_diffprior.infer import AnnealedLangevinSampler, DiffusionPosteriorSampler
    from numpyro_diffprior.infer import algorithms as alg
    from numpyro_diffprior.infer.models import shear_model

    _S, _L, ThetaRefresh = alg.SHIPPED_NETWORK_SETTINGS, alg.LANGEVIN_DEFAULTS, alg.ThetaRefresh

    if args.method == "langevin":
        for flag in ("sampler", "corrector_steps", "theta_refresh_steps"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} does not apply to --method langevin")
    elif args.steps_per_level is not None:
        raise ValueError("--steps-per-level applies to --method langevin only")
    run_options = dict(
        chunk_size=min(args.chunk_size, args.num),
        num_workers=args.workers,
        progress_bar=not args.no_progress,
        scheduler=args.scheduler,
        num_threads=args.threads,
    )
    if args.method == "amortized":
        return amortized_sampling.amortized_sampler(args), run_options
    if args.method == "diffusion":
        guidance = _guidance(args, args.guidance or "mmps")
        refresh = args.theta_refresh_steps or 0
        sampler = DiffusionPosteriorSampler.for_shipped_network(
            shear_model,
            guidance=guidance,
            num_steps=args.steps or _S["num_steps"],
            num_corrector_steps=args.corrector_steps or 0,
            sampler=args.sampler or _S["sampler"],
            sigma_max=args.sigma_max or _S["sigma_max"],
            refinements=(ThetaRefresh(refresh),) if refresh else (),
        )
    else:
        sampler = AnnealedLangevinSampler(
            shear_model,
            guidance=_guidance(args, args.guidance or "annealed"),
            num_levels=args.steps or _L["num_levels"],
            num_steps_per_level=args.steps_per_level or _L["num_steps_per_level"],
            sigma_max=args.sigma_max or _L["sigma_max"],
        )
    return sampler, run_options


def run(args) -> int:
    from numpyro_diffprior.observations import check_output_path, load_observation

    # Every input is checked before jax and the samplers are imported.
    if args.num < 1:
        raise ValueError(f"--num must be a positive number of draws, got {args.num}")
    amortized_sampling.check_sampler_flag(args.method, args.sampler)
    check_output_path(args.out, what="--out")
    model = resolve_model(args.model)
    obs = load_observation(args.obs)

    import jax

    from numpyro_diffprior.infer.inference_data import save_inference_data
    from numpyro_diffprior.infer.runner import IIDSampler

    # amortized: an AmortizedPrior
    prior = amortized_sampling.load_prior_for(args.method, model or obs["preset"])
    if prior.preset is not None and prior.preset != obs["preset"]:
        raise ValueError(
            f"the prior is for preset {prior.preset!r} but the observation for {obs['preset']!r}"
        )
    if args.chains is not None:
        note = "--chains is deprecated and ignored (the draws are stored as 4, 3 or 2 chains"
        print(f"numpyro-diffprior sample: {note}, whichever divides --num, or 1)", file=sys.stderr)
    sampler, run_options = sampler_from_args(args)
    runner = IIDSampler(sampler, args.num, **run_options)
    runner.run(
        jax.random.key(args.seed),
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
    idata = runner.to_inference_data(truth=truth or None)
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
    if runner.num_diverged:
        print(
            f"numpyro-diffprior sample: {runner.num_diverged} of {args.num} draws diverged "
            "(flagged in sample_stats['diverging'] and attrs['num_diverged'] of the file); "
            "the result is not a posterior",
            file=sys.stderr,
        )
        return DIVERGED_EXIT_CODE
    return 0
