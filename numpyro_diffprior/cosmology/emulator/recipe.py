"""Build recipes: `build_emulator(preset)` for either kind, and the 6-parameter one in detail.

`build_fitted_emulator(preset)` tabulates jax-cosmo (`design.tabulate_design`, resumable
and shardable) on the base tables' nodes and on seeded design shards (main, small-Omega_c,
tail and corner designs), then fits (`fit.fit_emulator`) with the recipe's settings
below. The shipped `numpyro_diffprior/data/emulator_lsst-y10-jade.npz` is its output
(`numpyro-diffprior build-emulator --preset lsst-y10-jade`; docs/cosmology.md).
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from numpyro_diffprior.cosmology.emulator.design import base_grid, design_points, tabulate_design
from numpyro_diffprior.cosmology.emulator.fit import fit_emulator
from numpyro_diffprior.cosmology.emulator.fitted import BOX_6_BOUNDS
from numpyro_diffprior.cosmology.emulator.io import emulator_from_arrays
from numpyro_diffprior.cosmology.emulator.tables import (
    FORMAT_VERSION,
    OMEGA_C_RANGE,
    SIGMA_8_RANGE,
    ClEmulator,
)
from numpyro_diffprior.cosmology.params import FIDUCIAL, PARAMETER_NAMES, full_parameters
from numpyro_diffprior.presets import Preset, get_preset

__all__ = ["build_emulator", "build_fitted_emulator"]

LOW_FIT = {"width": 256, "depth": 4, "steps": 30000, "members": 3}  # its networks, fit length
MAIN_FIT = {"members": 3}  # the main fit: an ensemble of three 3 x 128 MLPs
CORNER_OMEGA_C_MAX = 0.08  # upper Omega_c of the corner shards (for the small-Omega_c fit)
CORNER_DESIGN_SIZE = 3000  # corner shard k tabulates the first rows of a design this long


LOW_OMEGA_C_MAX = 0.12  # upper Omega_c of the extra design shards (the hardest region)
TAIL_WIDEN = 2.0  # the tail shards' design: the prior widened this much (main design: 1.5)


def _shards(preset, num_points, shard_size, seed, num_low_points, low_shard_size, bounds,
            num_corner_points=0, corner_shard_size=1000, num_tail_points=0,
            tail_shard_size=1000):  # fmt: skip
    """[(name, theta, cache file name)] of every design shard of the build recipe."""
    low_bounds = np.array(bounds, copy=True)
    low_bounds[0] = (bounds[0][0], LOW_OMEGA_C_MAX)
    corner_bounds = np.array(bounds, copy=True)
    corner_bounds[0] = (bounds[0][0], CORNER_OMEGA_C_MAX)
    out = []
    for k in range(num_points // shard_size):
        theta = design_points(shard_size, bounds, seed=seed + k)
        out.append((str(k), theta, f"design_{preset.name}_{seed + k}.npz"))
    for k in range(num_low_points // low_shard_size):
        theta = design_points(low_shard_size, low_bounds, seed=100 + seed + k)
        out.append((f"low{k}", theta, f"low_{preset.name}_{100 + seed + k}.npz"))
    for k in range(num_tail_points // tail_shard_size):
        theta = design_points(tail_shard_size, bounds, seed=200 + seed + k, widen=TAIL_WIDEN)
        out.append((f"tail{k}", theta, f"tail_{preset.name}_{200 + seed + k}.npz"))
    for k in range(num_corner_points // corner_shard_size):
        theta = design_points(CORNER_DESIGN_SIZE, corner_bounds, seed=299 + seed + k)
        out.append(
            (f"corner{k}", theta[:corner_shard_size], f"corner_{preset.name}_{299 + seed + k}.npz")
        )
    return out


def build_fitted_emulator(
    preset,
    *,
    num_points: int = 5000,
    seed: int = 1,
    shard_size: int = 2500,
    num_low_points: int = 2000,
    low_shard_size: int = 1000,
    num_corner_points: int = 13000,
    num_tail_points: int = 5000,
    tail_shard_size: int = 1000,
    corner_shard_size: int = 1000,
    low_fit: dict | None = None,
    num_ell: int = 40,
    cache_dir=None,
    only_shard: str | int | None = None,
    progress: bool = True,
    **fit_kwargs,
):
    """The whole recipe for a 6-parameter preset -> FittedEmulator (None with `only_shard`).

    jax-cosmo runs on
    - the base tables' nodes (`base_grid().design()`, 4095 points, `cache_dir/base_<preset>.npz`);
    - `num_points / shard_size` design shards (shard k = `design_points(shard_size,
      seed=seed + k)`, `design_<preset>_<seed + k>.npz`);
    - `num_low_points / low_shard_size` extra shards with Omega_c < LOW_OMEGA_C_MAX, where the
      spectra change fastest (seed 100 + seed + k, `low_<preset>_<seed>.npz`);
    - `num_tail_points / tail_shard_size` tail shards from the prior widened TAIL_WIDEN times
      (seed 200 + seed + k, `tail_<preset>_<seed>.npz`), for the main fit's extremes;
    - `num_corner_points / corner_shard_size` corner shards with Omega_c < CORNER_OMEGA_C_MAX
      (the first `corner_shard_size` rows of a CORNER_DESIGN_SIZE design of seed 299 + seed + k,
      `corner_<preset>_<seed>.npz`), which only the small-Omega_c fit (`low_fit`, default
      LOW_FIT; none when `num_corner_points` is 0) sees, with the other points below
      LOW_FIT_OMEGA_C_MAX.

    The main fit takes `fit_kwargs` over MAIN_FIT. Every cache resumes; `only_shard` ("base",
    "0", "1", ..., "low0", ..., "tail0", ..., "corner0", ...) tabulates one of them and returns
    None, so separate processes can share the work before a last call assembles and fits.
    """
    import tempfile

    from numpyro_diffprior.cosmology.spectra import ell_grid

    preset = get_preset(preset)
    if tuple(preset.param_names) != PARAMETER_NAMES:
        raise ValueError(
            f"the fitted emulator is for presets sampling all six parameters {PARAMETER_NAMES}; "
            f"preset {preset.name!r} samples {list(preset.param_names)}"
        )
    sizes = ((num_points, shard_size), (num_low_points, low_shard_size),
             (num_tail_points, tail_shard_size))  # fmt: skip
    if any(num % size for num, size in sizes):
        raise ValueError(
            "num_points / num_low_points / num_tail_points must be multiples of their shard sizes"
        )
    if num_corner_points % corner_shard_size or corner_shard_size > CORNER_DESIGN_SIZE:
        raise ValueError(
            f"num_corner_points must be a multiple of corner_shard_size <= {CORNER_DESIGN_SIZE}"
        )
    bounds = BOX_6_BOUNDS
    shards = _shards(
        preset, num_points, shard_size, seed, num_low_points, low_shard_size, bounds,
        num_corner_points, corner_shard_size, num_tail_points, tail_shard_size,
    )  # fmt: skip
    names = ["base"] + [name for name, _, _ in shards]
    if only_shard is not None and str(only_shard) not in names:
        raise ValueError(f"only_shard must be one of {names}, got {only_shard!r}")
    cache_dir = pathlib.Path(cache_dir or tempfile.mkdtemp(prefix="emulator_fit_"))
    ell = ell_grid(preset, num_ell)
    grid = base_grid(bounds)
    wanted = names if only_shard is None else [str(only_shard)]
    if "base" in wanted:
        cache = cache_dir / f"base_{preset.name}.npz"
        base_log = tabulate_design(preset, grid.design(), ell, cache=cache, progress=progress)
    main, corner = ([], []), ([], [])
    for name, theta, file in shards:
        if name in wanted:
            table = tabulate_design(preset, theta, ell, cache=cache_dir / file, progress=progress)
            part = corner if name.startswith("corner") else main
            part[0].append(theta)
            part[1].append(table)
    if only_shard is not None:
        return None
    low_data = None
    if corner[0]:  # the small-Omega_c fit also sees the base table nodes
        low_data = (
            np.concatenate(corner[0] + [grid.design()]),
            np.concatenate(corner[1] + [base_log]),
        )
    return fit_emulator(
        preset, np.concatenate(main[0]), np.concatenate(main[1]), ell, grid,
        grid.assemble(base_log), bounds=bounds, progress=progress, low_data=low_data,
        low_fit=LOW_FIT if low_fit is None else low_fit, **{**MAIN_FIT, **fit_kwargs},
    )  # fmt: skip


def _tabulate(preset: Preset, nodes, ell, progress: bool = True):
    """jax-cosmo log C_l pairs (n_1, .., n_P, C(C+1)/2, L) and log shifts on the node grid."""
    from numpyro_diffprior.cosmology.shifts import lognormal_shift

    shape = tuple(len(n) for n in nodes)
    grid = np.stack(np.meshgrid(*nodes, indexing="ij"), axis=-1).reshape(-1, len(nodes))
    theta_full = np.asarray(full_parameters(grid, preset.param_names))
    log_cl = tabulate_design(preset, theta_full, ell, progress=progress)
    with jax.enable_x64(True):
        shift_fn = jax.jit(jax.vmap(lambda t: lognormal_shift(t, preset.survey)))
        log_shift = np.log(np.asarray(shift_fn(theta_full)))
    return log_cl.reshape(shape + log_cl.shape[1:]), log_shift.reshape(shape + (-1,))


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
    (`build_fitted_emulator` with its defaults: 21,734 jax-cosmo calls, about
    2 h in one process on 2 cores; shard it across processes, docs/cosmology.md).

    Knots are log-uniform in Omega_c (dense at small Omega_c, where the Eisenstein-Hu + Halofit
    spectrum changes fastest) and in sigma_8; the spline coordinates are log(Omega_c + Omega_b)
    and log sigma_8. Below Omega_c ~ 0.02 (baryon-dominated matter) jax-cosmo's C_l vary too
    wildly to interpolate, hence the default range. ~0.25-0.9 s per node after a ~10 s compile.
    """
    from numpyro_diffprior.cosmology.spectra import ell_grid

    preset = get_preset(preset)
    if preset.param_names == PARAMETER_NAMES:
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
    return emulator_from_arrays(data)
