"""Checkpoints of an MCMC run: its settings, its state as arrays, its draws so far.

A checkpoint is a directory: ``run.json`` (the run's settings and a hash of the observation;
`open_checkpoint` refuses a run with other ones) and one subdirectory per group of chains run
together, holding ``state.npz`` (the chains' last state, NumPyro's extra fields of every
iteration so far, times, and the list of draw files) and ``draws-<first draw>.npz`` (the
unconstrained draws of one segment). Every file is written atomically, the draws before the
state that lists them, so a run killed at any moment leaves a consistent checkpoint. No
pickle: a state (NumPyro namedtuples, tuples, dicts, arrays, JAX keys) is stored as arrays
and a JSON description of its structure (`state_to_arrays`).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.atomic import atomic_savez, atomic_write

__all__ = [
    "observation_hash",
    "open_checkpoint",
    "state_to_arrays",
    "state_from_arrays",
    "load_group",
    "save_group",
]

RUN_FILE = "run.json"


def observation_hash(*arrays) -> str:
    """sha256 of arrays (None allowed): shapes, dtypes and bytes."""
    digest = hashlib.sha256()
    for a in arrays:
        a = None if a is None else np.ascontiguousarray(a)
        digest.update(repr(None if a is None else (a.shape, a.dtype.str)).encode())
        if a is not None:
            digest.update(a.tobytes())
    return digest.hexdigest()


def open_checkpoint(directory, settings: dict) -> bool:
    """Create checkpoint `directory` for a run with `settings` (JSON-able), or check that the
    one there was written for the same settings. Returns True when resuming.

    Raises ValueError naming the settings that differ (the observation, the chains, the seed,
    the kernel's settings): a checkpoint continues only the run that wrote it."""
    path = os.path.join(directory, RUN_FILE)
    settings = json.loads(json.dumps(settings))
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        diff = [f"{k}: {saved.get(k)!r} there, {v!r} now" for k, v in settings.items()
                if saved.get(k) != v]  # fmt: skip
        if diff:
            raise ValueError(
                f"checkpoint {directory} was written for another run ({'; '.join(diff)}); "
                "use another --checkpoint directory, or delete this one to start afresh"
            )
        return True
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"checkpoint {directory} exists and is not a directory")
    os.makedirs(directory, exist_ok=True)
    atomic_write(path, lambda tmp: _write_json(tmp, settings))
    return False


def _write_json(path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)


def state_to_arrays(state) -> tuple[dict, dict]:
    """(arrays, structure) of an MCMC state (NumPyro namedtuples, tuples, dicts, None and
    arrays; JAX keys as their raw data): `state_from_arrays` puts it back together."""
    arrays = {}

    def encode(x):
        if x is None:
            return {"none": True}
        if isinstance(x, tuple) and hasattr(x, "_fields"):
            cls = type(x)
            fields = {f: encode(getattr(x, f)) for f in x._fields}
            return {"namedtuple": f"{cls.__module__}:{cls.__qualname__}", "fields": fields}
        if isinstance(x, (tuple, list)):
            return {"tuple": [encode(v) for v in x]}
        if isinstance(x, dict):
            return {"dict": [[list(k) if isinstance(k, tuple) else k, encode(v)]
                             for k, v in x.items()]}  # fmt: skip
        name = f"a{len(arrays)}"
        key = jax.dtypes.issubdtype(jnp.result_type(x), jax.dtypes.prng_key)
        arrays[name] = np.asarray(jax.random.key_data(x) if key else x)
        return {"array": name, "key": bool(key)}

    return arrays, encode(state)


def state_from_arrays(arrays, structure):
    """The state `state_to_arrays` took apart (namedtuples of numpyro modules only)."""

    def decode(s):
        if "none" in s:
            return None
        if "namedtuple" in s:
            module, _, name = s["namedtuple"].partition(":")
            if not module.startswith("numpyro."):
                raise ValueError(f"checkpoint state holds an unexpected type {s['namedtuple']}")
            cls = getattr(importlib.import_module(module), name)
            return cls(**{f: decode(v) for f, v in s["fields"].items()})
        if "tuple" in s:
            return tuple(decode(v) for v in s["tuple"])
        if "dict" in s:
            return {(tuple(k) if isinstance(k, list) else k): decode(v) for k, v in s["dict"]}
        a = jnp.asarray(arrays[s["array"]])
        return jax.random.wrap_key_data(a) if s["key"] else a

    return decode(structure)


def load_group(directory):
    """The saved progress of a group of chains, or None."""
    path = os.path.join(directory, "state.npz")
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as f:
        data = {k: f[k] for k in f.files}
    meta = json.loads(str(data.pop("meta")))
    state = state_from_arrays({k[6:]: v for k, v in data.items() if k.startswith("state/")},
                              meta["structure"])  # fmt: skip
    fields = {k[7:]: v for k, v in data.items() if k.startswith("fields/")}
    draws = []
    for name in meta["draw_files"]:
        with np.load(os.path.join(directory, name), allow_pickle=False) as f:
            draws.append({k: f[k] for k in f.files})
    return dict(meta=meta, state=state, fields=fields, draws=draws)


def save_group(directory, state, fields, meta) -> None:
    arrays, structure = state_to_arrays(state)
    out = {f"state/{k}": v for k, v in arrays.items()}
    out.update({f"fields/{k}": np.asarray(v) for k, v in fields.items()})
    out["meta"] = np.asarray(json.dumps({**meta, "structure": structure}))
    atomic_savez(os.path.join(directory, "state.npz"), **out)
