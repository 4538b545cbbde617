"""HDF5 datasets of (theta, kappa) pairs: resumable writer, user-map writer, streaming reader.

File format (version 1), also for users' own N-body / ray-tracing maps (docs/simulator.md):

- dataset ``theta``: (num, P) float32, the sampled parameters in ``param_names`` order;
- dataset ``kappa``: (num, C, N, N) float32, convergence maps (bin, y, x);
- attributes: ``format_version`` (1), ``preset`` (Preset JSON), ``param_names`` (JSON list),
  ``num_complete`` (rows 0 .. num_complete-1 are valid), ``num_requested``, ``seed``
  (-1 for user data), ``chunk_size``, ``source`` ("lognormal" or "user").

The writer generates row j from ``fold_in(PRNGKey(seed), j)`` (``simulator.simulate``), writes a
chunk, flushes, and only then raises ``num_complete``: killed at any point and rerun, it resumes at
``num_complete`` and the file ends identical to an uninterrupted run.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from numpyro_diffprior.presets import Preset, get_preset

__all__ = [
    "FORMAT_VERSION",
    "write_dataset",
    "write_user_dataset",
    "read_dataset_info",
    "iterate_batches",
]

FORMAT_VERSION = 1


def _h5py():
    import h5py

    return h5py


def _create(f, preset: Preset, num: int, *, seed: int, chunk_size: int, source: str):
    rows = max(1, min(chunk_size, num, 64))
    f.create_dataset(
        "theta", shape=(num, preset.n_params), maxshape=(None, preset.n_params), dtype="f4"
    )
    f.create_dataset(
        "kappa",
        shape=(num,) + preset.map_shape,
        maxshape=(None,) + preset.map_shape,
        dtype="f4",
        chunks=(rows,) + preset.map_shape,
    )
    f.attrs.update(
        {
            "format_version": FORMAT_VERSION,
            "preset": preset.to_json(),
            "param_names": json.dumps(list(preset.param_names)),
            "num_complete": 0,
            "num_requested": num,
            "seed": seed,
            "chunk_size": chunk_size,
            "source": source,
        }
    )


def _check_resumable(f, path, preset: Preset, num: int, seed: int):
    attrs = f.attrs
    if int(attrs.get("format_version", -1)) != FORMAT_VERSION:
        raise ValueError(f"{path}: not a numpyro_diffprior dataset of format {FORMAT_VERSION}")
    stored = Preset.from_json(attrs["preset"])
    if stored != preset:
        raise ValueError(
            f"{path} holds maps of preset {stored.name!r}, not {preset.name!r}; refusing to "
            "resume (use another --out file)"
        )
    if attrs.get("source") != "lognormal" or int(attrs["seed"]) != seed:
        raise ValueError(
            f"{path} was written with seed {int(attrs['seed'])} (source {attrs.get('source')!r}),"
            f" not seed {seed}; refusing to resume"
        )
    done = int(attrs["num_complete"])
    if num < done:
        raise ValueError(f"{path} already holds {done} maps, more than the {num} requested")
    if f["theta"].shape[0] < num:
        f["theta"].resize(num, axis=0)
        f["kappa"].resize(num, axis=0)
        attrs["num_requested"] = num
    return done


def write_dataset(
    path, preset, num: int, *, seed: int = 0, chunk_size: int = 256, emulator=None, progress=True
):
    """Simulate ``num`` (theta, kappa) pairs into an HDF5 file, resuming a partial file.

    Returns the path. Rerunning after an interruption continues from the last complete chunk;
    a file written for another preset or seed is refused with a ValueError.
    """
    from tqdm.auto import tqdm

    from numpyro_diffprior.simulator import default_batch_size, simulate

    h5py = _h5py()
    preset = get_preset(preset)
    if not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    path = pathlib.Path(path)
    if path.is_dir():
        raise ValueError(f"dataset path {str(path)!r} is a directory; give an HDF5 file name")
    if path.exists() and not h5py.is_hdf5(path):
        raise ValueError(
            f"dataset path {str(path)!r} exists and is not an HDF5 file; refusing to open it "
            "(give a new path, or the HDF5 file of an interrupted run to resume it)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if emulator is None:
        from numpyro_diffprior.cosmology.emulator import load_emulator

        emulator = load_emulator(preset)
    key = jax.random.PRNGKey(seed)
    with h5py.File(path, "a") as f:
        if "theta" in f:
            done = _check_resumable(f, path, preset, num, seed)
        else:
            _create(f, preset, num, seed=seed, chunk_size=chunk_size, source="lognormal")
            done = 0
        batch = min(chunk_size, default_batch_size(preset))
        with tqdm(
            total=num,
            initial=done,
            desc=f"simulate {preset.name}",
            disable=not progress,
            unit="map",
        ) as bar:
            while done < num:
                stop = min(done + chunk_size, num)
                theta, kappa = simulate(
                    key, preset, stop - done, emulator=emulator, batch_size=batch, start=done
                )
                f["theta"][done:stop] = np.asarray(theta, np.float32)
                f["kappa"][done:stop] = np.asarray(kappa, np.float32)
                f.flush()
                f.attrs["num_complete"] = stop
                f.flush()
                bar.update(stop - done)
                done = stop
    return path


def write_user_dataset(path, preset, theta, kappa):
    """Write users' own maps (N-body, ray tracing) in the same format; refuses to overwrite."""
    h5py = _h5py()
    preset = get_preset(preset)
    theta = np.asarray(theta, np.float32)
    kappa = np.asarray(kappa, np.float32)
    num = theta.shape[0] if theta.ndim == 2 else -1
    if theta.shape != (num, preset.n_params) or num < 1:
        raise ValueError(f"theta must have shape (num, {preset.n_params}), got {theta.shape}")
    if kappa.shape != (num,) + preset.map_shape:
        raise ValueError(f"kappa must have shape {(num,) + preset.map_shape}, got {kappa.shape}")
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(kappa))):
        raise ValueError("theta and kappa must be finite")
    path = pathlib.Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; refusing to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        _create(f, preset, num, seed=-1, chunk_size=num, source="user")
        f["theta"][...] = theta
        f["kappa"][...] = kappa
        f.attrs["num_complete"] = num
    return path


def read_dataset_info(path) -> dict:
    """Metadata of a dataset: preset (Preset), param_names, num_complete, num_requested, seed,
    chunk_size, source, format_version, complete (bool)."""
    h5py = _h5py()
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no dataset at {path}")
    with h5py.File(path, "r") as f:
        a = f.attrs
        if int(a.get("format_version", -1)) != FORMAT_VERSION or "theta" not in f:
            raise ValueError(f"{path}: not a numpyro_diffprior dataset of format {FORMAT_VERSION}")
        info = {
            "format_version": int(a["format_version"]),
            "preset": Preset.from_json(a["preset"]),
            "param_names": tuple(json.loads(a["param_names"])),
            "num_complete": int(a["num_complete"]),
            "num_requested": int(a["num_requested"]),
            "seed": int(a["seed"]),
            "chunk_size": int(a["chunk_size"]),
            "source": str(a["source"]),
        }
    info["complete"] = info["num_complete"] == info["num_requested"]
    return info


def iterate_batches(
    path,
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    epochs=None,
    rng=None,
    drop_remainder: bool = True,
    block_size: int | None = None,
):
    """Stream (theta (B, P), kappa (B, C, N, N)) numpy batches from the complete rows.

    Reads contiguous blocks (``block_size`` rows, default 16 batches) so the file is never
    loaded whole; with ``shuffle`` the block order and the rows within the pool of loaded
    rows are permuted every epoch (``rng`` or ``seed``). ``epochs=None`` streams forever.
    Leftover rows carry over to the next epoch; at the end of the last epoch a partial
    batch is yielded only if ``drop_remainder`` is False.
    """
    h5py = _h5py()
    info = read_dataset_info(path)
    n = info["num_complete"]
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if n < batch_size and drop_remainder:
        raise ValueError(f"{path} holds {n} complete maps, fewer than batch_size={batch_size}")
    rng = np.random.default_rng(seed) if rng is None else rng
    block = int(block_size or 16 * batch_size)
    starts = np.arange(0, n, block)
    with h5py.File(path, "r") as f:
        theta_ds, kappa_ds = f["theta"], f["kappa"]
        pool_t = np.zeros((0,) + theta_ds.shape[1:], np.float32)
        pool_k = np.zeros((0,) + kappa_ds.shape[1:], np.float32)
        epoch = 0
        while epochs is None or epoch < epochs:
            order = rng.permutation(starts) if shuffle else starts
            for s in order:
                stop = min(s + block, n)
                pool_t = np.concatenate([pool_t, theta_ds[s:stop]])
                pool_k = np.concatenate([pool_k, kappa_ds[s:stop]])
                if shuffle:
                    perm = rng.permutation(len(pool_t))
                    pool_t, pool_k = pool_t[perm], pool_k[perm]
                while len(pool_t) >= batch_size:
                    yield pool_t[:batch_size], pool_k[:batch_size]
                    pool_t, pool_k = pool_t[batch_size:], pool_k[batch_size:]
            epoch += 1
        if len(pool_t) and not drop_remainder:
            yield pool_t, pool_k
