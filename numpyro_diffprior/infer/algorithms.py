"""The pieces of a diffusion posterior algorithm, each with its own settings, and the library's
default settings in one place.

Guidance (the likelihood term of the posterior score; `infer.guidance`):

- `MMPS(covariance="joint", cg_maxiter=10, clip=None)` (Rozet et al. 2024): exact for a
  Gaussian prior with these defaults;
- `Annealed(clip=None)` (Remy et al. 2023): the likelihood convolved with the forward noise;
- `DPS(scale=1.0)` (Chung et al. 2023).

Refinements of each draw, applied in the order given to `DiffusionPosteriorSampler`:

- `ThetaRefresh(steps)`: a Gibbs step theta ~ p(theta | kappa) of the prior;
- `NonCentredHMC(steps, leapfrog=16, step_size=0.05, sigma=0.02, whitening=None)`:
  unadjusted HMC in non-centred coordinates (`infer.noncentred`).

The objects are frozen dataclasses: a setting belongs to the piece it configures, so a setting
that cannot apply to the chosen guidance cannot be passed to it.

Defaults: `DIFFUSION_DEFAULTS` (the reverse process), `LANGEVIN_DEFAULTS`, `AMORTIZED_DEFAULTS`
(`infer.amortized.AmortizedPosteriorSampler`), `RUN_DEFAULTS` (how a
run is computed: `infer.runner.IIDSampler`) are the class signatures' defaults and the CLI's;
`SHIPPED_NETWORK_SETTINGS` are the settings that compensate for the shipped network's errors
(`DiffusionPosteriorSampler.for_shipped_network`); `AMORTIZED_FAST_SETTINGS` trade the
amortised sampler's accuracy for fewer network calls
(`AmortizedPosteriorSampler(model, **AMORTIZED_FAST_SETTINGS)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "MMPS",
    "Annealed",
    "DPS",
    "ThetaRefresh",
    "NonCentredHMC",
    "as_guidance",
    "MMPS_COVARIANCE",
    "DIFFUSION_DEFAULTS",
    "LANGEVIN_DEFAULTS",
    "RUN_DEFAULTS",
    "SHIPPED_NETWORK_SETTINGS",
    "AMORTIZED_FAST_SETTINGS",
    "SHIPPED_NETWORK_GUIDANCE",
]

MMPS_COVARIANCE = ("joint", "kappa", "cross")


def _check_clip(clip):
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0 or None, got {clip}")


@dataclass(frozen=True)
class MMPS:
    """Moment-matching posterior sampling: p(y | x_sigma) ~ N(y; A D + b, Sigma_n + A V A^T)
    with the Tweedie covariance V = sigma^2 dD/dx, solved by up to `cg_maxiter` CG steps.

    covariance: "joint" (the whole V; exact for a Gaussian prior), "kappa" (its kappa block:
    theta follows the prior score given the guided map, which shrinks theta towards the prior
    mean far from it) or "cross" (the kappa block, and theta through the theta-kappa cross
    block by one more jvp; equal to "joint" for a symmetric Jacobian, without the vjp through
    the theta inputs that a trained network's Jacobian can make unstable).
    clip: if set, each draw's guidance shift is bounded by clip sqrt(D) min(sigma, 1)
    (`guidance.clip_guidance`); an exact Gaussian prior never reaches a bound of 2.
    """

    covariance: str = "joint"
    cg_maxiter: int = 10
    clip: float | None = None
    name: ClassVar[str] = "mmps"

    def __post_init__(self):
        if self.covariance not in MMPS_COVARIANCE:
            raise ValueError(
                f"MMPS covariance must be one of {MMPS_COVARIANCE}, got {self.covariance!r}"
            )
        if int(self.cg_maxiter) < 1:
            raise ValueError(f"cg_maxiter must be >= 1, got {self.cg_maxiter}")
        _check_clip(self.clip)


@dataclass(frozen=True)
class Annealed:
    """Annealed (noise-convolved) Gaussian likelihood N(y; A x + b, Sigma_n + sigma^2
    diag(A A^T)): exact as sigma -> 0 and for annealed Langevin's stationary law at each
    level, biased inside a one-pass reverse diffusion. clip as for `MMPS`."""

    clip: float | None = None
    name: ClassVar[str] = "annealed"

    def __post_init__(self):
        _check_clip(self.clip)


@dataclass(frozen=True)
class DPS:
    """Diffusion posterior sampling: after each reverse step x <- x - zeta grad ||W r||
    (the paper's zeta'/||r|| rule; `scale` = 2 zeta'). Works with any differentiable
    likelihood; miscalibrated (docs/sampling.md)."""

    scale: float = 1.0
    name: ClassVar[str] = "dps"

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(f"DPS scale must be > 0, got {self.scale}")


GUIDANCE = {cls.name: cls for cls in (Annealed, DPS, MMPS)}


def as_guidance(guidance):
    """A guidance object from an object or a name ("mmps", "annealed", "dps": defaults)."""
    if isinstance(guidance, MMPS | Annealed | DPS):
        return guidance
    if isinstance(guidance, str) and guidance in GUIDANCE:
        return GUIDANCE[guidance]()
    raise ValueError(
        f"unknown guidance {guidance!r}; valid: MMPS(), Annealed(), DPS() or {', '.join(GUIDANCE)}"
    )


@dataclass(frozen=True)
class ThetaRefresh:
    """End each draw with theta ~ p(theta | kappa) of the prior in `steps` Heun steps
    (`diffusion.samplers.sample_theta_given_kappa`, 2 steps - 1 denoiser calls). Exact when the
    likelihood sees kappa only and the prior's replacement conditioning is; approximate with
    coupling (docs/sampling.md)."""

    steps: int = 32

    def __post_init__(self):
        if int(self.steps) < 1:
            raise ValueError(f"ThetaRefresh steps must be >= 1, got {self.steps}")

    def denoiser_calls(self) -> int:
        return 2 * int(self.steps) - 1


@dataclass(frozen=True)
class NonCentredHMC:
    """`steps` unadjusted HMC trajectories of `leapfrog` steps of size `step_size` on
    p_sigma(x) p(y | x) at `sigma`, in non-centred coordinates (`infer.noncentred`; one
    denoiser call per leapfrog step). With an exact score it removes MMPS' shrinkage of theta
    towards the prior mean; with the shipped network it is unstable (docs/sampling.md).
    whitening: "spectral" (the preset's theory spectrum; the default for priors with a
    preset), "identity", or an `infer.noncentred.Whitening`."""

    steps: int = 40
    leapfrog: int = 16
    step_size: float = 0.05
    sigma: float = 0.02
    whitening: object = None

    def __post_init__(self):
        from numpyro_diffprior.infer.noncentred import Whitening

        if int(self.steps) < 1 or int(self.leapfrog) < 1:
            raise ValueError(
                f"NonCentredHMC steps and leapfrog must be >= 1, got {self.steps}, {self.leapfrog}"
            )
        if not (self.step_size > 0 and self.sigma > 0):
            raise ValueError("NonCentredHMC step_size and sigma must be > 0")
        w = self.whitening
        if not (w is None or (isinstance(w, str) and w in ("spectral", "identity"))
                or isinstance(w, Whitening)):  # fmt: skip
            raise ValueError(f"whitening must be 'spectral', 'identity' or a Whitening, got {w!r}")

    def denoiser_calls(self) -> int:
        return int(self.steps) * int(self.leapfrog)


# The reverse process of `DiffusionPosteriorSampler`: the settings under which MMPS (with its
# defaults) is exact for a Gaussian prior (Heun ODE from sigma_max 80; docs/sampling.md).
DIFFUSION_DEFAULTS = dict(
    sampler="ode",
    num_steps=64,
    sigma_min=0.002,
    sigma_max=80.0,
    rho=7.0,
    num_corrector_steps=0,
    corrector_step_size=0.1,
)
# `AnnealedLangevinSampler`: the 100 x 5 ladder from sigma_max 1 (docs/sampling.md).
LANGEVIN_DEFAULTS = dict(
    sigma_max=1.0, sigma_min=0.01, num_levels=100, num_steps_per_level=5, step_size=0.1
)
# `AmortizedPosteriorSampler`: DPM-Solver++(2M) on the probability-flow ODE from sigma_max 80,
# 20 steps equal in log sigma (rho = inf; 20 denoiser calls per draw): on the exact oracle as
# accurate as 32 steps of the rho = 7 ladder, which crowds its steps far below the posterior's
# scale (docs/sampling.md).
AMORTIZED_DEFAULTS = dict(
    sampler="dpmpp-2m", num_steps=20, sigma_min=0.002, sigma_max=80.0, rho=math.inf
)
# A named faster choice: DPM-Solver++(3M) on 12 steps equal in log sigma (12 denoiser calls per
# draw, 0.6x the default's). Not exact: on the exact oracle the posterior spreads come out up
# to 3 % wide (the default: 1.7 %); docs/sampling.md gives its error with the shipped model,
# its calibration and its cost.
AMORTIZED_FAST_SETTINGS = dict(sampler="dpmpp-3m", num_steps=12)
# How a run is computed (`infer.runner.IIDSampler`); none of them changes the algorithm.
RUN_DEFAULTS = dict(chunk_size=128, num_workers=1, progress_bar=True, shard=False)

# Settings that compensate for the shipped network's errors; measured, not exact. With an exact
# score they are biased: `DiffusionPosteriorSampler.for_shipped_network` gives the numbers.
SHIPPED_NETWORK_SETTINGS = dict(
    guidance=MMPS(covariance="kappa", cg_maxiter=3, clip=2.0),
    sampler="sde",
    num_steps=64,
    sigma_max=5.0,
)
# ... and each guidance by name as those settings have it (the clip bounds annealed guidance too).
SHIPPED_NETWORK_GUIDANCE = {
    "mmps": SHIPPED_NETWORK_SETTINGS["guidance"],
    "annealed": Annealed(clip=2.0),
    "dps": DPS(),
}
