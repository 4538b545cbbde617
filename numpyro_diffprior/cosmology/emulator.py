"""Fast, differentiable emulator of the tomographic C_l^{ij}(theta) and shifts lambda_i(theta).

For the 2-parameter presets (Omega_c, sigma_8; the rest at fiducial) log C_l^{ij} and
log lambda_i are tabulated with jax-cosmo (`spectra.angular_cl_reference`) on a grid and
interpolated by a tensor-product not-a-knot cubic spline (de Boor 1978) in the coordinates
x = log(Omega_c + Omega_b) = log Omega_m and y = log sigma_8, in which log C_l is nearly
linear (C_l ∝ Omega_m^~1.5-2 sigma_8^~2-3). The spline is linear in the table, so it is stored
as per-axis basis coefficients (4, n-1, n): evaluating it is two small contractions,
jit/vmap/grad-able in theta (the library never jits; the caller does).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology.params import FIDUCIAL, PARAMETER_NAMES, full_parameters
from numpyro_diffprior.presets import Preset, get_preset

__all__ = [
    "ClEmulator",
    "emulate_cl",
    "emulate_shift",
    "check_in_range",
    "spline_basis",
    "load_emulator",
    "load_emulator_file",
    "save_emulator",
    "build_emulator",
    "default_cache_dir",
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
    """Log-normal shifts lambda_i(theta) (`shifts.lognormal_shift`), shape (C,), positive."""
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


def _tabulate(preset: Preset, nodes, ell, progress: bool = True):
    """jax-cosmo log C_l pairs (n_1, .., n_P, C(C+1)/2, L) and log shifts on the node grid."""
    from numpyro_diffprior.cosmology.emulator_fit import tabulate_design
    from numpyro_diffprior.cosmology.shifts import lognormal_shift

    shape = tuple(len(n) for n in nodes)
    grid = np.stack(np.meshgrid(*nodes, indexing="ij"), axis=-1).reshape(-1, len(nodes))
    theta_full = np.asarray(full_parameters(grid, preset.param_names))
    log_cl = tabulate_design(preset, theta_full, ell, progress=progress)
    with jax.enable_x64(True):
        shift_fn = jax.jit(jax.vmap(lambda t: lognormal_shift(t, preset.survey)))
        log_shift = np.log(np.asarray(shift_fn(theta_full)))
    return log_cl.reshape(shape + log_cl.shape[1:]), log_shift.reshape(shape + (-1,))


def atomic_savez(path, compressed: bool = False, **arrays) -> None:
    """np.savez(_compressed) onto `path` atomically (`atomic.atomic_write`)."""
    from numpyro_diffprior.atomic import atomic_write

    save = np.savez_compressed if compressed else np.savez
    atomic_write(path, lambda tmp: save(tmp, **arrays), suffix=".npz")


def build_emulator(
    preset,
    *,
    num_omega_c: int = 18,
    num_sigma_8: int = 13,
    num_ell: int = 40,
    omega_c_range=OMEGA_C_RANGE,
    sigma_8_range=SIGMA_8_RANGE,
    progress: bool = True,
) -> ClEmulator:
    """Tabulate jax-cosmo on a (num_omega_c x num_sigma_8) grid of a 2-parameter preset.

    For a preset sampling all six parameters this builds the `FittedEmulator` instead
    (`emulator_recipe.build_fitted_emulator` with its defaults: 21,734 jax-cosmo calls, about
    2 h in one process on 2 cores; shard it across processes, docs/cosmology.md).

    Knots are log-uniform in Omega_c (dense at small Omega_c, where the Eisenstein-Hu + Halofit
    spectrum changes fastest) and in sigma_8; the spline coordinates are log(Omega_c + Omega_b)
    and log sigma_8. Below Omega_c ~ 0.02 (baryon-dominated matter) jax-cosmo's C_l vary too
    wildly to interpolate, hence the default range. ~0.25-0.9 s per node after a ~10 s compile.
    """
    from numpyro_diffprior.cosmology.spectra import ell_grid

    preset = get_preset(preset)
    if preset.param_names == PARAMETER_NAMES:
        from numpyro_diffprior.cosmology.emulator_recipe import build_fitted_emulator

        return build_fitted_emulator(preset, num_ell=num_ell, progress=progress)
    if preset.param_names != ("Omega_c", "sigma_8"):
        raise NotImplementedError(
            f"build_emulator supports (Omega_c, sigma_8) and all six parameters; preset "
            f"{preset.name!r} samples {list(preset.param_names)}"
        )
    lo, hi = omega_c_range
    if not 0.0 < lo < hi:
        raise ValueError(f"omega_c_range must satisfy 0 < low < high, got {omega_c_range}")
    if not 0.0 < sigma_8_range[0] < sigma_8_range[1]:
        raise ValueError(f"sigma_8_range must satisfy 0 < low < high, got {sigma_8_range}")
    omega_c = np.geomspace(lo, hi, num_omega_c)
    sigma_8 = np.geomspace(*sigma_8_range, num_sigma_8)
    ell = ell_grid(preset, num_ell)
    log_cl, log_shift = _tabulate(preset, (omega_c, sigma_8), ell, progress)
    offsets = np.array([FIDUCIAL["Omega_b"], 0.0])
    knots = (np.log(omega_c + offsets[0]), np.log(sigma_8))
    data = {
        "ell": ell,
        "bounds": np.array([omega_c_range, sigma_8_range], dtype=np.float64),
        "offsets": offsets,
        "log_cl": log_cl,
        "log_shift": log_shift,
        "preset_json": np.array(preset.to_json()),
        "meta_json": np.array(
            json.dumps({"format_version": FORMAT_VERSION, "param_names": list(preset.param_names)})
        ),
        "knots_0": knots[0],
        "knots_1": knots[1],
    }
    return _from_arrays(data)


def save_emulator(emulator, path) -> pathlib.Path:
    """Write the emulator (either kind) atomically to a compressed .npz with its preset JSON."""
    from numpyro_diffprior.cosmology.fitted_emulator import FittedEmulator, fitted_to_arrays

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(emulator, FittedEmulator):
        arrays = fitted_to_arrays(emulator)
    else:
        meta = {"format_version": FORMAT_VERSION, "param_names": list(emulator.param_names)}
        arrays = {f"knots_{p}": np.asarray(k) for p, k in enumerate(emulator.knots)}
        arrays.update(
            ell=np.asarray(emulator.ell),
            bounds=np.asarray(emulator.bounds),
            offsets=np.asarray(emulator.offsets),
            log_cl=np.asarray(emulator.log_cl, dtype=np.float32),
            log_shift=np.asarray(emulator.log_shift, dtype=np.float32),
            preset_json=np.array(emulator.preset_json),
            meta_json=np.array(json.dumps(meta)),
        )
    atomic_savez(path, compressed=True, **arrays)
    return path


def _from_arrays(data):
    meta = json.loads(str(data["meta_json"]))
    if meta.get("kind") is not None:
        from numpyro_diffprior.cosmology.fitted_emulator import fitted_from_arrays

        return fitted_from_arrays(data)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported emulator format {meta.get('format_version')}")
    names = tuple(meta["param_names"])
    knots = tuple(np.asarray(data[f"knots_{p}"], np.float64) for p in range(len(names)))
    return ClEmulator(
        ell=jnp.asarray(data["ell"], jnp.float32),
        bounds=jnp.asarray(data["bounds"], jnp.float32),
        offsets=jnp.asarray(data["offsets"], jnp.float32),
        knots=tuple(jnp.asarray(k, jnp.float32) for k in knots),
        basis=tuple(jnp.asarray(spline_basis(k), jnp.float32) for k in knots),
        log_cl=jnp.asarray(data["log_cl"], jnp.float32),
        log_shift=jnp.asarray(data["log_shift"], jnp.float32),
        param_names=names,
        preset_json=str(data["preset_json"]),
    )


def load_emulator_file(path, preset=None) -> ClEmulator:
    """Read an emulator .npz; if `preset` is given, a table built for another preset is an error."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no emulator table at {path}")
    # Concrete arrays even when first loaded while a model is traced (the result is cached).
    with np.load(path, allow_pickle=False) as data, jax.ensure_compile_time_eval():
        emulator = _from_arrays(data)
    if preset is not None:
        preset = get_preset(preset)
        stored = Preset.from_json(emulator.preset_json)
        if stored != preset:
            raise ValueError(
                f"emulator table {path} was built for preset {stored.name!r} "
                f"({stored.n_bins} bins, params {list(stored.param_names)}, survey "
                f"{stored.survey.name!r}), not for {preset.name!r}; rebuild it with "
                f"`numpyro-diffprior build-emulator --preset {preset.name}`"
            )
    return emulator


def default_cache_dir() -> pathlib.Path:
    """User cache directory for emulators built on demand (~/.cache/numpyro_diffprior)."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "numpyro_diffprior"


@functools.lru_cache(maxsize=8)
def _load_by_name(name: str):
    from importlib import resources

    resource = resources.files("numpyro_diffprior") / "data" / f"emulator_{name}.npz"
    if resource.is_file():
        with resources.as_file(resource) as path:
            return load_emulator_file(path, preset=name)
    cached = default_cache_dir() / f"emulator_{name}.npz"
    if cached.is_file():
        return load_emulator_file(cached, preset=name)
    raise FileNotFoundError(
        f"no emulator for preset {name!r} in the package or in {cached}; build one with "
        f"`numpyro-diffprior build-emulator --preset {name}` (written to that cache path)"
    )


def load_emulator(preset=None):
    """The emulator of a named preset, cached per preset name: the package's table, else one
    built by `numpyro-diffprior build-emulator` into `default_cache_dir()`."""
    preset = get_preset(preset)
    emulator = _load_by_name(preset.name)
    if Preset.from_json(emulator.preset_json) != preset:
        raise ValueError(f"preset {preset.name!r} differs from the one its emulator was built for")
    return emulator
