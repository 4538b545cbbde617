"""Reading and writing emulators (.npz with their preset's JSON; either kind) and finding the
one of a named preset: the package's table (`numpyro_diffprior/data/emulator_<name>.npz`,
through importlib.resources) or one built into `default_cache_dir()`.
"""

from __future__ import annotations

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.atomic import atomic_savez
from numpyro_diffprior.cosmology.emulator.fitted import _LOW_ARRAYS, KIND, FittedEmulator
from numpyro_diffprior.cosmology.emulator.fitted import FORMAT_VERSION as FITTED_FORMAT_VERSION
from numpyro_diffprior.cosmology.emulator.tables import FORMAT_VERSION, ClEmulator, spline_basis
from numpyro_diffprior.presets import Preset, get_preset

__all__ = [
    "load_emulator",
    "load_emulator_file",
    "save_emulator",
    "default_cache_dir",
    "emulator_from_arrays",
    "fitted_to_arrays",
    "fitted_from_arrays",
]


def save_emulator(emulator, path) -> pathlib.Path:
    """Write the emulator (either kind) atomically to a compressed .npz with its preset JSON."""
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


def emulator_from_arrays(data):
    """The emulator (either kind) in a mapping of arrays, e.g. an open `np.load`."""
    meta = json.loads(str(data["meta_json"]))
    if meta.get("kind") is not None:
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
        emulator = emulator_from_arrays(data)
    if preset is not None:
        preset = get_preset(preset)
        stored = Preset.from_json(emulator.preset_json)
        # C_l does not depend on the shift model; the emulator's own shifts are empty-beam
        if not stored.same_spectra(preset):
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
    if not Preset.from_json(emulator.preset_json).same_spectra(preset):
        raise ValueError(f"preset {preset.name!r} differs from the one its emulator was built for")
    return emulator


def fitted_to_arrays(emulator: FittedEmulator) -> dict:
    """Flat numpy arrays for `np.savez` (float32 weights; JSON metadata)."""
    meta = {
        "kind": KIND,
        "format_version": FITTED_FORMAT_VERSION,
        "param_names": list(emulator.param_names),
        "num_layers": len(emulator.layers),
        "num_low_layers": len(emulator.low_layers),
        "num_members": len(emulator.members),
        "num_low_members": len(emulator.low_members),
    }
    arrays = {
        "ell": np.asarray(emulator.ell),
        "bounds": np.asarray(emulator.bounds),
        "base_knots_0": np.asarray(emulator.base_knots[0]),
        "base_knots_1": np.asarray(emulator.base_knots[1]),
        "base_log_cl": np.asarray(emulator.base_log_cl, np.float32),
        "anova_log_cl": np.asarray(emulator.anova_log_cl, np.float32),
        "pca_mean": np.asarray(emulator.pca_mean, np.float32),
        "pca_basis": np.asarray(emulator.pca_basis, np.float32),
        "feature_lo": np.asarray(emulator.feature_lo),
        "feature_hi": np.asarray(emulator.feature_hi),
        "preset_json": np.array(emulator.preset_json),
        "meta_json": np.array(json.dumps(meta)),
    }
    for i, k in enumerate(emulator.anova_knots):
        arrays[f"anova_knots_{i}"] = np.asarray(k)
    if emulator.anova_pcs is not None:
        arrays["anova_pcs"] = np.asarray(emulator.anova_pcs, np.float32)
    arrays.update(_layer_arrays("", emulator.layers))
    for m, member in enumerate(emulator.members):
        arrays.update(_layer_arrays(f"member_{m}_", member))
    if emulator.low_layers:
        for name in _LOW_ARRAYS:
            arrays[name] = np.asarray(getattr(emulator, name), np.float32)
        arrays.update(_layer_arrays("low_", emulator.low_layers))
        for m, member in enumerate(emulator.low_members):
            arrays.update(_layer_arrays(f"low_member_{m}_", member))
    return arrays


def _layer_arrays(prefix, layers) -> dict:
    """{prefix}layer_{i}_w / _b of one MLP's ((W, b), ...), float32."""
    return {
        f"{prefix}layer_{i}_{name}": np.asarray(a, np.float32)
        for i, layer in enumerate(layers)
        for name, a in zip("wb", layer, strict=True)
    }


def _read_layers(data, prefix, num_layers) -> tuple:
    """Inverse of `_layer_arrays`."""
    return tuple(
        tuple(jnp.asarray(data[f"{prefix}layer_{i}_{name}"], jnp.float32) for name in "wb")
        for i in range(num_layers)
    )


def fitted_from_arrays(data) -> FittedEmulator:
    """Inverse of `fitted_to_arrays` (a mapping of arrays, e.g. an open `np.load`)."""
    meta = json.loads(str(data["meta_json"]))
    if meta.get("kind") != KIND or meta.get("format_version") != FITTED_FORMAT_VERSION:
        raise ValueError(
            f"not a {KIND} emulator of format {FITTED_FORMAT_VERSION}: {meta.get('kind')!r} "
            f"format {meta.get('format_version')}"
        )
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    knots = tuple(np.asarray(data[f"base_knots_{p}"], np.float64) for p in range(2))
    anova = tuple(np.asarray(data[f"anova_knots_{p}"], np.float64) for p in range(6))
    num, num_low = meta["num_layers"], meta.get("num_low_layers", 0)
    low = {}
    if num_low:
        low["low_layers"] = _read_layers(data, "low_", num_low)
        for name in _LOW_ARRAYS:
            low[name] = f32(data[name])
        low["low_members"] = tuple(
            _read_layers(data, f"low_member_{m}_", num_low)
            for m in range(meta.get("num_low_members", 0))
        )
    return FittedEmulator(
        ell=f32(data["ell"]),
        bounds=f32(data["bounds"]),
        base_knots=tuple(f32(k) for k in knots),
        base_basis=tuple(f32(spline_basis(k)) for k in knots),
        base_log_cl=f32(data["base_log_cl"]),
        anova_knots=tuple(f32(k) for k in anova),
        anova_basis=tuple(f32(spline_basis(k)) for k in anova),
        anova_log_cl=f32(data["anova_log_cl"]),
        anova_pcs=f32(data["anova_pcs"]) if "anova_pcs" in data else None,
        layers=_read_layers(data, "", num),
        members=tuple(
            _read_layers(data, f"member_{m}_", num) for m in range(meta.get("num_members", 0))
        ),
        pca_mean=f32(data["pca_mean"]),
        pca_basis=f32(data["pca_basis"]),
        feature_lo=f32(data["feature_lo"]),
        feature_hi=f32(data["feature_hi"]),
        param_names=tuple(meta["param_names"]),
        preset_json=str(data["preset_json"]),
        **low,
    )
