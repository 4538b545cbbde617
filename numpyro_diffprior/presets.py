"""Named presets: a survey, a map geometry and the sampled cosmological parameters."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from numpyro_diffprior.cosmology.params import PARAMETER_NAMES
from numpyro_diffprior.cosmology.shifts import check_shift_model
from numpyro_diffprior.survey import LSST_Y10, Survey, pixel_noise_std

__all__ = ["Preset", "PRESETS", "DEFAULT_PRESET", "get_preset", "preset_names"]


@dataclasses.dataclass(frozen=True)
class Preset:
    """A survey on a square field of `npix` x `npix` pixels with `field_deg` degrees a side.

    `param_names` are the cosmological parameters that vary; the others stay at fiducial.
    `shift_model` sets the log-normal shifts lambda_i(theta) of the maps
    (`cosmology.shifts.SHIFT_MODELS`): "cosmomentum" (the CosMomentum table of sbi_lens and the
    JADE paper, trilinear on its own axes; LSST-Y10 five-bin surveys only), "sbi-lens" (the same
    table with sbi_lens' own swapped-axes lookup, to remake its exact maps) or "empty-beam"
    (|kappa| of an empty line of sight; any survey, maps 15-50 % less skewed).
    """

    name: str
    survey: Survey
    npix: int
    field_deg: float
    param_names: tuple[str, ...]
    shift_model: str = "empty-beam"

    def __post_init__(self):
        unknown = [p for p in self.param_names if p not in PARAMETER_NAMES]
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; valid: {list(PARAMETER_NAMES)}")
        if self.npix < 4 or self.npix % 2:
            raise ValueError(f"npix must be an even integer >= 4, got {self.npix}")
        check_shift_model(self.shift_model, self.survey)

    @property
    def n_bins(self) -> int:
        return self.survey.n_bins

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    @property
    def map_shape(self) -> tuple[int, int, int]:
        """Shape of kappa, (n_bins, npix, npix)."""
        return (self.n_bins, self.npix, self.npix)

    @property
    def shear_shape(self) -> tuple[int, int, int, int]:
        """Shape of the shear, (n_bins, 2, npix, npix)."""
        return (self.n_bins, 2, self.npix, self.npix)

    @property
    def field_rad(self) -> float:
        return math.radians(self.field_deg)

    @property
    def pixel_arcmin(self) -> float:
        return self.field_deg * 60.0 / self.npix

    def noise_std(self) -> np.ndarray:
        """Per-bin pixel noise std of each shear component, shape (n_bins,)."""
        return pixel_noise_std(self.survey, self.npix, self.field_deg)

    def same_spectra(self, other: Preset) -> bool:
        """True if `other` has the same survey, geometry and parameters (hence the same C_l),
        whatever its shift model."""
        return dataclasses.replace(other, shift_model=self.shift_model) == self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["param_names"] = list(self.param_names)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Preset:
        d = dict(d)
        # files written before shift models existed were all made with empty-beam shifts
        d.setdefault("shift_model", "empty-beam")
        d["survey"] = Survey.from_dict(d["survey"])
        d["param_names"] = tuple(d["param_names"])
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> Preset:
        return cls.from_dict(json.loads(s))


PRESETS: dict[str, Preset] = {
    "lsst-y10-coarse": Preset(
        name="lsst-y10-coarse",
        survey=LSST_Y10,
        npix=32,
        field_deg=5.0,
        param_names=("Omega_c", "sigma_8"),
        shift_model="cosmomentum",
    ),
    "lsst-y10-jade": Preset(
        name="lsst-y10-jade",
        survey=LSST_Y10,
        npix=128,
        field_deg=5.0,
        param_names=PARAMETER_NAMES,
        shift_model="cosmomentum",
    ),
    "tiny": Preset(
        name="tiny",
        survey=dataclasses.replace(LSST_Y10, n_bins=2),
        npix=16,
        field_deg=5.0,
        param_names=("Omega_c", "sigma_8"),
    ),
}

DEFAULT_PRESET = "lsst-y10-coarse"


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(preset: str | Preset | None = None) -> Preset:
    """Return the preset called `preset` (default `lsst-y10-coarse`); a Preset passes through."""
    if preset is None:
        preset = DEFAULT_PRESET
    if isinstance(preset, Preset):
        return preset
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[preset]
