"""Survey description (LSST Y10-like) and the quantities derived from it.

Numbers follow the LSST DESC SRD Y10 setting used by sbi_lens and the JADE paper:
shape noise 0.26, 27 gal/arcmin^2 split into equal-number tomographic bins, Smail n(z)
with (a, b, z0) = (2, 0.68, 0.11) and photo-z scatter 0.05 (1 + z).
"""

from __future__ import annotations

import dataclasses
import json
from math import erf, sqrt

import numpy as np

__all__ = [
    "Survey",
    "LSST_Y10",
    "smail_nz",
    "bin_edges",
    "tomographic_nz",
    "galaxies_per_bin",
    "pixel_area_arcmin2",
    "pixel_noise_std",
]


@dataclasses.dataclass(frozen=True)
class Survey:
    """Frozen description of a weak-lensing survey (docs/design.md §2.1)."""

    name: str = "lsst-y10"
    sigma_e: float = 0.26
    n_gal_arcmin2: float = 27.0
    n_bins: int = 5
    smail_a: float = 2.0
    smail_b: float = 0.68
    smail_z0: float = 0.11
    z_max: float = 10.0
    photoz_scatter: float = 0.05

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> Survey:
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown Survey fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> Survey:
        return cls.from_dict(json.loads(s))


LSST_Y10 = Survey()


def smail_nz(z, survey: Survey = LSST_Y10):
    """Un-normalised Smail redshift distribution n(z) ∝ z^a exp(-(z/z0)^b)."""
    z = np.asarray(z, dtype=float)
    return z**survey.smail_a * np.exp(-((z / survey.smail_z0) ** survey.smail_b))


def _z_grid(survey: Survey, num: int = 20001) -> np.ndarray:
    return np.linspace(0.0, survey.z_max, num)


def bin_edges(survey: Survey = LSST_Y10) -> np.ndarray:
    """Edges of equal-number bins in true redshift, shape (n_bins + 1,).

    For LSST Y10 these are about [0, 0.4535, 0.7224, 1.042, 1.539, 10].
    """
    z = _z_grid(survey)
    nz = smail_nz(z, survey)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (nz[1:] + nz[:-1]) * np.diff(z))])
    cdf /= cdf[-1]
    inner = np.interp(np.arange(1, survey.n_bins) / survey.n_bins, cdf, z)
    return np.concatenate([[0.0], inner, [survey.z_max]])


def tomographic_nz(z, survey: Survey = LSST_Y10) -> np.ndarray:
    """Normalised n_i(z) of each bin, shape (n_bins, len(z)).

    Each equal-number true-z bin [z_lo, z_hi] is smoothed by a Gaussian photo-z error of
    width photoz_scatter (1 + z), i.e. multiplied by the erf window
    P(z_lo < z_ph < z_hi | z), then normalised to unit integral.
    """
    z = np.asarray(z, dtype=float)
    edges = bin_edges(survey)
    nz = smail_nz(z, survey)
    width = sqrt(2.0) * survey.photoz_scatter * (1.0 + z)
    verf = np.vectorize(erf)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        window = 0.5 * (verf((hi - z) / width) - verf((lo - z) / width))
        ni = nz * window
        out.append(ni / np.trapezoid(ni, z))
    return np.stack(out)


def galaxies_per_bin(survey: Survey = LSST_Y10) -> np.ndarray:
    """Galaxy density per bin in arcmin^-2 (equal-number bins), shape (n_bins,)."""
    return np.full(survey.n_bins, survey.n_gal_arcmin2 / survey.n_bins)


def pixel_area_arcmin2(npix: int, field_deg: float) -> float:
    """Area of one square pixel in arcmin^2."""
    return (field_deg * 60.0 / npix) ** 2


def pixel_noise_std(survey: Survey, npix: int, field_deg: float) -> np.ndarray:
    """Shape-noise std per pixel and per shear component, sigma_e / sqrt(n_i A_pix).

    For 32 px over 5 deg and LSST Y10 this is 0.01193 in every bin.
    """
    n_i = galaxies_per_bin(survey)
    return survey.sigma_e / np.sqrt(n_i * pixel_area_arcmin2(npix, field_deg))
