"""The pre-0.x keyword form of the samplers, mapped onto the algorithm objects of
`infer.algorithms` and the run options of `IIDSampler` with a `DeprecationWarning` (kept
for one release).

Old form: ``DiffusionPosteriorSampler(model, guidance="mmps", cg_maxiter=3,
mmps_covariance="kappa", guidance_clip=2, dps_scale=1, theta_refresh_steps=0,
noncentred_steps=0, noncentred_leapfrog=16, noncentred_step_size=0.05, noncentred_sigma=0.02,
whitening=None, chunk_size=256, num_chains=4, progress_bar=True, shard=False,
num_workers=1)``. A setting that cannot apply (say `mmps_covariance` with guidance "dps", or
`noncentred_leapfrog` without `noncentred_steps`) is a ValueError, where it used to be ignored.
"""

from __future__ import annotations

from numpyro_diffprior.infer.algorithms import (
    DPS,
    MMPS,
    Annealed,
    NonCentredHMC,
    ThetaRefresh,
    as_guidance,
)
from numpyro_diffprior.infer.kernel import RUN_OPTIONS, warn_deprecated

# old keyword -> (guidance names it applies to, field of the guidance object)
GUIDANCE_KWARGS = {
    "cg_maxiter": (("mmps",), "cg_maxiter"),
    "mmps_covariance": (("mmps",), "covariance"),
    "guidance_clip": (("mmps", "annealed"), "clip"),
    "dps_scale": (("dps",), "scale"),
}
NONCENTRED_KWARGS = {
    "noncentred_leapfrog": "leapfrog",
    "noncentred_step_size": "step_size",
    "noncentred_sigma": "sigma",
    "whitening": "whitening",
}
REFINEMENT_KWARGS = ("theta_refresh_steps", "noncentred_steps", *NONCENTRED_KWARGS)
_CLASSES = {"mmps": MMPS, "annealed": Annealed, "dps": DPS}


def _unexpected(cls_name, names):
    raise TypeError(f"{cls_name}() got unexpected keyword arguments {sorted(names)}")


def split_run_options(cls_name, legacy: dict) -> dict:
    """The deprecated run options among `legacy` (removed from it), with a warning."""
    options = {k: legacy.pop(k) for k in RUN_OPTIONS if k in legacy}
    if options:
        warn_deprecated(
            f"{cls_name}({', '.join(f'{k}=' for k in options)}...)",
            "the run options belong to the run: IIDSampler(sampler, num_samples, "
            "chunk_size=..., num_workers=..., progress_bar=..., shard=...); num_chains is "
            "chosen so that no draw is dropped",
            stacklevel=4,
        )
    return options


def guidance_from_legacy(cls_name, guidance, legacy: dict):
    """The guidance object for `guidance` (a name) and the old guidance keywords in
    `legacy` (removed from it); ValueError for a keyword that does not apply."""
    given = {k: legacy.pop(k) for k in GUIDANCE_KWARGS if k in legacy}
    if not given:
        return as_guidance(guidance)
    if not isinstance(guidance, str):
        raise ValueError(
            f"{sorted(given)} are settings of the guidance: set them on the guidance object "
            f"{guidance!r}"
        )
    name = as_guidance(guidance).name
    fields = {}
    for key, value in given.items():
        applies, field = GUIDANCE_KWARGS[key]
        if name not in applies:
            raise ValueError(
                f"{key} does not apply to guidance {name!r} (it is a setting of "
                f"{' / '.join(_CLASSES[a].__name__ + '(' + field + '=...)' for a in applies)})"
            )
        fields[field] = value
    obj = _CLASSES[name](**fields)
    args = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    warn_deprecated(
        f"{cls_name}({', '.join(f'{k}=' for k in given)}...)",
        f"pass guidance={type(obj).__name__}({args})",
        stacklevel=4,
    )
    return obj


def refinements_from_legacy(cls_name, legacy: dict) -> tuple:
    """(ThetaRefresh, NonCentredHMC) from the old keywords in `legacy` (removed from it)."""
    given = {k: legacy.pop(k) for k in REFINEMENT_KWARGS if k in legacy}
    if not given:
        return ()
    refresh = int(given.get("theta_refresh_steps", 0))
    steps = int(given.get("noncentred_steps", 0))
    if refresh < 0:
        raise ValueError(f"theta_refresh_steps must be >= 0, got {refresh}")
    if steps < 0:
        raise ValueError(f"noncentred_steps must be >= 0, got {steps}")
    nc = {NONCENTRED_KWARGS[k]: v for k, v in given.items() if k in NONCENTRED_KWARGS}
    if nc and not steps:
        raise ValueError(
            f"{sorted(k for k in given if k in NONCENTRED_KWARGS)} apply only with "
            "noncentred_steps > 0 (NonCentredHMC(steps=..., ...))"
        )
    out = ()
    if refresh:
        out += (ThetaRefresh(steps=refresh),)
    if steps:
        out += (NonCentredHMC(steps=steps, **nc),)
    warn_deprecated(
        f"{cls_name}({', '.join(f'{k}=' for k in given)}...)",
        f"pass refinements={out!r}",
        stacklevel=4,
    )
    return out
