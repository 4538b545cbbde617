"""Atomic file writes: write a temporary sibling, then `os.replace` it onto the target; and
`Autosave`, when a long run writes its progress."""

from __future__ import annotations

import os
import time

__all__ = ["atomic_write", "atomic_savez", "Autosave"]


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


class Autosave:
    """When a resumable run saves: ``autosave(done)`` calls `save()` if `done` (the finished
    units) has grown since the last save and `every_s` seconds of wall time have passed since
    it (0: every time), ``autosave(done, final=True)`` whenever something is unsaved (at the
    end, or on an error or an interrupt). `save` None: nothing is written (no progress file).
    """

    def __init__(self, save, every_s: float, saved: int = 0):
        if not every_s >= 0:
            raise ValueError(f"save_every_s must be >= 0 seconds, got {every_s}")
        self._save, self._every_s = save, float(every_s)
        self._saved, self._last = saved, time.perf_counter()

    def __call__(self, done: int, *, final: bool = False) -> None:
        if self._save is None or done <= self._saved:
            return
        if final or time.perf_counter() - self._last >= self._every_s:
            self._save()
            self._saved, self._last = done, time.perf_counter()
