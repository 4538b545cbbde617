"""The observations an amortised model is trained on, and the range it may be used in.

`ObservationRange` records the family (saved in the checkpoint's `config.json` under
"observation_range"; the sampler refuses inputs outside it). Each training example gets:

- noise: one factor f per observation, log-uniform in `noise_factor` (default 0.5-2), times the
  preset's per-bin pixel noise (`reference_noise` = `preset.noise_std()`); the shear is
  `kaiser_squires(kappa) + f sigma_i n`, n ~ N(0, I);
- a mask shared by every bin and both shear components, of one of the `mask_family` kinds
  (each equally likely) with a masked fraction drawn uniformly in [0, `max_masked_fraction`]:
  "none" (nothing masked), "holes" (random square holes of 1 to N/4 pixels a side - bright
  stars, bad fields - added one by one while the masked fraction stays under the draw) and
  "edges" (a band along one random side of the field - a survey edge - as wide as the draw
  allows);
- with probability `uncond_prob` (default 0.1) no data at all (every pixel masked, all features
  0): the model stays a good prior, which is what it is when used without an observation.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from numpyro_diffprior.amortized.features import FEATURE_LAYOUT, ShearObservation
from numpyro_diffprior.simulator.shear import kaiser_squires

__all__ = ["ObservationRange", "MASK_FAMILY", "draw_mask", "draw_observations"]

MASK_FAMILY = ("none", "holes", "edges")
_MAX_HOLES = 64


@dataclasses.dataclass(frozen=True)
class ObservationRange:
    """What a conditional model was trained on (module docstring); hashable (a pytree aux)."""

    reference_noise: tuple[float, ...]  # per-bin pixel noise std the factors multiply
    noise_factor: tuple[float, float] = (0.5, 2.0)
    mask_family: tuple[str, ...] = MASK_FAMILY
    max_masked_fraction: float = 0.4
    uncond_prob: float = 0.1
    feature_layout: str = FEATURE_LAYOUT

    def __post_init__(self):
        lo, hi = self.noise_factor
        if not 0 < lo <= hi or not all(s > 0 for s in self.reference_noise):
            raise ValueError(f"need 0 < noise_factor[0] <= noise_factor[1], got {lo}, {hi}")
        unknown = [m for m in self.mask_family if m not in MASK_FAMILY]
        if unknown or not self.mask_family:
            raise ValueError(f"mask_family must be a non-empty subset of {MASK_FAMILY}")
        if not 0 <= self.max_masked_fraction < 1:
            raise ValueError(
                f"max_masked_fraction must be in [0, 1), got {self.max_masked_fraction}"
            )
        if not 0 <= self.uncond_prob < 1:
            raise ValueError(f"uncond_prob must be in [0, 1), got {self.uncond_prob}")

    @classmethod
    def for_preset(cls, preset, **kwargs) -> ObservationRange:
        ref = tuple(float(s) for s in preset.noise_std())
        return cls(reference_noise=ref, **kwargs)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> ObservationRange:
        d = dict(d)
        for k in ("reference_noise", "noise_factor", "mask_family"):
            d[k] = tuple(d[k])
        return cls(**d)


def _holes(rng_key, npix, fraction):
    k_size, k_pos = jax.random.split(rng_key)
    sizes = jax.random.randint(k_size, (_MAX_HOLES,), 1, max(2, npix // 4) + 1)
    corners = jax.random.uniform(k_pos, (_MAX_HOLES, 2))
    yy, xx = jnp.meshgrid(jnp.arange(npix), jnp.arange(npix), indexing="ij")

    def add(masked, hole):
        size, (u, v) = hole
        y0 = jnp.floor(u * (npix - size + 1)).astype(jnp.int32)
        x0 = jnp.floor(v * (npix - size + 1)).astype(jnp.int32)
        square = (yy >= y0) & (yy < y0 + size) & (xx >= x0) & (xx < x0 + size)
        new = masked | square
        return jnp.where(jnp.mean(new) <= fraction, new, masked), None

    masked, _ = jax.lax.scan(add, jnp.zeros((npix, npix), bool), (sizes, corners))
    return masked


def _edge(rng_key, npix, fraction):
    width = jnp.floor(fraction * npix)
    side = jax.random.randint(rng_key, (), 0, 4)
    yy, xx = jnp.meshgrid(jnp.arange(npix), jnp.arange(npix), indexing="ij")
    coord = jnp.stack([yy, npix - 1 - yy, xx, npix - 1 - xx])[side]
    return coord < width


def draw_mask(rng_key, npix: int, obs_range: ObservationRange):
    """One (N, N) bool mask, True = observed, from the family of `obs_range`."""
    k_kind, k_frac, k_shape, k_unc = jax.random.split(rng_key, 4)
    fraction = jax.random.uniform(k_frac, (), maxval=obs_range.max_masked_fraction)
    kinds = {
        "none": lambda: jnp.zeros((npix, npix), bool),
        "holes": lambda: _holes(k_shape, npix, fraction),
        "edges": lambda: _edge(k_shape, npix, fraction),
    }
    branches = [kinds[m] for m in obs_range.mask_family]
    kind = jax.random.randint(k_kind, (), 0, len(branches))
    masked = jax.lax.switch(kind, branches)
    empty = jax.random.uniform(k_unc) < obs_range.uncond_prob
    return ~(masked | empty)


def draw_observations(rng_key, kappa, obs_range: ObservationRange) -> ShearObservation:
    """Noisy, masked shear observations of maps kappa (B, C, N, N) (module docstring)."""
    batch, n_bins, npix = kappa.shape[0], kappa.shape[1], kappa.shape[-1]
    k_noise, k_factor, k_mask = jax.random.split(rng_key, 3)
    lo, hi = (math.log(v) for v in obs_range.noise_factor)
    factor = jnp.exp(jax.random.uniform(k_factor, (batch,), minval=lo, maxval=hi))
    ref = jnp.asarray(obs_range.reference_noise, kappa.dtype)
    std = factor[:, None] * ref[None, :]  # (B, C)
    std = jnp.broadcast_to(std[:, :, None, None, None], (batch, n_bins, 2, npix, npix))
    observed = jax.vmap(lambda k: draw_mask(k, npix, obs_range))(jax.random.split(k_mask, batch))
    observed = jnp.broadcast_to(observed[:, None, None], std.shape)
    shear = kaiser_squires(kappa) + std * jax.random.normal(k_noise, std.shape, kappa.dtype)
    return ShearObservation(jnp.where(observed, shear, 0.0), jnp.where(observed, std, jnp.inf))
