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

from numpyro_diffprior.amortized.simulate import ObservationRange
from numpyro_diffprior.prior import DiffusionPrior, checkpoint_fields, load_prior

__all__ = ["AmortizedPrior", "load_amortized_prior", "train_hint"]

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
