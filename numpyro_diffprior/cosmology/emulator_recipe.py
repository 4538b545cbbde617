"""The build recipe of the 6-parameter `FittedEmulator`: which jax-cosmo spectra, how fitted.

`build_fitted_emulator(preset)` tabulates jax-cosmo (`emulator_fit.tabulate_design`, resumable
and shardable) on the base tables' nodes and on seeded design shards (main, small-Omega_c,
tail and corner designs), then fits (`emulator_fit.fit_emulator`) with the recipe's settings
below. The shipped `numpyro_diffprior/data/emulator_lsst-y10-jade.npz` is its output
(`numpyro-diffprior build-emulator --preset lsst-y10-jade`; docs/cosmology.md).
"""

from __future__ import annotations

import pathlib

import numpy as np

from numpyro_diffprior.cosmology.emulator_fit import (
    base_grid,
    design_points,
    fit_emulator,
    tabulate_design,
)
from numpyro_diffprior.cosmology.fitted_emulator import BOX_6_BOUNDS
from numpyro_diffprior.cosmology.params import PARAMETER_NAMES

__all__ = ["build_fitted_emulator", "RECIPE_NAMES"]

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
    from numpyro_diffprior.presets import get_preset

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


# Names that lived in `emulator_fit` before the recipe moved here (still importable there).
RECIPE_NAMES = (
    "LOW_FIT", "MAIN_FIT", "CORNER_OMEGA_C_MAX", "CORNER_DESIGN_SIZE", "LOW_OMEGA_C_MAX",
    "TAIL_WIDEN", "_shards", "build_fitted_emulator",
)  # fmt: skip
