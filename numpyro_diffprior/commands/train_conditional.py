"""`numpyro-diffprior train --conditional`: the amortised model p(theta, kappa | shear)
(`amortized.training.train_conditional`). Flags and checks here (no jax at import); `train`
builds the network and training configs and hands over. Not a command of its own.

    numpyro-diffprior train --conditional --preset lsst-y10-coarse --init-from pretrained \
        --steps 20000 --out runs/amortized
"""

from __future__ import annotations

import math

__all__ = ["add_conditional_arguments", "check_conditional", "run_conditional"]

_FLAGS = ("noise_range", "mask_family", "max_masked_fraction", "uncond_prob")


def add_conditional_arguments(p):
    g = p.add_argument_group(
        "amortised posterior (--conditional)",
        "train a conditional model of (theta, kappa) given a noisy, masked shear map on fresh "
        "simulations (docs/sampling.md, 'Amortised posterior'); --init-from pretrained starts "
        "from the joint prior with the observation path at zero",
    )
    g.add_argument("--conditional", action="store_true", help="train the amortised model")
    g.add_argument("--noise-range", default=None,
                   help="LO,HI: noise levels in units of the preset's pixel noise, log-uniform "
                   "(default 0.5,2)")  # fmt: skip
    g.add_argument(
        "--mask-family",
        default=None,
        help="comma-separated mask kinds of none, holes, edges (default: all three)",
    )
    g.add_argument("--max-masked-fraction", type=float, default=None,
                   help="largest masked fraction of the field (default 0.4)")  # fmt: skip
    g.add_argument("--uncond-prob", type=float, default=None,
                   help="fraction of examples with no data, so the model stays a prior "
                   "(default 0.1)")  # fmt: skip


def check_conditional(args) -> dict:
    """The ObservationRange keyword arguments of the flags; ValueError naming a bad flag."""
    given = [f for f in _FLAGS if getattr(args, f, None) is not None]
    if not getattr(args, "conditional", False):
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} applies to --conditional only")
        return {}
    if getattr(args, "coordinator", None) is not None:
        raise ValueError("--conditional trains on one host; leave out --coordinator")
    out = {}
    if args.noise_range is not None:
        try:
            lo, hi = (float(v) for v in str(args.noise_range).split(","))
        except ValueError:
            lo = hi = math.nan
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
            raise ValueError(f"--noise-range must be LO,HI with 0 < LO <= HI, got "
                             f"{args.noise_range!r}")  # fmt: skip
        out["noise_factor"] = (lo, hi)
    if args.mask_family is not None:
        kinds = tuple(k.strip() for k in str(args.mask_family).split(",") if k.strip())
        bad = [k for k in kinds if k not in ("none", "holes", "edges")]
        if bad or not kinds:
            raise ValueError(f"--mask-family must list none, holes, edges; got "
                             f"{args.mask_family!r}")  # fmt: skip
        out["mask_family"] = kinds
    for flag, key in (("max_masked_fraction", "max_masked_fraction"),
                      ("uncond_prob", "uncond_prob")):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            if not 0 <= value < 1:
                raise ValueError(f"--{flag.replace('_', '-')} must be in [0, 1), got {value}")
            out[key] = float(value)
    return out


def run_conditional(args, network_config, training_config, sample_batch, init_from) -> int:
    from numpyro_diffprior.amortized.simulate import ObservationRange
    from numpyro_diffprior.amortized.training import train_conditional
    from numpyro_diffprior.presets import get_preset

    obs_range = ObservationRange.for_preset(get_preset(args.preset), **check_conditional(args))
    ckpt = train_conditional(
        args.preset, args.out, steps=args.steps, sample_batch=sample_batch,
        network_config=network_config, training_config=training_config,
        observation_range=obs_range, seed=args.seed, checkpoint_every=args.checkpoint_every,
        resume=args.resume, log_every=args.log_every, progress=not args.no_progress,
        init_from=init_from, max_seconds=args.max_seconds,
    )  # fmt: skip
    print(
        f"conditional checkpoint: {ckpt.path} (step {ckpt.step}); sample with "
        f"`numpyro-diffprior sample --method amortized --model {ckpt.path} --obs OBS.npz`"
    )
    return 0
