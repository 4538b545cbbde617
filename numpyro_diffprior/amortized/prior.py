"""`AmortizedPrior`: a `DiffusionPrior` that also holds a conditional denoiser of
(theta, kappa) given an observed shear map (docs/sampling.md, "Amortised posterior").

Put it at the prior site of the same NumPyro model the other samplers take
(`shear_model(prior=AmortizedPrior.load(DIR), shear_obs=..., mask=..., noise_std=...)`) and run
`infer.amortized.AmortizedPosteriorSampler`: it reads the observation, mask and noise from the
model's shear likelihood and samples with the conditional denoiser, no guidance. As a plain
`DiffusionPrior` (sample, score, denoise) it is the conditional model given no data (every
pixel masked), which its training keeps a good prior (`ObservationRange.uncond_prob`).

`observation_range` (an `amortized.simulate.ObservationRange`, None for an exact oracle) is
what the model was trained on; the sampler refuses observations outside it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from numpyro_diffprior.amortized.features import observed_pixels
from numpyro_diffprior.amortized.simulate import ObservationRange
from numpyro_diffprior.prior import DiffusionPrior, checkpoint_fields, load_prior

__all__ = [
    "AmortizedPrior",
    "load_amortized_prior",
    "train_hint",
    "check_observation_range",
    "require_amortized",
    "shear_shape",
]

_TOL = 1e-3  # relative slack of the noise-range check

_AMORTIZED_SUFFIX = "-amortized"


def train_hint(preset_name: str, init_from: str = "pretrained") -> str:
    return (
        f"train one with `numpyro-diffprior train --conditional --preset {preset_name} "
        f"--init-from {init_from} --steps 20000 --out DIR` (hours on a GPU; docs/sampling.md, "
        '"Amortised posterior") and pass DIR/checkpoint'
    )


@dataclasses.dataclass(frozen=True)
class _PriorView:
    """apply_fn(params, x_n, sigma) of a conditional denoiser given no data."""

    conditional: object

    def __call__(self, params, x, sigma):
        return self.conditional.denoise_prior(params, x, sigma)


class AmortizedPrior(DiffusionPrior):
    """A joint prior with a conditional denoiser (module docstring).

    conditional: an object with `encode`, `__call__` and `denoise_prior`
    (`amortized.denoiser`); params: its parameters (pytree data, as a prior's weights).
    """

    pytree_aux_fields = ("conditional", "observation_range")

    def __init__(self, conditional, *, params, observation_range=None, **kwargs):
        if kwargs.get("apply_fn") is not None or kwargs.get("denoise_fn") is not None:
            raise ValueError("AmortizedPrior takes `conditional`, not apply_fn/denoise_fn")
        if observation_range is not None and not isinstance(observation_range, ObservationRange):
            raise ValueError("observation_range must be an ObservationRange or None")
        self.conditional, self.observation_range = conditional, observation_range
        super().__init__(apply_fn=_PriorView(conditional), params=params, **kwargs)

    def encode(self, observation):
        """Per-observation context of a (batch of) `ShearObservation`, leading axis kept."""
        return self.conditional.encode(self.params, observation, self.normalizer)

    def conditional_denoise_normalized(self, x_n, sigma, context):
        """E[x_n | x_n + sigma n, observation]; x_n (B, D), sigma (B,), one context row each."""
        return self.conditional(self.params, x_n, sigma, context)

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, checkpoint, **kwargs) -> AmortizedPrior:
        """An amortised prior from a conditional `checkpoints.Checkpoint` (EMA weights)."""
        from numpyro_diffprior.amortized.denoiser import ConditionalNetworkDenoiser

        config, preset = checkpoint.config, checkpoint.preset
        if not config.get("conditional"):
            raise ValueError(
                f"checkpoint {checkpoint.path} is a joint prior, not a conditional (amortised) "
                f"model; {train_hint(preset.name, str(checkpoint.path))}"
            )
        denoiser = ConditionalNetworkDenoiser(
            checkpoint.network_config, preset, checkpoint.training_config.sigma_data
        )
        return cls(
            denoiser,
            observation_range=ObservationRange.from_dict(config["observation_range"]),
            **checkpoint_fields(checkpoint),
            **kwargs,
        )

    @classmethod
    def load(cls, path, **kwargs) -> AmortizedPrior:
        """An amortised prior from a checkpoint directory written by `train --conditional`."""
        from numpyro_diffprior.checkpoints import load_checkpoint

        return cls.from_checkpoint(load_checkpoint(path), **kwargs)

    @classmethod
    def from_pretrained(cls, preset_name: str = "lsst-y10-coarse", **kwargs) -> AmortizedPrior:
        """The conditional model shipped for a preset (lsst-y10-coarse; for another preset, a
        ValueError giving the command that trains one)."""
        from numpyro_diffprior.checkpoints import _PRETRAINED
        from numpyro_diffprior.presets import get_preset

        preset = get_preset(preset_name)
        path = _PRETRAINED / f"{preset.name}{_AMORTIZED_SUFFIX}"
        if not (path / "config.json").is_file():
            raise ValueError(
                f"no trained amortised (conditional) model ships for preset {preset.name!r} "
                f"(looked in {path}); {train_hint(preset.name)}"
            )
        return cls.load(path, **kwargs)


def load_amortized_prior(model) -> AmortizedPrior:
    """An AmortizedPrior from a conditional checkpoint directory or a preset name (shipped)."""
    return load_prior(model, prior_class=AmortizedPrior)


def require_amortized(prior):
    """ValueError unless `prior` is an AmortizedPrior (a conditional model)."""
    if not isinstance(prior, AmortizedPrior):
        preset = getattr(prior, "preset", None) or "PRESET"
        raise ValueError(
            f"the amortised sampler needs an AmortizedPrior (a conditional model) at the model's "
            f"prior site, got a {type(prior).__name__}; {train_hint(preset)} "
            "(amortized.AmortizedPrior.load(DIR/checkpoint))"
        )


def shear_shape(prior):
    """The (C, 2, N, N) shape of one shear observation for `prior`."""
    n_bins, ny, nx = prior.map_shape
    return (n_bins, 2, ny, nx)


def check_observation_range(prior, observations) -> None:
    """ValueError if `observations` (a ShearObservation, (C, 2, N, N) or (K, C, 2, N, N)) lie
    outside what `prior` was trained on (its `observation_range`; None: any)."""
    require_amortized(prior)
    shape = shear_shape(prior)
    std = np.asarray(observations.noise_std)
    if std.shape[-4:] != shape or np.shape(observations.shear) != std.shape:
        raise ValueError(
            f"the observation has shape {np.shape(observations.shear)}, but the amortised model "
            f"was trained for preset {prior.preset!r}: shear maps (C, 2, N, N) = {shape}"
        )
    rng = prior.observation_range
    std = std.reshape((-1,) + shape)
    for k, s in enumerate(std):
        where = f"observation {k}: " if std.shape[0] > 1 else ""
        observed = np.asarray(observed_pixels(s))
        if not observed.any():
            raise ValueError(f"{where}no observed pixel (every pixel is masked)")
        if rng is None:
            continue
        if not (observed == observed[:1, :1]).all():
            raise ValueError(
                f"{where}the mask differs between tomographic bins or shear components; the "
                "amortised model was trained on masks shared by every bin and both components"
            )
        frac = 1.0 - float(observed[0, 0].mean())
        if frac > rng.max_masked_fraction + 1e-6:
            raise ValueError(
                f"{where}the mask hides {frac:.1%} of the pixels, outside the training range: "
                f"the amortised model was trained on masks ({', '.join(rng.mask_family)}) "
                f"hiding at most {rng.max_masked_fraction:.0%}"
            )
        ref = np.broadcast_to(np.asarray(rng.reference_noise)[:, None, None, None], shape)
        ratio = s[observed] / ref[observed]
        lo, hi = rng.noise_factor
        if ratio.min() < lo * (1 - _TOL) or ratio.max() > hi * (1 + _TOL):
            raise ValueError(
                f"{where}noise level outside the training range: noise_std is "
                f"{ratio.min():.3g}-{ratio.max():.3g} x the pixel noise of preset "
                f"{prior.preset!r} ({', '.join(f'{v:.4g}' for v in rng.reference_noise)} per "
                f"bin); the amortised model was trained on {lo:g}-{hi:g} x"
            )
