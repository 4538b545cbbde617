"""Observation files: an `.npz` with the shear map, its survey preset and (when known) the truth.

Keys: `shear` (C, 2, N, N), `preset` (name), optional `mask` (bool, broadcastable to the shear),
`noise_std` (C,), `theta_true` (P,), `kappa_true` (C, N, N). Every sampler command reads this
format; `simulate_observation` draws one from `simulator.model.lensing_model`
(`numpyro-diffprior observe` writes one).

`check_observation` is the one validator of an observation's arrays (dtype, shape, NaN/inf, an
all-False mask, noise_std not positive): `save_observation`, `load_observation` and the samplers
call it, so a bad input fails with a message naming the argument before any sampling. This
module imports neither jax nor the presets until it needs them (the CLI's errors come fast);
the checks live in `numpyro_diffprior.validation`.
"""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from numpyro_diffprior.validation import (
    broadcast_mask,
    check_observation,
    check_output_path,
    check_truth,
    random_holes_mask,
)

__all__ = [
    "check_observation",
    "check_output_path",
    "save_observation",
    "load_observation",
    "draw_observation",
    "simulate_observation",
    "finish_observation",
    "broadcast_mask",
    "random_holes_mask",
]

_OPTIONAL = ("mask", "noise_std", "theta_true", "kappa_true")


def get_preset(preset):
    """`presets.get_preset`, imported on first use (the presets import jax)."""
    from numpyro_diffprior.presets import get_preset as _get_preset

    return _get_preset(preset)


def save_observation(
    path, shear, *, preset, mask=None, noise_std=None, theta_true=None, kappa_true=None
) -> str:
    """Write an observation `.npz` (module docstring) atomically; returns the path written.

    Every array is checked first (`check_observation`; theta_true (P,) and kappa_true (C,N,N)
    finite floats): on a bad input nothing is written and an existing file stays as it was.
    """
    from numpyro_diffprior.atomic import atomic_write

    preset = get_preset(preset)
    path = check_output_path(path, what="observation file")
    shear, full_mask, std = check_observation(shear, mask, noise_std, preset, name="shear")
    arrays = {"shear": shear, "preset": np.asarray(preset.name)}
    if full_mask is not None:
        arrays["mask"] = full_mask
    if std is not None:
        arrays["noise_std"] = std
    theta_true = check_truth(theta_true, "theta_true", (preset.n_params,))
    kappa_true = check_truth(kappa_true, "kappa_true", preset.map_shape)
    if theta_true is not None:
        arrays["theta_true"] = theta_true
    if kappa_true is not None:
        arrays["kappa_true"] = kappa_true
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write)


_HINT = "write observations with observations.save_observation or `numpyro-diffprior observe`"


def load_observation(path) -> dict:
    """Read and check an observation `.npz` into a dict with keys `shear`, `preset` and the
    optional ones (None when absent).

    A missing file raises FileNotFoundError; a file that is not a readable observation (a
    truncated or corrupted archive, a text file, a missing key, an unknown preset, a bad array)
    raises ValueError naming the file and what is wrong (`check_observation`).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"observation file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"observation file {path!r} is a directory, not an .npz file")
    if not zipfile.is_zipfile(path):
        size = os.path.getsize(path)
        raise ValueError(
            f"observation file {path!r} is not an .npz archive ({size} bytes, no zip structure: "
            f"truncated, corrupted or another format); {_HINT}"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("shear", "preset") if k not in data]
            if missing:
                raise ValueError(
                    f"observation file {path!r} lacks the key(s) {missing} (has "
                    f"{sorted(data.files)}); an observation needs 'shear' and 'preset'; {_HINT}"
                )
            raw = {k: np.asarray(data[k]) for k in ("shear", "preset", *_OPTIONAL) if k in data}
    except ValueError as err:
        if str(err).startswith("observation file"):
            raise
        raise ValueError(f"observation file {path!r} cannot be read: {err}; {_HINT}") from err
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, KeyError) as err:
        raise ValueError(
            f"observation file {path!r} is corrupted or truncated ({type(err).__name__}: {err}); "
            f"{_HINT}"
        ) from err
    name = raw["preset"]
    if name.shape != () or name.dtype.kind not in "US":
        raise ValueError(
            f"observation file {path!r}: 'preset' must be a preset name (a string), got an "
            f"array of dtype {name.dtype} and shape {name.shape}"
        )
    name = str(name)
    try:
        preset = get_preset(name)
    except ValueError as err:
        raise ValueError(f"observation file {path!r} (its 'preset' key): {err}") from None
    out = {"shear": raw["shear"], "preset": preset.name}
    out.update({k: raw.get(k) for k in _OPTIONAL})
    try:
        shear, mask, std = check_observation(
            out["shear"], out["mask"], out["noise_std"], preset, name="shear"
        )
        theta_true = check_truth(out["theta_true"], "theta_true", (preset.n_params,))
        kappa_true = check_truth(out["kappa_true"], "kappa_true", preset.map_shape)
    except ValueError as err:
        raise ValueError(f"observation file {path!r}: {err}") from None
    out.update(shear=raw["shear"], mask=mask, noise_std=std)
    out.update(theta_true=theta_true, kappa_true=kappa_true)
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

    from numpyro_diffprior.cosmology.params import FIDUCIAL

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
