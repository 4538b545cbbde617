"""Where does the diffusion posterior's theta go wrong: the prior or the sampler? (issue 5)

Usage: python benchmarks/theta_given_kappa.py [RESULTS_DIR]   (default: results/, from `make demo`)

Because the shear likelihood sees kappa only, p(theta | kappa, y) = p(theta | kappa): redrawing
theta ~ p_model(theta | kappa) for each posterior map (`sample_theta_given_kappa`, replacement
conditioning) must give back the theta posterior if the learned prior's conditional is right.
Done for the NUTS maps (the exact posterior of the explicit model) and for the diffusion
sampler's maps; also reports the maps' amplitude against NUTS (pixel variance per bin).
Writes benchmarks/results/theta_given_kappa.md (64 maps x 8 theta draws each, seed 0).
"""

from __future__ import annotations

import pathlib
import sys
import time

import arviz as az
import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.checkpoints import load_pretrained
from numpyro_diffprior.diffusion.normalization import denormalize, normalize
from numpyro_diffprior.diffusion.samplers import sample_theta_given_kappa

RESULTS = pathlib.Path(__file__).parent / "results" / "theta_given_kappa.md"
NUM_MAPS, DRAWS_PER_MAP = 64, 8


def _pixel_variance(kappa):
    centred = kappa - kappa.mean(axis=(-1, -2), keepdims=True)
    return (centred**2).mean(axis=(0, 2, 3))


def main(results_dir="results"):
    ckpt = load_pretrained("lsst-y10-coarse")
    denoise, n_params, shape = ckpt.denoise_fn(), ckpt.preset.n_params, ckpt.preset.map_shape
    names = list(ckpt.preset.param_names)
    posteriors = {}
    for method in ("nuts", "diffusion"):
        idata = az.from_netcdf(pathlib.Path(results_dir) / f"idata_{method}.nc")
        posteriors[method] = (
            idata.posterior["theta"].values.reshape(-1, n_params),
            idata.posterior["kappa"].values.reshape(-1, *shape),
        )
    nuts_var = _pixel_variance(posteriors["nuts"][1])
    redraw = jax.jit(
        lambda key, x: sample_theta_given_kappa(key, denoise, x, n_params, num_steps=32)
    )
    rows = []
    for method, (theta, kappa) in posteriors.items():
        idx = np.random.default_rng(0).choice(len(kappa), NUM_MAPS, replace=False)
        x = normalize(ckpt.normalizer, jnp.asarray(theta[idx]), jnp.asarray(kappa[idx]))
        t0 = time.perf_counter()
        x = redraw(jax.random.key(0), jnp.repeat(x, DRAWS_PER_MAP, axis=0))
        redrawn, _ = denormalize(ckpt.normalizer, x, shape)
        redrawn = np.asarray(redrawn)
        wall = time.perf_counter() - t0
        amp = _pixel_variance(kappa) / nuts_var
        for j, name in enumerate(names):
            rows.append(
                f"| {method} | {name} | {theta[:, j].mean():.4f} ± {theta[:, j].std():.4f} | "
                f"{redrawn[:, j].mean():.4f} ± {redrawn[:, j].std():.4f} | "
                f"{' '.join(f'{a:.2f}' for a in amp)} | {wall:.0f} |"
            )
        print(rows[-2], rows[-1], sep="\n", flush=True)
    RESULTS.write_text(
        "# theta | kappa of the shipped prior on posterior maps (benchmarks/theta_given_kappa.py)"
        f"\n\n{NUM_MAPS} posterior maps of each method from `{results_dir}`, {DRAWS_PER_MAP} "
        "draws theta ~ p_model(theta | kappa) per map (replacement, 32 Heun steps, seed 0).\n\n"
        "| maps from | param | sampler's theta | theta ~ p_model(theta given its maps) | "
        "map pixel variance / NUTS, per bin | s |\n|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(*sys.argv[1:])
