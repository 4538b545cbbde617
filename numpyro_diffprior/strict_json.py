"""Strict JSON output: NaN and inf become null, numpy scalars and arrays plain Python.

`json.dump` writes `NaN` by default, which is not JSON (`jq`, JavaScript and strict parsers
reject the file). Every JSON file the package writes goes through `dump_json`.
"""

from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["json_safe", "dump_json", "dumps_json"]


def json_safe(obj):
    """`obj` with numpy values as Python ones and every non-finite float as None."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "__array__"):  # jax arrays
        return json_safe(np.asarray(obj))
    if hasattr(obj, "__float__"):
        return json_safe(float(obj))
    return str(obj)


def dumps_json(obj, **kwargs) -> str:
    """`json.dumps` of `json_safe(obj)` with allow_nan=False."""
    return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def dump_json(obj, fh, **kwargs) -> None:
    """`json.dump` of `json_safe(obj)` to the open file `fh` with allow_nan=False."""
    json.dump(json_safe(obj), fh, allow_nan=False, **kwargs)
