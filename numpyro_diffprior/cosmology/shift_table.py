"""CosMomentum log-normal shifts lambda_i(Omega_m, sigma_8, w_0) of the LSST-Y10 bins.

The table is the one the sbi_lens simulator uses for its LSST-Y10 maps (the maps of the JADE
paper): CosMomentum (Friedrich et al. 2018, 2020) shifts for a 2.34 arcmin smoothing scale, Smail
n(z) with a = 2, b = 0.68, z0 = 0.11, five equal-number bins with photo-z scatter 0.05, and
Omega_b, h, n_s at their fiducial values. It ships as `data/lognormal_shifts_lsst_y10.npz` with
the MIT notice of sbi_lens (`data/LICENSE-sbi_lens.txt`, Copyright (c) 2023 Differentiable
Universe Initiative), re-ordered so that its axes are (Omega_m, sigma_8, w_0, bin) as the
coordinates stored beside each value in sbi_lens' file say.

Two lookups (docs/design.md §2.3 and docs/simulator.md compare them):
- `"trilinear"`: trilinear interpolation on the table's own axes, grid points at the nodes,
  clamped to the table's box (the value at the nearest face, gradient zero across it).
- `"sbi-lens"`: sbi_lens' own lookup, which reads the first axis as Omega_m though it holds
  sigma_8 (and the second the other way round) and places the grid values at cell centres
  (index = (x - min) / (max - min) n - 1/2, nearest value outside). At the fiducial cosmology it
  gives lambda = 0.0071, 0.0200, 0.0366, 0.0612, 0.1148, against 0.0053, 0.0152, 0.0287, 0.0497,
  0.0975 from the trilinear lookup. Use it only to remake sbi_lens' exact maps.
Both are pure jnp and differentiable in theta.
"""

from __future__ import annotations

import functools
from importlib import resources

import jax.numpy as jnp
import numpy as np

__all__ = ["SHIFT_TABLE_LOOKUPS", "ShiftTable", "cosmomentum_shift", "load_shift_table"]

SHIFT_TABLE_LOOKUPS = ("trilinear", "sbi-lens")
_TABLE_FILE = "lognormal_shifts_lsst_y10.npz"


class ShiftTable:
    """The tabulated shifts: `axes` = (omega_m, sigma_8, w_0) grids, `shift` (n_m, n_s, n_w, C)."""

    def __init__(self, omega_m, sigma_8, w_0, shift):
        self.axes = tuple(np.asarray(a, np.float64) for a in (omega_m, sigma_8, w_0))
        self.shift = np.asarray(shift, np.float64)
        want = tuple(len(a) for a in self.axes)
        if self.shift.shape[:3] != want or self.shift.ndim != 4:
            raise ValueError(
                f"shift table must have shape {want} + (n_bins,), got {self.shift.shape}"
            )
        if any(np.any(np.diff(a) <= 0) for a in self.axes):
            raise ValueError("shift table axes must be strictly increasing")
        if not np.all(self.shift > 0):
            raise ValueError("shift table values must be positive")

    @property
    def n_bins(self) -> int:
        return self.shift.shape[-1]

    @property
    def bounds(self) -> np.ndarray:
        """(3, 2) box [min, max] of Omega_m, sigma_8, w_0."""
        return np.array([[a[0], a[-1]] for a in self.axes])


@functools.cache
def load_shift_table() -> ShiftTable:
    """The shipped LSST-Y10 CosMomentum table (read once)."""
    with resources.files("numpyro_diffprior.data").joinpath(_TABLE_FILE).open("rb") as f:
        d = np.load(f)
        return ShiftTable(d["omega_m"], d["sigma_8"], d["w_0"], d["shift"])


def _multilinear(values, index):
    """Linear interpolation of `values` (n_0, n_1, n_2, C) at fractional grid `index` (3,).

    `index` is clamped to [0, n_j - 1] on each axis (nearest value outside the grid)."""
    values = jnp.asarray(values)
    out = values
    for axis, n in enumerate(values.shape[:3]):
        i = jnp.clip(index[axis], 0.0, n - 1.0)
        lo = jnp.clip(jnp.floor(i), 0, n - 2).astype(jnp.int32)
        w = i - lo
        a = jnp.take(out, lo, axis=0)
        b = jnp.take(out, lo + 1, axis=0)
        out = (1.0 - w) * a + w * b
    return out


def cosmomentum_shift(omega_m, sigma_8, w_0, *, lookup: str = "trilinear", table=None):
    """Shifts lambda_i, shape (C,), of the CosMomentum table at (Omega_m, sigma_8, w_0).

    lookup: "trilinear" (the table's own axes, clamped to its box) or "sbi-lens" (sbi_lens'
    swapped-axes, cell-centred lookup; see the module docstring).
    """
    if lookup not in SHIFT_TABLE_LOOKUPS:
        raise ValueError(f"unknown shift-table lookup {lookup!r}; valid: {SHIFT_TABLE_LOOKUPS}")
    table = load_shift_table() if table is None else table
    x = jnp.stack([jnp.asarray(omega_m), jnp.asarray(sigma_8), jnp.asarray(w_0)])
    lo = jnp.asarray(table.bounds[:, 0], x.dtype)
    hi = jnp.asarray(table.bounds[:, 1], x.dtype)
    n = np.array(table.shift.shape[:3])
    values = jnp.asarray(table.shift, x.dtype)
    if lookup == "trilinear":
        return _multilinear(values, (x - lo) / (hi - lo) * (n - 1))
    # sbi_lens reads the Omega_m value on the first stored axis (which holds sigma_8) and the
    # sigma_8 value on the second; it normalises each by its own coordinate range.
    cell = (x - lo) / (hi - lo) * n - 0.5
    swapped = jnp.transpose(values, (1, 0, 2, 3))
    return _multilinear(swapped, cell)
