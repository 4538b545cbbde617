"""Prior-quality report of an exported model (device-run helper of scripts/gpu_train.sh).

Usage: python scripts/gpu_eval_prior.py MODEL_DIR OUT.md [NUM_DRAWS] [NUM_STEPS]
Writes the `format_prior_report` tables and the raw numbers (JSON) to OUT.md.
"""

import sys
import time

from numpyro_diffprior.checkpoints import load_checkpoint
from numpyro_diffprior.diagnostics.prior_checks import evaluate_prior, format_prior_report
from numpyro_diffprior.strict_json import dumps_json

model, out = sys.argv[1], sys.argv[2]
num = int(sys.argv[3]) if len(sys.argv) > 3 else 512
num_steps = int(sys.argv[4]) if len(sys.argv) > 4 else 64
t0 = time.perf_counter()
result = evaluate_prior(load_checkpoint(model), num=num, seed=0, num_steps=num_steps, S_churn=40)
wall = time.perf_counter() - t0
with open(out, "w") as f:
    f.write(format_prior_report(result))
    f.write(f"\n\nsampler: {num_steps} steps, S_churn 40; wall_s={wall:.1f}\n\n```json\n")
    f.write(dumps_json(result))
    f.write("\n```\n")
print(f"{model}: prior report in {out} ({wall:.0f} s)")
