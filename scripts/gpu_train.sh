#!/usr/bin/env bash
# Device-machine wrapper used once to train the shipped model on a lent GPU (not needed by users;
# the documented command in docs/training.md reproduces the model on any machine).
# Usage (GPU machine, repo root, wheels in .whl/): bash scripts/gpu_train.sh TRAIN_SECONDS BATCH
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
OUTDIR=${OUT:-/tmp/out}
BUDGET=${1:-390}; BATCH=${2:-128}; shift 2 || true
EXTRA="$*"
nvidia-smi -L; python3 -c "import jax; print(jax.__version__, jax.devices())"
# 1) throughput probe
python3 -m numpyro_diffprior.cli train --preset lsst-y10-coarse --steps 500 --batch-size "$BATCH" \
  --seed 0 --out /tmp/probe --log-every 100 --heldout 16 --no-progress $EXTRA > "$OUTDIR/probe.log" 2>&1
STEPS=$(python3 - "$BUDGET" <<'PY'
import json, sys
rows = [json.loads(l) for l in open("/tmp/probe/metrics.jsonl")]
a, b = rows[0], rows[-1]
rate = (b["step"] - a["step"]) / (b["wall_s"] - a["wall_s"])
print(int(rate * float(sys.argv[1]) // 1000 * 1000))
PY
)
echo "probe: steps for budget = $STEPS" | tee "$OUTDIR/train.log"
start=$(date +%s)
timeout $(( BUDGET + 150 )) python3 -m numpyro_diffprior.cli train --preset lsst-y10-coarse \
  --steps "$STEPS" --batch-size "$BATCH" --seed 0 --out /tmp/run --checkpoint-every 5000 \
  --log-every 250 --no-progress $EXTRA 2>&1 | tee -a "$OUTDIR/train.log"
echo "wall_s=$(( $(date +%s) - start ))" | tee -a "$OUTDIR/train.log"
mkdir -p "$OUTDIR/ckpt"
cp /tmp/run/checkpoint/* "$OUTDIR/ckpt/" 2>/dev/null
cp /tmp/run/metrics.jsonl /tmp/run/heldout_loss.md "$OUTDIR/" 2>/dev/null
ls -la "$OUTDIR" "$OUTDIR/ckpt"
