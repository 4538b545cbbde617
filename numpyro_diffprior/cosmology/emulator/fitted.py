"""A fitted emulator of C_l^{ij}(theta) for presets that sample all six wCDM parameters.

A 6-D table is out of reach (jax-cosmo costs ~0.25 s per theta), so for `lsst-y10-jade`

    log C_l^{ij}(theta) = B(Omega_c, sigma_8) + sum_p A_p(Omega_c, sigma_8, theta_p) + R(theta),

a cut-HDMR (ANOVA) expansion around fiducial (Rabitz & Alis 1999): B is a not-a-knot spline
table of jax-cosmo over (Omega_c, sigma_8) with the other four parameters at fiducial, A_p the
first-order effect of p in (Omega_b, h, n_s, w_0) alone, tabulated on (Omega_c, sigma_8,
theta_p) grids (stored on principal components); the interactions R are fitted by ensembles
of small MLPs (tanh, with a linear skip path) from box-scaled coordinates to the leading
principal components of R — CosmoPower's recipe (Spurio Mancini et al. 2022) applied to a
residual of log C_l. The design is drawn from the prior widened 1.5x (plus tail points from
it widened 2x), with extra points at small Omega_c where the spectra change fastest.
The log-normal shifts need no emulation: `shifts.lognormal_shift` is cheap and exact.
Pure jnp: jit/vmap/grad-able in theta. Accuracy: docs/cosmology.md.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology.emulator.tables import check_theta_shape, spline_interpolate
from numpyro_diffprior.cosmology.params import FIDUCIAL, PARAMETER_NAMES

__all__ = [
    "BOX_6",
    "BOX_6_BOUNDS",
    "NUISANCE",
    "FittedEmulator",
    "blend_weight",
    "box_features",
    "base_log_cl",
    "compress_tables",
    "residual_log_cl",
    "mlp",
    "spline_coords",
]

KIND = "fitted-mlp"
_LOW_ARRAYS = ("low_pca_mean", "low_pca_basis", "low_feature_lo", "low_feature_hi", "blend")
FORMAT_VERSION = 1
# Box: the prior's +-4 sigma for the Gaussian parameters, the whole support of w_0, and Omega_c
# in [0.02, 1.0] like the 2-parameter tables (jax-cosmo is erratic below; docs/cosmology.md).
BOX_6 = {
    "Omega_c": (0.02, 1.0),
    "Omega_b": (0.0252, 0.0732),
    "sigma_8": (0.271, 1.391),
    "h": (0.4207, 0.9247),
    "n_s": (0.6445, 1.2845),
    "w_0": (-2.0, -0.3),
}
BOX_6_BOUNDS = np.array([BOX_6[p] for p in PARAMETER_NAMES])  # (6, 2) in PARAMETER_NAMES order
_BASE_OFFSET = FIDUCIAL["Omega_b"]  # base spline coordinate: log(Omega_c + Omega_b,fid)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=[
        "ell", "bounds", "base_knots", "base_basis", "base_log_cl",
        "anova_knots", "anova_basis", "anova_log_cl", "layers", "pca_mean", "pca_basis",
        "feature_lo", "feature_hi", "low_layers", "low_pca_mean", "low_pca_basis",
        "low_feature_lo", "low_feature_hi", "blend", "anova_pcs", "members",
        "low_members",
    ],
    meta_fields=["param_names", "preset_json"],
)  # fmt: skip
@dataclasses.dataclass(frozen=True)
class FittedEmulator:
    """Spline base + MLP residual emulator (a pytree; `param_names`, `preset_json` static).

    ell (L,); bounds (6, 2); base_knots / base_basis: the (Omega_c, sigma_8) spline (see
    `tables.spline_basis`); base_log_cl (n_c, n_s, C(C+1)/2, L) at fiducial; anova_knots /
    anova_basis: 6 axes (spline coordinates `spline_coords` of Omega_c, Omega_b, sigma_8, h,
    n_s, w_0); anova_log_cl (4, m_c, m_s, m_p, C(C+1)/2, L): the first-order effect of each of
    Omega_b, h, n_s, w_0 on its own (log C_l minus its value at fiducial) on an
    (Omega_c, sigma_8, theta_p) grid, or, with `anova_pcs` (4, K, C(C+1)/2 * L), the
    coefficients (4, m_c, m_s, m_p, K) of those tables on K principal components
    (`compress_tables`); layers: ((W, b), ...) of the
    MLP (tanh hidden layers, linear output, linear skip); the MLP output y gives
    R = pca_mean + y @ pca_basis; feature_lo / feature_hi (10,) scale the inputs to [-1, 1].

    Optional small-Omega_c fit (`low_*`, empty in format-1 files without one): a second MLP of
    the same form, fitted only where Omega_c < `blend[1]`; R is its value below `blend[0]`,
    the main fit's above `blend[1]`, and a C^1 smoothstep mix in between. `members` /
    `low_members`: more MLPs like `layers` / `low_layers` (other seeds); each fit is the mean
    of its MLPs' outputs, an ensemble.
    """

    ell: jax.Array
    bounds: jax.Array
    base_knots: tuple
    base_basis: tuple
    base_log_cl: jax.Array
    anova_knots: tuple
    anova_basis: tuple
    anova_log_cl: jax.Array
    layers: tuple
    pca_mean: jax.Array
    pca_basis: jax.Array
    feature_lo: jax.Array
    feature_hi: jax.Array
    param_names: tuple[str, ...]
    preset_json: str
    low_layers: tuple = ()
    low_pca_mean: jax.Array | None = None
    low_pca_basis: jax.Array | None = None
    low_feature_lo: jax.Array | None = None
    low_feature_hi: jax.Array | None = None
    blend: jax.Array | None = None
    anova_pcs: jax.Array | None = None
    members: tuple = ()
    low_members: tuple = ()

    @property
    def n_bins(self) -> int:
        return int(round((np.sqrt(8 * self.base_log_cl.shape[-2] + 1) - 1) / 2))

    @property
    def preset(self):
        from numpyro_diffprior.presets import Preset

        return Preset.from_json(self.preset_json)

    def log_cl_pairs(self, theta):
        """log C_l of the upper-triangle bin pairs (numpy triu order), (C(C+1)/2, L)."""
        theta = check_theta_shape(theta, self.param_names)
        return base_log_cl(self, theta) + residual_log_cl(self, theta)

    def shift(self, theta):
        """Log-normal shifts lambda_i(theta), computed exactly (`shifts.lognormal_shift`)."""
        from numpyro_diffprior.cosmology.shifts import lognormal_shift

        theta = check_theta_shape(theta, self.param_names)
        return lognormal_shift(theta, self.preset.survey)


def _raw_features(theta, xp):
    omega_m = theta[..., 0] + theta[..., 1]
    base = xp.log(theta[..., 0] + _BASE_OFFSET)  # the base spline's coordinate
    h2 = theta[..., 3] ** 2
    cols = [xp.log(omega_m), xp.log(theta[..., 2]), xp.log(theta[..., 1]), base]
    cols += [theta[..., 1] / omega_m, xp.log(omega_m * h2), xp.log(theta[..., 1] * h2)]
    return xp.stack(cols + [theta[..., 3], theta[..., 4], theta[..., 5]], axis=-1)


def box_features(theta, feature_lo, feature_hi):
    """MLP inputs (..., 10) in [-1, 1] on the box (jnp): log Omega_m, log sigma_8, log Omega_b,
    log(Omega_c + Omega_b,fid), Omega_b / Omega_m, log Omega_m h^2, log Omega_b h^2, h, n_s,
    w_0 (redundant on purpose: the baryon fraction and physical densities set the
    Eisenstein-Hu transfer function)."""
    raw = _raw_features(jnp.asarray(theta), jnp)
    lo, hi = jnp.asarray(feature_lo, raw.dtype), jnp.asarray(feature_hi, raw.dtype)
    return 2.0 * (raw - lo) / (hi - lo) - 1.0


def _feature_range(bounds):
    bounds = np.asarray(bounds, np.float64)
    return _raw_features(bounds[:, 0], np), _raw_features(bounds[:, 1], np)


NUISANCE = (1, 3, 4, 5)  # Omega_b, h, n_s, w_0: the parameters of the first-order tables


def spline_coords(theta, xp=jnp):
    """Spline coordinates (..., 6): log(Omega_c + Omega_b,fid), log Omega_b, log sigma_8, h, n_s,
    w_0."""
    t = theta
    cols = [xp.log(t[..., 0] + _BASE_OFFSET), xp.log(t[..., 1]), xp.log(t[..., 2])]
    return xp.stack(cols + [t[..., 3], t[..., 4], t[..., 5]], axis=-1)


def base_log_cl(emulator: FittedEmulator, theta):
    """The spline part of log C_l pairs, (C(C+1)/2, L): the (Omega_c, sigma_8) table at
    fiducial plus the first-order effect of each other parameter (a cut-HDMR / ANOVA expansion
    around fiducial, Rabitz & Alis 1999)."""
    c = spline_coords(theta)
    k, b = emulator.anova_knots, emulator.anova_basis
    base = emulator.base_log_cl.astype(theta.dtype)
    out = spline_interpolate(emulator.base_knots, emulator.base_basis, (c[0], c[2]), base)
    for i, q in enumerate(NUISANCE):
        table = emulator.anova_log_cl[i].astype(theta.dtype)
        a_p = spline_interpolate((k[0], k[2], k[q]), (b[0], b[2], b[q]), (c[0], c[2], c[q]), table)
        if emulator.anova_pcs is not None:
            a_p = (a_p @ emulator.anova_pcs[i].astype(theta.dtype)).reshape(out.shape)
        out = out + a_p
    return out


def compress_tables(tables, tol: float = 1e-4):
    """(coefficients (T, ..., K), components (T, K, M)) of `tables` (T, ..., M) with the
    fewest K principal components (uncentred SVD, so that zero rows stay exactly zero) that
    reproduce every entry to within `tol`."""
    tables = np.asarray(tables, np.float64)
    flat = tables.reshape(tables.shape[0], -1, tables.shape[-1])
    pcs_all = [np.linalg.svd(x, full_matrices=False)[2] for x in flat]
    for k in range(1, min(flat.shape[1:]) + 1):  # coefficients by projection: zero rows stay 0
        if all(np.abs(x @ v[:k].T @ v[:k] - x).max() <= tol
               for x, v in zip(flat, pcs_all, strict=True)):  # fmt: skip
            break
    pcs = np.stack([v[:k] for v in pcs_all])
    return np.einsum("tnm,tkm->tnk", flat, pcs).reshape(*tables.shape[:-1], k), pcs


def mlp(layers, x):
    """tanh MLP with a linear output layer and a linear skip connection from the input.

    layers: ((W_1, b_1), ..., (W_out, b_out), (S, s)) with S (d_in, d_out): the skip path
    x @ S + s carries the near-linear part of the response (and extrapolates sanely).
    """
    (s_w, s_b), h = layers[-1], x
    for w, b in layers[:-2]:
        h = jnp.tanh(h @ w + b)
    w, b = layers[-2]
    return h @ w + b + x @ s_w + s_b


def _fit_value(layers, pca_mean, pca_basis, feature_lo, feature_hi, theta, members=()):
    """pca_mean + (mean MLP output of `layers` and each of `members`) @ pca_basis."""
    x = box_features(theta, feature_lo, feature_hi)
    y = sum((mlp(m, x) for m in members), mlp(layers, x)) / (1 + len(members))
    return pca_mean + y @ pca_basis


def blend_weight(omega_c, blend):
    """Weight of the main fit: 0 below blend[0], 1 above blend[1], smoothstep (C^1) between."""
    t = jnp.clip((omega_c - blend[0]) / (blend[1] - blend[0]), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def residual_log_cl(emulator: FittedEmulator, theta):
    """The fitted residual R of log C_l pairs, (C(C+1)/2, L)."""
    e = emulator
    y = _fit_value(e.layers, e.pca_mean, e.pca_basis, e.feature_lo, e.feature_hi, theta, e.members)
    if e.low_layers:
        y_low = _fit_value(
            e.low_layers, e.low_pca_mean, e.low_pca_basis, e.low_feature_lo, e.low_feature_hi,
            theta, e.low_members,
        )  # fmt: skip
        w = blend_weight(theta[..., 0], e.blend)
        y = w * y + (1.0 - w) * y_low
    return y.reshape(e.base_log_cl.shape[-2:])
