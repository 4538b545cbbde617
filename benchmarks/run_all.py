"""Run every benchmark in turn; each writes its table to benchmarks/results/<name>.md."""

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
SCRIPTS = [
    "bench_cosmology.py",
    "bench_simulator.py",
    "bench_training.py",
    "bench_sampling.py",
    "bench_nuts.py",
    "bench_cost.py",
]

if __name__ == "__main__":
    failed = []
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        if subprocess.call([sys.executable, str(HERE / script)]) != 0:
            failed.append(script)
    if failed:
        sys.exit(f"failed: {failed}")
