"""Observation files: an `.npz` with the shear map, its survey preset and (when known) the truth.

Keys: `shear` (C, 2, N, N), `preset` (name), optional `mask` (bool, broadcastable to the shear),
`noise_std` (C,), `theta_true` (P,), `kappa_true` (C, N, N). Every sampler command reads this
format; `simulate_observation` draws one from `simulator.model.lensing_model`.
"""

from __future__ import annotations

import os

import numpy as np

from numpyro_diffprior.cosmology.params import FIDUCIAL
from numpyro_diffprior.presets import get_preset

__all__ = [
    "save_observation",
    "load_observation",
    "draw_observation",
    "simulate_observation",
    "finish_observation",
    "broadcast_mask",
]

_OPTIONAL = ("mask", "noise_std", "theta_true", "kappa_true")


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


def save_observation(
    path, shear, *, preset, mask=None, noise_std=None, theta_true=None, kappa_true=None
) -> str:
    """Write an observation `.npz` (module docstring); returns the path written."""
    preset = get_preset(preset)
    shear = np.asarray(shear, dtype=np.float32)
    if shear.shape != preset.shear_shape:
        raise ValueError(
            f"shear must have shape {preset.shear_shape} for preset {preset.name!r}, "
            f"got {shear.shape}"
        )
    arrays = {"shear": shear, "preset": np.asarray(preset.name)}
    for key, value in zip(_OPTIONAL, (mask, noise_std, theta_true, kappa_true), strict=True):
        if value is not None:
            arrays[key] = np.asarray(value)
    if theta_true is not None and arrays["theta_true"].shape != (preset.n_params,):
        raise ValueError(
            f"theta_true must have shape ({preset.n_params},), got {arrays['theta_true'].shape}"
        )
    if kappa_true is not None and arrays["kappa_true"].shape != preset.map_shape:
        raise ValueError(
            f"kappa_true must have shape {preset.map_shape}, got {arrays['kappa_true'].shape}"
        )
    if mask is not None:
        arrays["mask"] = broadcast_mask(mask, preset.shear_shape)
    directory = os.path.dirname(os.fspath(path))
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return os.fspath(path)


def load_observation(path) -> dict:
    """Read an observation `.npz` into a dict with keys `shear`, `preset` and the optional ones."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"observation file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        if "shear" not in data or "preset" not in data:
            raise ValueError(f"{path} is not an observation file: needs 'shear' and 'preset'")
        out = {"shear": np.asarray(data["shear"]), "preset": str(data["preset"])}
        for key in _OPTIONAL:
            out[key] = np.asarray(data[key]) if key in data else None
    if out["mask"] is not None:
        out["mask"] = out["mask"].astype(bool)
    return out


def draw_observation(
    rng_key, preset, *, theta=None, mask=None, noise_std=None, emulator=None, model=None
):
    """Pure draw (shear (C,2,N,N), theta (P,), kappa (C,N,N)) from `lensing_model` (or `model`).

    theta: None (from the prior) or an array (P,) to condition the parameter sites on.
    Traceable: jit it with `preset`, `model`, `mask` and `noise_std` closed over.
    """
    from numpyro import handlers

    preset = get_preset(preset)
    if model is None:
        from numpyro_diffprior.simulator.model import lensing_model as model
    values = {}
    if theta is not None:
        values = {name: theta[i] for i, name in enumerate(preset.param_names)}
    conditioned = handlers.condition(model, data=values)
    trace = handlers.trace(handlers.seed(conditioned, rng_key)).get_trace(
        preset=preset, shear_obs=None, mask=mask, noise_std=noise_std, emulator=emulator
    )
    return trace["shear"]["value"], trace["theta"]["value"], trace["kappa"]["value"]


def simulate_observation(
    rng_key, preset, *, theta=None, mask=None, noise_std=None, emulator=None, model=None
) -> dict:
    """Draw one observation (compiled once per call) in the format of `load_observation`.

    theta: None (from the prior), "fiducial", or an array (P,) of the preset's parameters.
    Masked shear pixels are set to 0. For many draws, jit `draw_observation` once instead.
    """
    import jax

    preset = get_preset(preset)
    if isinstance(theta, str):
        if theta != "fiducial":
            raise ValueError(f"theta must be None, 'fiducial' or an array, got {theta!r}")
        theta = [FIDUCIAL[name] for name in preset.param_names]
    if theta is not None:
        theta = np.asarray(theta, dtype=np.float32)
        if theta.shape != (preset.n_params,):
            raise ValueError(f"theta must have shape ({preset.n_params},), got {theta.shape}")
    if emulator is None and model is None:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        emulator = load_emulator(preset)

    def draw(key, theta, emulator):
        return draw_observation(
            key,
            preset,
            theta=theta,
            mask=mask,
            noise_std=noise_std,
            emulator=emulator,
            model=model,
        )

    shear, theta_true, kappa_true = jax.jit(draw)(rng_key, theta, emulator)
    return finish_observation(preset, shear, theta_true, kappa_true, mask=mask, noise_std=noise_std)


def finish_observation(preset, shear, theta, kappa, *, mask=None, noise_std=None) -> dict:
    """Observation dict (keys of `load_observation`) from drawn arrays; masked shear -> 0."""
    preset = get_preset(preset)
    shear = np.asarray(shear, dtype=np.float32)
    full_mask = broadcast_mask(mask, preset.shear_shape)
    if full_mask is not None:
        shear = np.where(full_mask, shear, 0.0).astype(np.float32)
    return {
        "shear": shear,
        "preset": preset.name,
        "mask": full_mask,
        "noise_std": None if noise_std is None else np.asarray(noise_std),
        "theta_true": np.asarray(theta),
        "kappa_true": np.asarray(kappa),
    }
