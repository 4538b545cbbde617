"""Atomic file writes: write a temporary sibling, then `os.replace` it onto the target."""

from __future__ import annotations

import os

__all__ = ["atomic_write", "atomic_savez"]


def atomic_write(path, write, *, suffix: str = "") -> str:
    """Call `write(tmp)` on a temporary sibling of `path`, then move it onto `path`.

    A crash, or a reader holding the old file, never leaves a truncated result; on failure the
    temporary is removed and the old file is untouched. `suffix` ends the temporary's name (for
    writers such as np.savez that append an extension otherwise). Returns `path` as a str.
    """
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}{suffix}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def atomic_savez(path, compressed: bool = False, **arrays) -> None:
    """np.savez(_compressed) onto `path` atomically (`atomic_write`)."""
    import numpy as np

    save = np.savez_compressed if compressed else np.savez
    atomic_write(path, lambda tmp: save(tmp, **arrays), suffix=".npz")
