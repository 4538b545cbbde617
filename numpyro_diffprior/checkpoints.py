"""Self-describing, atomic checkpoints of the joint denoiser (docs/design.md §4).

A checkpoint is a directory with
- `weights.npz`: every array leaf under a readable path key, `params/<path>`,
  `ema_params/<path>`, `opt_state/<path>`, and `rng_key` (raw key data); no pickles;
- `config.json`: format version, package version, preset (with survey), normaliser, network
  and training configs, step, and the SHA-256 of `weights.npz` (corruption check).
It is written to a temporary sibling directory and moved into place with `os.replace`.
Loading rebuilds the pytree structures from the configs (shape-only, `jax.eval_shape`) and
checks every leaf's shape, so a mismatch or a damaged file is a clear ValueError.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior import __version__
from numpyro_diffprior.denoiser import NetworkDenoiser
from numpyro_diffprior.diffusion.normalization import Normalizer
from numpyro_diffprior.nets import NetworkConfig, make_network
from numpyro_diffprior.presets import Preset, get_preset
from numpyro_diffprior.training import TrainingConfig, TrainState, make_optimizer

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "load_pretrained", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_WEIGHTS, _CONFIG = "weights.npz", "config.json"
_PRETRAINED = Path(__file__).resolve().parent / "data" / "pretrained"


def _flatten(prefix, tree):
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {f"{prefix}/{jax.tree_util.keystr(p)}": np.asarray(v) for p, v in leaves}


def _unflatten(prefix, template, arrays, path):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    out = []
    for p, t in leaves:
        key = f"{prefix}/{jax.tree_util.keystr(p)}"
        if key not in arrays:
            raise ValueError(f"checkpoint {path}: missing array {key!r} (config/weights mismatch)")
        a = arrays[key]
        if a.shape != tuple(t.shape):
            raise ValueError(f"checkpoint {path}: {key!r} has shape {a.shape}, expected {t.shape}")
        out.append(jnp.asarray(a, dtype=t.dtype))
    return jax.tree_util.tree_unflatten(treedef, [v for v in out])


def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(
    path,
    state: TrainState,
    *,
    preset,
    normalizer: Normalizer,
    network_config: NetworkConfig,
    training_config: TrainingConfig,
    ema_only: bool = False,
    extra: dict | None = None,
    observation_range: dict | None = None,
) -> Path:
    """Write `state` and its configs to directory `path` atomically; returns the path.

    `ema_only=True` stores only the EMA weights (a small file for shipping; not resumable).
    `observation_range` (an amortised model's `amortized.simulate.ObservationRange.to_dict()`)
    marks a conditional checkpoint: `config.json` gets "conditional": true and the range.
    """
    preset = get_preset(preset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _flatten("ema_params", state.ema_params)
    if not ema_only:
        arrays.update(_flatten("params", state.params))
        arrays.update(_flatten("opt_state", state.opt_state))
        arrays["rng_key"] = np.asarray(jax.random.key_data(state.rng_key))
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o755)
        np.savez(tmp / _WEIGHTS, **arrays)
        config = {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "preset": preset.to_dict(),
            "normalizer": normalizer.to_dict(),
            "network_config": network_config.to_dict(),
            "training_config": training_config.to_dict(),
            "step": int(state.step),
            "ema_only": bool(ema_only),
            "weights_sha256": _sha256(tmp / _WEIGHTS),
            "extra": extra or {},
        }
        if observation_range is not None:
            config.update(conditional=True, observation_range=observation_range)
        (tmp / _CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return path


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint; `denoise_fn()` gives the EMA denoiser on normalised coordinates."""

    preset: Preset
    normalizer: Normalizer
    network_config: NetworkConfig
    training_config: TrainingConfig
    step: int
    params: dict | None
    ema_params: dict
    opt_state: object
    rng_key: object
    apply_fn: callable
    config: dict
    path: Path

    def network_denoiser(self) -> NetworkDenoiser:
        """The picklable ``apply_fn(params, x_n, sigma) -> x_hat_n`` of this network (EDM)."""
        return NetworkDenoiser(self.network_config, self.preset, self.training_config.sigma_data)

    def denoise_fn(self, *, ema: bool = True):
        """denoise_fn(x (B, D), sigma (B,)) -> x_hat (B, D) (EDM-preconditioned)."""
        params = self.ema_params if ema else self.params
        if params is None:
            raise ValueError(f"checkpoint {self.path} holds EMA weights only")
        return functools.partial(self.network_denoiser(), params)

    def train_state(self) -> TrainState:
        """The full TrainState for resuming (ValueError for EMA-only checkpoints)."""
        if self.params is None:
            raise ValueError(f"checkpoint {self.path} holds EMA weights only; cannot resume")
        return TrainState(
            jnp.asarray(self.step, jnp.int32),
            self.params,
            self.ema_params,
            self.opt_state,
            self.rng_key,
        )

    @property
    def dim(self) -> int:
        c, n, m = self.preset.map_shape
        return self.preset.n_params + c * n * m


def load_checkpoint(path, *, preset=None) -> Checkpoint:
    """Load a checkpoint directory; `preset` (name or Preset), if given, must match it."""
    path = Path(path)
    cfg_file, w_file = path / _CONFIG, path / _WEIGHTS
    for f in (cfg_file, w_file):
        if not f.is_file():
            inner = path / "checkpoint"
            hint = (
                f"; {path} is a `train --out` folder: the checkpoint is {inner}"
                if (inner / _CONFIG).is_file()
                else ""
            )
            raise ValueError(f"not a checkpoint: {f} is missing{hint}")
    try:
        config = json.loads(cfg_file.read_text())
        stored_preset = Preset.from_dict(config["preset"])
        normalizer = Normalizer.from_dict(config["normalizer"])
        net_cfg = NetworkConfig.from_dict(config["network_config"])
        train_cfg = TrainingConfig.from_dict(config["training_config"])
        step, ema_only = int(config["step"]), bool(config["ema_only"])
        version = config["format_version"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"checkpoint {path}: corrupted or incomplete {_CONFIG} ({err!r})") from err
    if version != FORMAT_VERSION:
        raise ValueError(f"checkpoint {path}: format version {version}, expected {FORMAT_VERSION}")
    if preset is not None:
        want = get_preset(preset)
        if want.to_dict() != stored_preset.to_dict():
            raise ValueError(
                f"checkpoint {path} was trained for preset {stored_preset.name!r} "
                f"(survey {stored_preset.survey.name!r}, {stored_preset.map_shape}, "
                f"{list(stored_preset.param_names)}), not for {want.name!r} "
                f"(survey {want.survey.name!r}, {want.map_shape}, {list(want.param_names)})"
            )
    if _sha256(w_file) != config.get("weights_sha256"):
        raise ValueError(f"checkpoint {path}: {_WEIGHTS} is corrupted (checksum mismatch)")
    try:
        with np.load(w_file, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"checkpoint {path}: cannot read {_WEIGHTS} ({err!r})") from err

    init_fn, apply_fn = make_network(net_cfg, stored_preset)
    p_template = jax.eval_shape(init_fn, jax.random.key(0))
    ema = _unflatten("ema_params", p_template, arrays, path)
    params = opt_state = rng_key = None
    if not ema_only:
        params = _unflatten("params", p_template, arrays, path)
        o_template = jax.eval_shape(make_optimizer(train_cfg).init, p_template)
        opt_state = _unflatten("opt_state", o_template, arrays, path)
        rng_key = jax.random.wrap_key_data(jnp.asarray(arrays["rng_key"]))
    return Checkpoint(
        stored_preset,
        normalizer,
        net_cfg,
        train_cfg,
        step,
        params,
        ema,
        opt_state,
        rng_key,
        apply_fn,
        config,
        path,
    )


def load_pretrained(preset_name: str = "lsst-y10-coarse") -> Checkpoint:
    """The model shipped with the package for `preset_name` (numpyro_diffprior/data/pretrained)."""
    preset = get_preset(preset_name)
    path = _PRETRAINED / preset.name
    if not (path / _CONFIG).is_file():
        available = sorted(p.name for p in _PRETRAINED.glob("*") if (p / _CONFIG).is_file())
        raise ValueError(
            f"no pretrained model for preset {preset.name!r} (looked in {path}); available: "
            f"{available or 'none'}. Train one with `numpyro-diffprior train --preset "
            f'{preset.name} --out DIR` and load it with load_checkpoint("DIR/checkpoint").'
        )
    ckpt = load_checkpoint(path)
    if not ckpt.preset.same_spectra(preset):
        raise ValueError(f"the shipped model in {path} is not for preset {preset.name!r}")
    if ckpt.preset.shift_model != preset.shift_model:
        warnings.warn(
            f"the shipped {preset.name!r} model was trained on maps with "
            f"{ckpt.preset.shift_model!r} shifts, not the preset's {preset.shift_model!r} "
            "shifts; the checkpoint's preset (Checkpoint.preset) describes its maps "
            "(docs/training.md)",
            UserWarning,
            stacklevel=2,
        )
    return ckpt
