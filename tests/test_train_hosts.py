"""`train --coordinator --num-processes --process-id`: jax.distributed on several hosts."""

import json
import os
import socket
import subprocess
import sys
import types

import pytest

from numpyro_diffprior.cli import main
from numpyro_diffprior.commands import train as train_command


class _Stop(Exception):
    pass


def test_initialize_gets_the_flags_before_training(monkeypatch, tmp_path):
    import jax

    calls = []

    def fake_initialize(**kwargs):
        calls.append(kwargs)
        raise _Stop  # nothing after it runs: it came first

    monkeypatch.setattr(jax.distributed, "initialize", fake_initialize)
    argv = [
        "train",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "run"),
        "--coordinator",
        "10.0.0.1:1234",
        "--num-processes",
        "4",
        "--process-id",
        "3",
    ]
    with pytest.raises(_Stop):
        main(argv)
    assert calls == [dict(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3)]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--coordinator", "h:1"], "go together"),
        (["--coordinator", "h", "--num-processes", "2", "--process-id", "0"], "HOST:PORT"),
        (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "process-id"),
    ],
)
def test_bad_host_flags_are_refused(tmp_path, capsys, flags, message):
    argv = ["train", "--preset", "tiny", "--steps", "2", "--out", str(tmp_path / "r"), *flags]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_one_host_needs_no_initialize():
    ns = types.SimpleNamespace(coordinator=None, num_processes=None, process_id=None)
    assert train_command.check_hosts(ns) is None


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.processes
def test_two_processes_train_one_model_on_cpu(tmp_path):
    """Two local processes (one CPU device each, gloo collectives) train the tiny network on a
    mesh of both devices; process 0 alone writes the checkpoint and the metrics."""
    port = _free_port()
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "numpyro_diffprior.cli",
        "train",
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--width",
        "8",
        "--channel-mult",
        "1",
        "--num-blocks",
        "1",
        "--emb-dim",
        "16",
        "--log-every",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--coordinator",
        f"localhost:{port}",
        "--num-processes",
        "2",
    ]
    env = dict(os.environ)
    procs = [
        subprocess.Popen(
            cmd + ["--process-id", str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    try:
        logs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], logs
    assert "checkpoint:" in logs[0] and "checkpoint:" not in logs[1]
    assert (out / "checkpoint" / "config.json").is_file()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
