"""How far do the posterior maps' amplitudes spread, against NUTS and against the truth? (issue 5)

Usage: python benchmarks/posterior_amplitude.py [--demo DIR] [--progress FILE] [--prior]
(defaults: results/ from `make demo`, and the progress file of the 200 x 16 calibration run,
benchmarks/results/calibration_diffusion_kappa_16draws/progress_200x16.npz; either part is
skipped when its input is missing; --prior adds the unconditional check, ~5 min on 2 cores).
Writes benchmarks/results/posterior_amplitude.md.

Two amplitude statistics per draw: S8 = sigma_8 sqrt(Omega_c / 0.3), the combination the shear
constrains, and each bin's pixel variance (mean-subtracted). On one observation their spread
over draws is compared with NUTS's (the exact posterior of the explicit model); over the
calibration's observations, the draws are compared with the truth by z-scores, (truth − mean
of draws) / sd of draws, whose spread is about 1.11 for a calibrated posterior with 16 draws
(sqrt(1 + 1/16) times a Student t with 15 degrees of freedom) and whose mean is 0.
With --prior, the shipped prior's own reverse process (no data) is checked the same way: each
drawn map's pixel variance over that of simulator maps at the drawn theta (4 per draw).
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np

from numpyro_diffprior.presets import get_preset

RESULTS = pathlib.Path(__file__).parent / "results" / "posterior_amplitude.md"
PROGRESS = (
    pathlib.Path(__file__).parent
    / "results"
    / "calibration_diffusion_kappa_16draws"
    / "progress_200x16.npz"
)
METHODS = ("nuts", "diffusion", "langevin")


def s8(theta):
    """S8 = sigma_8 (Omega_c / 0.3)^0.5 for theta (..., 2) = (Omega_c, sigma_8)."""
    return theta[..., 1] * np.sqrt(theta[..., 0] / 0.3)


def pixel_variance(kappa):
    """Per map and bin: the variance of the pixels, (..., C, N, N) -> (..., C)."""
    return kappa.var(axis=(-1, -2))


def demo_table(results_dir) -> list[str]:
    import arviz as az

    rows, ref = [], None
    for method in METHODS:
        path = pathlib.Path(results_dir) / f"idata_{method}.nc"
        if not path.exists():
            continue
        post = az.from_netcdf(path).posterior
        theta = post["theta"].values.reshape(-1, post["theta"].shape[-1])
        kappa = post["kappa"].values.reshape((-1,) + post["kappa"].shape[2:])
        amp, var = s8(theta), pixel_variance(kappa)
        stats = (amp.std(ddof=1), var.mean(0), var.std(0, ddof=1) / var.mean(0))
        if method == "nuts":
            ref = stats
        ratio = "" if ref is None else f"{stats[0] / ref[0]:.2f}"
        cv = ", ".join(f"{c:.3f}" for c in stats[2])
        mean = "" if ref is None else ", ".join(f"{m:.2f}" for m in stats[1] / ref[1])
        rows.append(
            f"| {method} | {len(theta)} | {amp.mean():.3f} ± {stats[0]:.3f} | {ratio} | "
            f"{mean} | {cv} |"
        )
    if not rows:
        return []
    return [
        f"## One observation: the demo ({results_dir})",
        "",
        "| method | draws | S8 | S8 sd / NUTS's | mean pixel variance / NUTS's (bins 1–5) | "
        "pixel-variance sd / mean over draws (bins 1–5) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
    ]


def calibration_table(progress_file) -> list[str]:
    if not pathlib.Path(progress_file).exists():
        return []
    with np.load(progress_file) as data:
        theta, theta_true = data["theta_samples"], data["theta_true"]
        var = pixel_variance(data["kappa_samples"].astype(np.float64))
        var_true = pixel_variance(data["kappa_true"].astype(np.float64))
    num_obs, num_draws = theta.shape[:2]

    def z(truth, draws):
        return (truth - draws.mean(1)) / draws.std(1, ddof=1)

    def line(name, zs, extra=""):
        se = zs.std(0, ddof=1) / np.sqrt(len(zs))
        return f"| {name} | {zs.mean():+.2f} ± {se:.2f} | {zs.std(ddof=1):.2f} | {extra} |"

    rows = [line("S8", z(s8(theta_true), s8(theta)))]
    ratio = np.median(var.mean(1) / var_true, axis=0)
    for b in range(var.shape[-1]):
        rows.append(
            line(f"pixel variance, bin {b + 1}", z(var_true[:, b], var[:, :, b]), f"{ratio[b]:.3f}")
        )
    return [
        f"## Over the calibration run ({num_obs} observations × {num_draws} draws)",
        "",
        "| statistic | z mean (± s.e.) | z spread | median of mean over draws / truth |",
        "|---|---|---|---|",
        *rows,
        "",
        f"A calibrated posterior: z mean 0, z spread {_calibrated_spread(num_draws):.2f}.",
        "",
    ]


def _calibrated_spread(m):
    """sd of (truth − mean) / sd over m exact posterior draws: sqrt(1 + 1/m) times a Student t
    with m − 1 degrees of freedom."""
    return float(np.sqrt((1 + 1 / m) * (m - 1) / (m - 3)))


# (label, reverse SDE steps, sigma_max, unguided steps from sigma 80 down to sigma_max)
PRIOR_SAMPLERS = (
    ("the posterior sampler's ladder: SDE, 64 steps from sigma_max 5", 64, 5.0, 0),
    ("SDE, 64 steps from sigma_max 80", 64, 80.0, 0),
    ("16 SDE steps from 80 to 5, then the 64 steps from 5", 64, 5.0, 16),
)


def prior_table(num=96, per_theta=4, seed=1) -> list[str]:
    import jax
    import jax.numpy as jnp

    from numpyro_diffprior.cosmology.emulator import load_emulator
    from numpyro_diffprior.diffusion.samplers import euler_maruyama_sampler
    from numpyro_diffprior.infer.reverse import guided_reverse_diffusion
    from numpyro_diffprior.prior import DiffusionPrior
    from numpyro_diffprior.simulator.lognormal import simulate_kappa

    prior = DiffusionPrior.from_pretrained("lsst-y10-coarse")
    preset = get_preset(prior.preset)
    emulator, map_shape = load_emulator(preset), preset.map_shape
    # simulate_kappa clips theta to the emulator's box, as the training maps were drawn
    simulate = jax.jit(jax.vmap(lambda t, z: simulate_kappa(t, z, emulator, preset)))
    zero = lambda x, sigma: jnp.zeros_like(x)
    rows = []
    for label, steps, sigma_max, prior_steps in PRIOR_SAMPLERS:

        def draw(key, steps=steps, sigma_max=sigma_max, prior_steps=prior_steps):
            x_init = None
            if prior_steps:
                x_init = euler_maruyama_sampler(
                    jax.random.fold_in(key, 1), prior.denoise_normalized, num, prior.dim,
                    num_steps=prior_steps, sigma_min=sigma_max, sigma_max=80.0,
                    denoise_last=False,
                )  # fmt: skip
            return guided_reverse_diffusion(
                key, prior.denoise_normalized, zero, num, prior.dim, num_steps=steps,
                sigma_max=sigma_max, sampler="sde", x_init=x_init,
            )  # fmt: skip

        x = np.asarray(prior.from_normalized(jax.jit(draw)(jax.random.key(seed))))
        theta, kappa = (np.asarray(a) for a in prior.unpack(x))
        z = jax.random.normal(jax.random.key(seed + 1), (num * per_theta,) + map_shape)
        sims = simulate(jnp.asarray(np.repeat(theta, per_theta, axis=0)), z)
        sim_var = pixel_variance(np.asarray(sims).reshape((num, per_theta) + map_shape)).mean(1)
        ratio = pixel_variance(kappa) / sim_var
        cells = ", ".join(
            f"{m:.3f} ± {e:.3f}"
            for m, e in zip(ratio.mean(0), ratio.std(0) / np.sqrt(num), strict=True)
        )
        rows.append(f"| {label} | {cells} |")
    return [
        f"## The prior alone ({num} draws of the shipped model, seed {seed})",
        "",
        "| reverse process | pixel variance / simulator's at the drawn theta (bins 1–5, ± s.e.) |",
        "|---|---|",
        *rows,
        "",
    ]


def main(results_dir="results", progress_file=PROGRESS, prior=False):
    intro = __doc__.split("\n\n")[1]
    lines = ["# Posterior amplitudes: S8 and the maps' pixel variance", "", intro]
    body = demo_table(results_dir) + calibration_table(progress_file)
    if prior:
        body += prior_table()
    if not body:
        raise SystemExit(f"neither {results_dir}/idata_*.nc nor {progress_file} exists")
    RESULTS.write_text("\n".join(lines + [""] + body))
    print(RESULTS.read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", default="results", help="a results directory of the demo")
    parser.add_argument("--progress", default=str(PROGRESS), help="a calibration progress file")
    parser.add_argument("--prior", action="store_true", help="also check the prior alone")
    args = parser.parse_args()
    main(args.demo, args.progress, args.prior)
