"""The 2-parameter tabulated emulator `ClEmulator` and the spline helpers shared by both kinds.

For the 2-parameter presets (Omega_c, sigma_8; the rest at fiducial) log C_l^{ij} and
log lambda_i are tabulated with jax-cosmo (`spectra.angular_cl_reference`) on a grid and
interpolated by a tensor-product not-a-knot cubic spline (de Boor 1978) in the coordinates
x = log(Omega_c + Omega_b) = log Omega_m and y = log sigma_8, in which log C_l is nearly
linear (C_l ∝ Omega_m^~1.5-2 sigma_8^~2-3). The spline is linear in the table, so it is stored
as per-axis basis coefficients (4, n-1, n): evaluating it is two small contractions,
jit/vmap/grad-able in theta (the library never jits; the caller does).
`emulate_cl`, `emulate_shift` and `check_in_range` take either kind of emulator.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.presets import Preset

__all__ = [
    "ClEmulator",
    "emulate_cl",
    "emulate_shift",
    "check_in_range",
    "check_theta_shape",
    "spline_basis",
    "spline_interpolate",
    "OMEGA_C_RANGE",
    "SIGMA_8_RANGE",
]

FORMAT_VERSION = 1
OMEGA_C_RANGE = (0.02, 1.0)  # table range of the 2-parameter emulator, see docs/cosmology.md
SIGMA_8_RANGE = (0.1, 1.6)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["ell", "bounds", "offsets", "knots", "basis", "log_cl", "log_shift"],
    meta_fields=["param_names", "preset_json"],
)
@dataclasses.dataclass(frozen=True)
class ClEmulator:
    """Tabulated emulator (a pytree; `param_names` and `preset_json` are static).

    ell (L,); bounds (P, 2) valid range of each parameter; offsets (P,): the spline coordinate
    of parameter p is log(theta_p + offsets_p); knots: P arrays (n_p,) of spline knots;
    basis: P arrays (4, n_p - 1, n_p) of cubic-spline basis coefficients; log_cl
    (n_1, ..., n_P, C(C+1)/2, L) log C_l of the upper-triangle pairs (numpy triu order);
    log_shift (n_1, ..., n_P, C).
    """

    ell: jax.Array
    bounds: jax.Array
    offsets: jax.Array
    knots: tuple
    basis: tuple
    log_cl: jax.Array
    log_shift: jax.Array
    param_names: tuple[str, ...]
    preset_json: str

    @property
    def n_bins(self) -> int:
        return self.log_shift.shape[-1]

    @property
    def preset(self) -> Preset:
        return Preset.from_json(self.preset_json)

    def log_cl_pairs(self, theta):
        """log C_l of the upper-triangle bin pairs (numpy triu order), (C(C+1)/2, L)."""
        return _interpolate(self, theta, self.log_cl)

    def shift(self, theta):
        """Log-normal shifts lambda_i(theta), (C,)."""
        return jnp.exp(_interpolate(self, theta, self.log_shift))


def spline_basis(knots) -> np.ndarray:
    """Not-a-knot cubic-spline basis on `knots` (n,): coefficients (4, n - 1, n).

    The spline through values y (n,) is, on [knots[k], knots[k+1]],
    sum_m (basis[m, k] @ y) (x - knots[k])^(3 - m) (scipy PPoly convention).
    """
    from scipy.interpolate import CubicSpline

    knots = np.asarray(knots, dtype=np.float64)
    if knots.ndim != 1 or knots.size < 4 or np.any(np.diff(knots) <= 0):
        raise ValueError("knots must be a strictly increasing 1-D array of >= 4 values")
    return CubicSpline(knots, np.eye(knots.size), bc_type="not-a-knot").c


def _spline_weights(knots, basis, x):
    """Weights w (n,) with spline(x) = w @ y; x is clamped to the knot range."""
    n = knots.shape[0]
    k = jnp.clip(jnp.searchsorted(knots, x, side="right") - 1, 0, n - 2)
    dx = x - knots[k]
    c = basis[:, k, :]
    return ((c[0] * dx + c[1]) * dx + c[2]) * dx + c[3]


def check_theta_shape(theta, names):
    """theta as a float (>= float32) array of shape (len(names),), else a ValueError."""
    theta = jnp.asarray(theta)
    theta = theta.astype(jnp.result_type(theta.dtype, jnp.float32))
    if theta.shape != (len(names),):
        raise ValueError(
            f"theta must have shape ({len(names)},) for parameters {list(names)}, got {theta.shape}"
        )
    return theta


def spline_interpolate(knots, basis, coords, table):
    """Tensor-product spline of `table` (n_1, ..., n_P, ...) at coords (P,): one contraction
    per axis with `_spline_weights`."""
    out = table
    for k, b, x in zip(knots, basis, coords, strict=True):
        out = jnp.tensordot(_spline_weights(k, b, x).astype(out.dtype), out, axes=(0, 0))
    return out


def _interpolate(emulator: ClEmulator, theta, table):
    theta = check_theta_shape(theta, emulator.param_names)
    coords = jnp.log(theta + emulator.offsets.astype(theta.dtype))
    return spline_interpolate(emulator.knots, emulator.basis, coords, table.astype(theta.dtype))


def emulate_cl(emulator, theta):
    """C_l^{ij}(theta), shape (C, C, L), symmetric; theta (P,) in `emulator.param_names` order.

    `emulator` is a `ClEmulator` (2-parameter table) or a `FittedEmulator` (6 parameters).
    Inside `emulator.bounds` only: outside, the edge cubics are extrapolated (meaningless), so
    check eager inputs with `check_in_range`.
    """
    cl_pairs = jnp.exp(emulator.log_cl_pairs(theta))
    c = emulator.n_bins
    rows, cols = np.triu_indices(c)
    out = jnp.zeros((c, c, cl_pairs.shape[-1]), cl_pairs.dtype)
    return out.at[rows, cols].set(cl_pairs).at[cols, rows].set(cl_pairs)


def emulate_shift(emulator, theta):
    """Empty-beam shifts lambda_i(theta) (`shifts.lognormal_shift`), shape (C,), positive.

    The simulator takes its shifts from the preset's shift model (`shifts.preset_shift`);
    these are the empty-beam option's."""
    return emulator.shift(theta)


def check_in_range(emulator, theta) -> None:
    """Raise ValueError naming the first parameter of theta (..., P) outside its table range.

    Eager only (reads concrete values). NaN is out of range.
    """
    theta = np.asarray(theta, dtype=np.float64)
    names = emulator.param_names
    if theta.ndim < 1 or theta.shape[-1] != len(names):
        raise ValueError(f"theta must have shape (..., {len(names)}) for {list(names)}")
    bounds = np.asarray(emulator.bounds, dtype=np.float64)
    for p, name in enumerate(names):
        values = theta[..., p]
        lo, hi = bounds[p]
        bad = ~((values >= lo) & (values <= hi))  # NaN counts as bad
        if np.any(bad):
            first = values[bad].ravel()[0]
            raise ValueError(
                f"parameter {name}={first} is outside the emulator's range [{lo:.4g}, {hi:.4g}] "
                f"(preset {emulator.preset.name!r})"
            )
