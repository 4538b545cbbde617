"""theta marginals of the shipped prior under several samplers (issue 3 sampler check).

Usage: python benchmarks/prior_samplers.py [heun32 churn64_S40 churn128_S80 em128 ...]
Writes benchmarks/results/prior_samplers.md: 512 joint draws per sampler (seed 0), theta mean
error in prior sigmas and std ratio, against the prior and against the prior restricted to the
emulator box (what the simulator draws and the network learns). docs/training.md quotes it.
"""

from __future__ import annotations

import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.checkpoints import load_pretrained
from numpyro_diffprior.cosmology.emulator import load_emulator
from numpyro_diffprior.cosmology.params import prior_mean_std
from numpyro_diffprior.diagnostics.prior_checks import _box_prior_moments
from numpyro_diffprior.diffusion.normalization import denormalize
from numpyro_diffprior.diffusion.samplers import edm_sampler, euler_maruyama_sampler

RESULTS = pathlib.Path(__file__).parent / "results" / "prior_samplers.md"
CONFIGS = {
    "heun32": ("edm", {"num_steps": 32}),
    "heun64": ("edm", {"num_steps": 64}),
    "churn64_S40": ("edm", {"num_steps": 64, "S_churn": 40.0}),
    "churn128_S80": ("edm", {"num_steps": 128, "S_churn": 80.0}),
    "em128": ("em", {"num_steps": 128}),
}


def main(names):
    ckpt = load_pretrained("lsst-y10-coarse")
    preset, denoise, dim = ckpt.preset, ckpt.denoise_fn(), ckpt.dim
    mean, std = (np.asarray(a) for a in prior_mean_std(preset.param_names))
    bounds = jnp.asarray(load_emulator(preset).bounds)
    box_mean, box_std = (np.asarray(a) for a in _box_prior_moments(preset.param_names, bounds))
    lines = [
        "# theta marginals of the shipped prior by sampler (512 draws, seed 0)",
        "",
        "| sampler | mean error (prior sigma) | vs box prior | std ratio | vs box prior | s |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        kind, kwargs = CONFIGS[name]
        sampler = euler_maruyama_sampler if kind == "em" else edm_sampler
        draw = jax.jit(lambda k, s=sampler, kw=kwargs: s(k, denoise, 128, dim, **kw))
        t0 = time.time()
        x = jnp.concatenate([draw(jax.random.fold_in(jax.random.key(0), i)) for i in range(4)])
        theta = np.asarray(denormalize(ckpt.normalizer, x, preset.map_shape)[0])
        m, s = theta.mean(0), theta.std(0)
        row = (
            f"| {name} | {np.round((m - mean) / std, 3)} | {np.round((m - box_mean) / std, 3)} "
            f"| {np.round(s / std, 3)} | {np.round(s / box_std, 3)} | {time.time() - t0:.0f} |"
        )
        print(row, flush=True)
        lines.append(row)
    lines.append("")
    lines.append(f"Parameters: {list(preset.param_names)}.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or ["heun32", "churn64_S40", "churn128_S80", "em128"])
