"""Checks of observations and output paths, shared by the API, the samplers and the CLI.

`check_observation(shear, mask, noise_std, preset)` validates an observation's arrays (dtype,
shape, NaN/inf where observed, an all-False or malformed mask, noise_std not positive and finite
in every entry) and raises ValueError naming the argument, the expected and the received value.
`check_output_path` refuses an output path that is a directory or lies under a file. Neither
imports jax (the presets only when a preset is given), so the CLI reports bad input at once.
Re-exported by `numpyro_diffprior.observations`.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "check_observation",
    "check_output_path",
    "check_truth",
    "broadcast_mask",
    "random_holes_mask",
]


def get_preset(preset):
    """`presets.get_preset`, imported on first use (the presets import jax)."""
    from numpyro_diffprior.presets import get_preset as _get_preset

    return _get_preset(preset)


def _fmt_value(x) -> str:
    return np.format_float_positional(x, precision=4, trim="-") if np.isfinite(x) else str(x)


def _concrete(x, name):
    """`x` as a numpy array, or None for a traced JAX value (only its shape/dtype are known)."""
    if x is None:
        return None
    try:
        return np.asarray(x)
    except Exception:  # a jax Tracer: no values to check
        if hasattr(x, "shape") and hasattr(x, "dtype"):
            return None
        raise ValueError(f"{name} must be an array, got {type(x).__name__}") from None


def _check_float_dtype(dtype, name):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        kind = {"b": "bool", "i": "integer", "u": "unsigned integer", "c": "complex"}.get(
            dtype.kind, str(dtype)
        )
        raise ValueError(
            f"{name} must be a floating-point array (float32 or float64), got dtype {dtype} "
            f"({kind}); casting would change the values (e.g. every shear |g| < 1 becomes 0)"
        )


def _check_noise(noise_std, shear_shape):
    """Validated noise_std (float array: scalar, (C,) or the shear shape); +inf allowed only in
    a per-pixel map (an unobserved pixel)."""
    if noise_std is None:
        return None
    std = _concrete(noise_std, "noise_std")
    if std is None:  # traced
        return noise_std
    if std.dtype.kind not in "fiu" or std.dtype.kind == "b":
        raise ValueError(
            f"noise_std must be a positive float or an array of floats, got dtype {std.dtype}"
        )
    if std.dtype.kind != "f":
        std = std.astype(np.float32)
    n_bins = shear_shape[0]
    allowed = ((), (n_bins,), tuple(shear_shape))
    if std.shape not in allowed:
        raise ValueError(
            f"noise_std must be a scalar, ({n_bins},) (one per tomographic bin) or the shear "
            f"shape {tuple(shear_shape)}, got shape {std.shape}"
        )
    per_pixel = std.shape == tuple(shear_shape)
    bad = np.isnan(std) | (std <= 0) | (np.isinf(std) & (not per_pixel))
    if bad.any():
        if std.ndim == 0:
            raise ValueError(f"noise_std must be positive and finite, got {_fmt_value(std)}")
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        where = f"noise_std[{index[0]}]" if std.ndim == 1 else f"noise_std{list(index)}"
        what = "per-bin" if std.ndim == 1 else "per-pixel"
        raise ValueError(
            f"noise_std must be positive and finite in every entry (+inf marks an unobserved "
            f"pixel in a per-pixel map only): {int(bad.sum())} {what} entr"
            f"{'y is' if bad.sum() == 1 else 'ies are'} not, e.g. {where} = "
            f"{_fmt_value(std[index])}"
        )
    return std


def check_observation(shear, mask=None, noise_std=None, preset=None, *, name="shear_obs"):
    """Validate an observation; returns `(shear, mask, noise_std)` as numpy arrays.

    shear: float array (C, 2, N, N) (the preset's `shear_shape` when `preset` is given); finite
    wherever observed. mask: None or bool (N, N), (C, N, N) or (C, 2, N, N), True = observed,
    not all False; returned broadcast to the shear's shape. noise_std: None, a positive finite
    scalar, (C,) of positive finite entries, or a per-pixel map of the shear's shape (> 0; +inf
    = unobserved). Raises ValueError naming the argument, the expected and the received value.
    Traced (jit) arrays pass through with their shape and dtype checked only.
    """
    if shear is None:
        raise ValueError(f"{name} is required (an array (C, 2, N, N) of observed shear)")
    arr = _concrete(shear, name)
    shape, dtype = (tuple(np.shape(shear)), shear.dtype) if arr is None else (arr.shape, arr.dtype)
    _check_float_dtype(dtype, name)
    if preset is not None:
        preset = get_preset(preset)
        if shape != tuple(preset.shear_shape):
            raise ValueError(
                f"{name} must have shape {tuple(preset.shear_shape)} (C, 2, N, N) for preset "
                f"{preset.name!r}, got {shape}"
            )
    elif len(shape) != 4 or shape[1] != 2 or shape[2] != shape[3]:
        raise ValueError(
            f"{name} must have shape (C, 2, N, N) (bins, shear components, pixels), got {shape}"
        )
    full_mask = None
    if mask is not None:
        m = _concrete(mask, "mask")
        if m is None:
            full_mask = mask
        else:
            if m.dtype.kind != "b" and not (m.dtype.kind in "iu" and np.isin(m, (0, 1)).all()):
                raise ValueError(
                    f"mask must be boolean (True = observed) or integers 0/1, got dtype {m.dtype}"
                )
            full_mask = broadcast_mask(m, shape)
            if not full_mask.any():
                raise ValueError(
                    "mask is all False: no pixel is observed (True = observed); pass mask=None "
                    "to observe every pixel"
                )
    std = _check_noise(noise_std, shape)
    if arr is not None:
        observed = np.ones(shape, bool)
        if isinstance(full_mask, np.ndarray):
            observed &= full_mask
        if isinstance(std, np.ndarray) and std.shape == shape:
            observed &= np.isfinite(std)
        if not observed.any():
            raise ValueError("noise_std is +inf at every observed pixel: no pixel is observed")
        bad = ~np.isfinite(arr) & observed
        if bad.any():
            index = [int(i) for i in np.argwhere(bad)[0]]
            raise ValueError(
                f"{name} must be finite at every observed pixel: {int(bad.sum())} of "
                f"{int(observed.sum())} observed values are NaN or inf (first at {name}{index} = "
                f"{arr[tuple(index)]}); mask them out (mask False) or set them to 0"
            )
        arr = arr if arr.dtype == np.float32 else arr.astype(np.float32)
    return (shear if arr is None else arr), full_mask, std


def random_holes_mask(npix: int, seed: int = 0, *, fraction: float = 0.1) -> np.ndarray:
    """A bool (npix, npix) survey mask, True = observed, with random square holes (bright stars,
    bad fields) covering about `fraction` of the field."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    mask = np.ones((npix, npix), bool)
    size = max(1, npix // 8)
    while 1 - mask.mean() < fraction:
        y, x = rng.integers(0, npix - size + 1, size=2)
        mask[y : y + size, x : x + size] = False
    return mask


def broadcast_mask(mask, shear_shape):
    """A bool mask of shape (N,N), (C,N,N) or (C,2,N,N) broadcast to (C,2,N,N); None stays None."""
    if mask is None:
        return None
    mask = np.asarray(mask).astype(bool)
    n_bins, _, ny, nx = shear_shape
    if mask.shape == (ny, nx):
        mask = mask[None, None]
    elif mask.shape == (n_bins, ny, nx):
        mask = mask[:, None]
    elif mask.shape != tuple(shear_shape):
        raise ValueError(
            f"mask must have shape (N,N), (C,N,N) or (C,2,N,N) for shear {tuple(shear_shape)}, "
            f"got {mask.shape}"
        )
    return np.broadcast_to(mask, shear_shape).copy()


def check_truth(value, name, shape):
    if value is None:
        return None
    arr = np.asarray(value)
    _check_float_dtype(arr.dtype, name)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(arr)).sum())} NaN/inf")
    return arr


def check_output_path(path, *, what="output file") -> str:
    """`path` as a str if a file may be written there: not a directory, its parent not a file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"{what} {path!r} is a directory; give a file name")
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise ValueError(f"{what} {path!r}: {parent!r} is a file, not a directory")
    return path
