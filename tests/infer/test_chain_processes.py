"""Worker processes of `runtime.processes` do not outlive the process that started them."""

import os
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.processes]  # starts worker processes

PARENT_SCRIPT = """
import os, sys, time
import jax
from numpyro_diffprior.runtime.processes import imap_in_processes, run_chains_in_processes

def report_pid_and_sleep(out):
    path = os.path.join(out, f"pid_{os.getpid()}")
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(300)

def chain_fn(keys, num_chains, show_progress, out):
    report_pid_and_sleep(out)

if __name__ == "__main__":
    out, api = sys.argv[1:]
    if api == "imap":
        list(imap_in_processes(report_pid_and_sleep, [(out,), (out,)], num_workers=2))
    else:
        keys = jax.random.split(jax.random.key(0), 2)
        run_chains_in_processes(chain_fn, keys, num_workers=2, out=out)
"""


def _alive(pid: int) -> bool:
    """Running (not a zombie: a container's init may not reap an orphan at once)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("api", ["imap", "chains"])
def test_workers_exit_when_their_parent_is_killed(tmp_path, api):
    script = tmp_path / "parent.py"
    script.write_text(PARENT_SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path), api])
    try:
        deadline = time.monotonic() + 120
        while len(pid_files := list(tmp_path.glob("pid_*[0-9]"))) < 2:
            assert parent.poll() is None, "the parent script failed"
            assert time.monotonic() < deadline, "two workers did not start within 120 s"
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in pid_files]
        assert all(_alive(pid) for pid in workers)
    finally:
        parent.kill()  # SIGKILL: no cleanup runs in the parent
        parent.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if _alive(pid)]
    for pid in alive:
        os.kill(pid, 9)
    assert not alive, f"workers {alive} outlived their killed parent by 15 s"


def test_old_import_path_still_works_with_a_deprecation_warning():
    import importlib

    import numpyro_diffprior.runtime.processes as processes

    for name in ("chain_processes", "model_init"):
        sys.modules.pop(f"numpyro_diffprior.infer.{name}", None)
        with pytest.warns(DeprecationWarning, match="runtime"):
            old = importlib.import_module(f"numpyro_diffprior.infer.{name}")
        if name == "chain_processes":
            assert old.keys_to_numpy is processes.keys_to_numpy
