"""HDF5 dataset: writer resumes after an interruption or a kill with nothing lost or
duplicated, the user-map writer, metadata and the streaming reader."""

import json
import os
import pathlib
import signal
import subprocess
import sys

import h5py
import jax
import numpy as np
import pytest

import numpyro_diffprior.simulator as simulator_pkg
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.simulator.dataset import (
    iterate_batches,
    read_dataset_info,
    write_dataset,
    write_user_dataset,
)

TINY = get_preset("tiny")
HERE = pathlib.Path(__file__).parent


def read_all(path):
    with h5py.File(path, "r") as f:
        return f["theta"][...], f["kappa"][...], dict(f.attrs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, toy_emulator):
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    write_dataset(path, "tiny", 40, seed=3, chunk_size=16, emulator=toy_emulator, progress=False)
    return path


def test_uninterrupted_file_contents(reference, toy_emulator):
    theta, kappa, attrs = read_all(reference)
    assert theta.shape == (40, 2) and kappa.shape == (40, 2, 16, 16)
    assert theta.dtype == np.float32 and kappa.dtype == np.float32
    assert attrs["num_complete"] == 40 and attrs["seed"] == 3
    assert json.loads(attrs["param_names"]) == ["Omega_c", "sigma_8"]
    t_ref, k_ref = simulator_pkg.simulate(
        jax.random.PRNGKey(3), TINY, 40, emulator=toy_emulator, batch_size=16
    )
    np.testing.assert_allclose(theta, t_ref, rtol=1e-6)
    np.testing.assert_allclose(kappa, k_ref, rtol=1e-5, atol=1e-9)
    info = read_dataset_info(reference)
    assert info["preset"] == TINY and info["complete"] and info["num_complete"] == 40


def test_resume_after_exception_equals_uninterrupted(
    tmp_path, reference, toy_emulator, monkeypatch
):
    path = tmp_path / "part.h5"
    real = simulator_pkg.simulate
    calls = []

    def flaky(*args, **kwargs):
        calls.append(kwargs["start"])
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(simulator_pkg, "simulate", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(
            path, "tiny", 40, seed=3, chunk_size=16, emulator=toy_emulator, progress=False
        )
    assert read_dataset_info(path)["num_complete"] == 16 and not read_dataset_info(path)["complete"]
    monkeypatch.setattr(simulator_pkg, "simulate", real)
    write_dataset(path, "tiny", 40, seed=3, chunk_size=16, emulator=toy_emulator, progress=False)
    theta, kappa, _ = read_all(path)
    theta_ref, kappa_ref, _ = read_all(reference)
    np.testing.assert_array_equal(theta, theta_ref)
    np.testing.assert_array_equal(kappa, kappa_ref)
    # rerunning a complete file does nothing; extending it appends the next rows
    write_dataset(path, "tiny", 40, seed=3, chunk_size=16, emulator=toy_emulator, progress=False)
    write_dataset(path, "tiny", 45, seed=3, chunk_size=16, emulator=toy_emulator, progress=False)
    theta2, _, attrs = read_all(path)
    np.testing.assert_array_equal(theta2[:40], theta_ref)
    assert attrs["num_complete"] == 45 and len(np.unique(theta2[:, 0])) == 45


def test_refuses_other_preset_or_seed(reference, toy_emulator, toy_emulator_coarse):
    with pytest.raises(ValueError, match="seed"):
        write_dataset(reference, "tiny", 40, seed=4, emulator=toy_emulator, progress=False)
    with pytest.raises(ValueError, match="preset"):
        write_dataset(
            reference, "lsst-y10-coarse", 40, seed=3, emulator=toy_emulator_coarse, progress=False
        )
    with pytest.raises(ValueError, match="more than"):
        write_dataset(reference, "tiny", 10, seed=3, emulator=toy_emulator, progress=False)
    with pytest.raises(ValueError, match="num"):
        write_dataset(reference, "tiny", 0, emulator=toy_emulator, progress=False)


CHILD = """
import sys
sys.path.insert(0, {here!r})
from simulator_toys import make_toy_emulator
import numpyro_diffprior.simulator as pkg
from numpyro_diffprior.simulator.dataset import write_dataset
real = pkg.simulate
def loud(*a, **k):
    out = real(*a, **k)
    print("chunk", k["start"], flush=True)
    return out
pkg.simulate = loud
write_dataset({path!r}, "tiny", 400, seed=3, chunk_size=8, emulator=make_toy_emulator(),
              progress=False)
"""


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, toy_emulator):
    """A real kill -9 of a writing process; the rerun completes an identical file."""
    path = tmp_path / "killed.h5"
    code = CHILD.format(here=str(HERE), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        assert proc.stdout.readline().startswith("chunk")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = read_dataset_info(path)["num_complete"]
    assert 16 <= done < 400 and done % 8 == 0
    write_dataset(path, "tiny", 400, seed=3, chunk_size=8, emulator=toy_emulator, progress=False)
    other = tmp_path / "straight.h5"
    write_dataset(other, "tiny", 400, seed=3, chunk_size=8, emulator=toy_emulator, progress=False)
    theta, kappa, _ = read_all(path)
    theta_ref, kappa_ref, _ = read_all(other)
    np.testing.assert_array_equal(theta, theta_ref)
    np.testing.assert_array_equal(kappa, kappa_ref)  # bitwise: same command, same batches
    assert len(np.unique(theta[:, 0])) == 400


def test_user_dataset_and_streaming_reader(tmp_path):
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(50, 2)).astype(np.float32)
    theta[:, 0] = np.arange(50)  # row id, to check coverage
    kappa = rng.normal(size=(50, 2, 16, 16)).astype(np.float32)
    path = write_user_dataset(tmp_path / "user.h5", "tiny", theta, kappa)
    info = read_dataset_info(path)
    assert info["source"] == "user" and info["num_complete"] == 50
    with pytest.raises(FileExistsError):
        write_user_dataset(path, "tiny", theta, kappa)
    with pytest.raises(ValueError, match="kappa must have shape"):
        write_user_dataset(tmp_path / "u2.h5", "tiny", theta, kappa[:, :1])
    with pytest.raises(ValueError, match="theta must have shape"):
        write_user_dataset(tmp_path / "u3.h5", "tiny", theta[:, :1], kappa)
    # two epochs, batch 8, blocks of 16: every row exactly twice (100 = 12 * 8 + 4 leftover)
    batches = list(iterate_batches(path, 8, seed=1, epochs=2, block_size=16, drop_remainder=False))
    ids = np.concatenate([b[0][:, 0] for b in batches]).astype(int)
    assert np.all(np.bincount(ids, minlength=50) == 2)
    assert all(b[0].shape[0] == 8 for b in batches[:-1]) and batches[-1][0].shape[0] == 4
    t0, k0 = batches[0]
    np.testing.assert_array_equal(k0, kappa[t0[:, 0].astype(int)])  # pairs stay together
    assert not np.array_equal(ids[:50], np.arange(50))  # shuffled
    ordered = list(iterate_batches(path, 10, shuffle=False, epochs=1))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in ordered]), theta)
    stream = iterate_batches(path, 8)  # epochs=None: infinite
    assert len([next(stream) for _ in range(30)]) == 30
    with pytest.raises(ValueError, match="fewer than batch_size"):
        next(iterate_batches(path, 64))


def test_cli_simulate(tmp_path, toy_emulator, monkeypatch, capsys):
    from numpyro_diffprior import cli
    from numpyro_diffprior.cosmology import emulator as emulator_module

    monkeypatch.setattr(emulator_module, "load_emulator", lambda preset=None: toy_emulator)
    out = tmp_path / "cli.h5"
    argv = [
        "simulate",
        "--preset",
        "tiny",
        "--num",
        "5",
        "--out",
        str(out),
        "--seed",
        "3",
        "--chunk-size",
        "16",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    assert "5 maps" in capsys.readouterr().out
    theta, _, _ = read_all(out)
    t_ref, _ = simulator_pkg.simulate(
        jax.random.PRNGKey(3), TINY, 5, emulator=toy_emulator, batch_size=16
    )
    np.testing.assert_allclose(theta, t_ref, rtol=1e-6)
    assert cli.main(["simulate", "--preset", "nope", "--num", "5", "--out", str(out)]) == 2
    assert "unknown preset" in capsys.readouterr().err
