"""`--method amortized` of `numpyro-diffprior sample` and `calibrate`: the conditional model
(`amortized.AmortizedPrior`, `--model` a checkpoint of `train --conditional` or a preset whose
conditional model ships - none does yet: the error says how to train one) sampled by
`infer.amortized.AmortizedPosteriorSampler` on `infer.models.shear_model`. Not a command.
"""

from __future__ import annotations

__all__ = ["GUIDANCE_FLAGS", "load_prior_for", "amortized_sampler", "check_sampler_flag"]

# flags of `sample` that configure guidance or refinements, which the amortised sampler lacks
GUIDANCE_FLAGS = ("guidance", "mmps_covariance", "guidance_clip", "cg_maxiter",
                  "corrector_steps", "theta_refresh_steps", "steps_per_level")  # fmt: skip


def load_prior_for(method: str, model):
    """The prior of `--model` for `method`: an AmortizedPrior for "amortized"."""
    if method == "amortized":
        from numpyro_diffprior.amortized.prior import load_amortized_prior

        return load_amortized_prior(model)
    from numpyro_diffprior.prior import load_prior

    return load_prior(model)


def check_sampler_flag(method: str, sampler) -> None:
    """`--sampler dpmpp-2m|3m` are the amortised sampler's only (the guided one: ode and sde)."""
    if method != "amortized" and sampler in ("dpmpp-2m", "dpmpp-3m"):
        raise ValueError(
            f"--sampler {sampler} applies to --method amortized only (guided: ode, sde)"
        )


def amortized_sampler(args):
    """The AmortizedPosteriorSampler of the `sample` flags (--steps, --sampler, --sigma-max)."""
    from numpyro_diffprior.infer.amortized import AMORTIZED_DEFAULTS as D
    from numpyro_diffprior.infer.amortized import AmortizedPosteriorSampler
    from numpyro_diffprior.infer.models import shear_model

    for flag in GUIDANCE_FLAGS:
        if getattr(args, flag, None) is not None:
            raise ValueError(
                f"--{flag.replace('_', '-')} does not apply to --method amortized (no guidance: "
                "the observation is an input of the conditional model)"
            )
    return AmortizedPosteriorSampler(
        shear_model,
        sampler=args.sampler or D["sampler"],
        num_steps=args.steps or D["num_steps"],
        sigma_max=args.sigma_max or D["sigma_max"],
    )
