#!/usr/bin/env bash
# Device-machine wrapper that trained the shipped models on one lent GPU in one call (not
# needed by users: docs/training.md and docs/sampling.md give each model's command, which runs
# on any machine). Up to three trainings share the GPU for TRAIN_S seconds each
# (--max-seconds), then each model is exported and checked. Everything lands in $OUT (at most 8 files).
# Usage (repo root, wheels in .whl/): bash scripts/gpu_train.sh [TRAIN_S] [EVAL_S] [DRAWS] [CAL_OBS]
# A CPU dry run: SMALL=1 bash scripts/gpu_train.sh 20 60 8 4
# Knobs (environment): COARSE_INIT=DIR starts the coarse prior from that model (else width 32
# from scratch); AMORTIZED_INIT=DIR|pretrained the conditional model; LR_C / LR_A (peak rates);
# LR_RATIO (--final-lr-ratio, default 1) with STEPS_C / STEPS_A / STEPS_J (--steps, the cosine
# horizon: size them to what TRAIN_S reaches); SKIP_AMORTIZED=1, SKIP_JADE=1 leave a run out.
set -uo pipefail
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.28
OUTDIR=${OUT:-/tmp/out}; W=${WORK:-/tmp/gpu_train}; mkdir -p "$OUTDIR" "$W"
TRAIN_S=${1:-330}; EVAL_S=${2:-130}; DRAWS=${3:-512}; CAL_OBS=${4:-500}
START=$(date +%s); END_S=${END_S:-550}  # the checks stop END_S seconds after the start
PY=${PYTHON:-python3}; CLI="$PY -m numpyro_diffprior.cli"
LOG="$OUTDIR/log.txt"
say() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }
say "$(nvidia-smi -L 2>/dev/null | head -1)"
$PY -c "import jax, haiku; print('jax', jax.__version__, jax.devices())" 2>&1 | tee -a "$LOG" || exit 1
if [ -n "${SMALL:-}" ]; then  # CPU dry run: tiny batches, the same code paths
  BC=4; BA=4; BJ=2; JADE_MULT=1,2; HC=4; HJ=2
else
  BC=256; BA=256; BJ=64; JADE_MULT=1,2,2,4,4; HC=256; HJ=128
fi
COMMON="--final-lr-ratio ${LR_RATIO:-1} --max-seconds $TRAIN_S --theta-weight 2 --no-progress"
C_NET="--width 32"; [ -n "${COARSE_INIT:-}" ] && C_NET="--init-from $COARSE_INIT"
say "train: ${TRAIN_S}s each (coarse: $C_NET; amortised from ${AMORTIZED_INIT:-pretrained})"
$CLI train --preset lsst-y10-coarse $C_NET --steps ${STEPS_C:-1000000} --batch-size $BC --lr ${LR_C:-1e-3} --warmup 300 \
  --ema-halflife 800 --seed 10 --checkpoint-every 1000 --log-every 100 --heldout $HC \
  $COMMON --out "$W/coarse" > "$W/coarse.log" 2>&1 &
[ -z "${SKIP_AMORTIZED:-}" ] && $CLI train --conditional --preset lsst-y10-coarse --init-from ${AMORTIZED_INIT:-pretrained} \
  --steps ${STEPS_A:-1000000} --batch-size $BA \
  --lr ${LR_A:-5e-4} --warmup 100 --ema-halflife 800 --seed 11 --checkpoint-every 1000 --log-every 100 \
  $COMMON --out "$W/amortized" > "$W/amortized.log" 2>&1 &
[ -z "${SKIP_JADE:-}" ] && $CLI train --preset lsst-y10-jade --steps ${STEPS_J:-1000000} --channel-mult $JADE_MULT --batch-size $BJ --lr 1e-3 \
  --warmup 300 --ema-halflife 800 --seed 12 --checkpoint-every 1000 --log-every 100 \
  --heldout $HJ $COMMON --out "$W/jade" > "$W/jade.log" 2>&1 &
wait
RUNS="coarse"; [ -z "${SKIP_AMORTIZED:-}" ] && RUNS="$RUNS amortized"
[ -z "${SKIP_JADE:-}" ] && RUNS="$RUNS jade"
for run in $RUNS; do
  say "$run: $(tail -n 3 "$W/$run.log" | tr '\n' ' ')"
  $CLI export --checkpoint "$W/$run/checkpoint" --out "$W/$run/model" \
    --note "scripts/gpu_train.sh: ${TRAIN_S}s on one GPU, fresh simulations" >> "$LOG" 2>&1
  tar -czf "$OUTDIR/$run.tgz" -C "$W" "$run.log" "$run/model" "$run/metrics.jsonl" \
    $(cd "$W" && ls "$run/heldout_loss.md" 2>/dev/null) >> "$LOG" 2>&1
done
LEFT=$(( START + END_S - $(date +%s) - 10 )); [ "$LEFT" -lt "$EVAL_S" ] && EVAL_S=$LEFT
say "checks: ${EVAL_S}s"
timeout "$EVAL_S" $PY scripts/gpu_eval_prior.py "$W/coarse/model" "$OUTDIR/eval_coarse.md" \
  "$DRAWS" > "$W/eval_coarse.log" 2>&1 &
[ -z "${SKIP_JADE:-}" ] && timeout "$EVAL_S" $PY scripts/gpu_eval_prior.py "$W/jade/model" "$OUTDIR/eval_jade.md" \
  "$DRAWS" > "$W/eval_jade.log" 2>&1 &
[ -z "${SKIP_AMORTIZED:-}" ] && timeout "$EVAL_S" $CLI calibrate --method amortized --model "$W/amortized/model" \
  --num-obs "$CAL_OBS" --num-draws 100 --obs-per-batch 25 --seed 0 --no-progress \
  --out "$W/cal_amortized" > "$W/cal_amortized.log" 2>&1 &
wait
tail -n 5 "$W"/eval_*.log "$W/cal_amortized.log" >> "$LOG" 2>&1
# the report, not the draws (progress.npz: about 0.9 GB at 500 x 100)
[ -z "${SKIP_AMORTIZED:-}" ] && tar -czf "$OUTDIR/cal_amortized.tgz" -C "$W" \
  --exclude progress.npz cal_amortized cal_amortized.log >> "$LOG" 2>&1
say "done"; ls -la "$OUTDIR" | tee -a "$LOG"
