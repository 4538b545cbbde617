"""Where the amortised posterior's theta goes wrong: its maps, its theta, or its solver?

Usage: python benchmarks/amortized_diagnosis.py [--cases fiducial far-high ...]
       [--solver-cases fiducial far-high] [--restart-cases fiducial far-high]
       [--skip-theta-given-kappa] [--skip-samplers] [--skip-restarts] [--amortized-model DIR]
       [--out benchmarks/results/amortized_diagnosis.md]

Reads the runs cached by `benchmarks/posterior_vs_nuts.py --methods amortized-default` (NUTS and
the shipped conditional model's draws on the same simulated observations) and reports, in
units of NUTS's posterior sd:

- theta | kappa: the shear sees kappa only, so p(theta | kappa, y) = p(theta | kappa). Theta is
  redrawn from the shipped joint prior's conditional (`sample_theta_given_kappa`, replacement,
  32 Heun steps) for 32 maps x 4 draws of each method. If the amortised maps were right, their
  redrawn theta would land where NUTS's maps' does.
- solvers: the conditional model's draws (128, one batch) with the default DPM-Solver++(2M)
  (20 steps equal in log sigma), with Heun's stochastic sampler (Karras et al. 2022, Alg. 2,
  32 steps, S_churn 40) and with the reverse SDE (Euler-Maruyama, 256 steps): theta, the map
  spread and the maps' auto power against NUTS's.
- restarts: where along the reverse diffusion the error arises. The default solver is started
  at sigma_start from NUTS's posterior draws plus sigma_start noise (200 draws), which are
  exact draws of p_sigma(x | y); an exact denoiser would bring them back to NUTS's posterior
  from any sigma_start. The first sigma_start at which theta moves away locates the noise
  levels where the conditional model is wrong.
- guidance: classifier-free guidance (Ho & Salimans 2022), D_w = D_u + w (D_c - D_u) with D_u
  the same model given no data, sharpens what the model takes from the observation by w > 1:
  the default solver from sigma_max with w in GUIDANCE_SCALES (200 draws).

--amortized-model DIR checks another conditional model (a checkpoint or an exported model)
on the same cached NUTS runs (the theta | kappa section reads the cached shipped-model draws).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import posterior_vs_nuts as pvn  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "amortized_diagnosis.md"
NUM_MAPS, DRAWS_PER_MAP, NUM_DRAWS = 32, 4, 128
RESTART_SIGMAS, RESTART_DRAWS = (0.3, 1.0, 3.0, 10.0, 80.0), 200  # the last: the sampler's start
GUIDANCE_SCALES = (1.0, 1.5, 2.0)


def _solvers():
    from functools import partial

    from numpyro_diffprior.diffusion import samplers

    return {
        "2M, 20 log-uniform steps (default)": partial(
            samplers.dpmpp_2m_sampler, num_steps=20, rho=float("inf")
        ),
        "Heun, 32 steps, S_churn 40": partial(samplers.edm_sampler, num_steps=32, S_churn=40.0),
        "reverse SDE, 256 steps": partial(samplers.euler_maruyama_sampler, num_steps=256),
    }


def _theta_stats(theta, ref):
    mu, sd = ref.mean(0), ref.std(0)
    return (theta.mean(0) - mu) / sd, theta.std(0) / sd


def _fmt(values, fmt="{:+.2f}"):
    return ", ".join(fmt.format(v) for v in values)


def _context(obs, prior, preset, num):
    """The observation's encoding, repeated for `num` draws."""
    from numpyro_diffprior.amortized import ShearObservation
    from numpyro_diffprior.simulator.shear import noise_std_map

    noise = noise_std_map(preset, obs["mask"], obs["noise_std"])
    context = prior.encode(ShearObservation(jnp.asarray(obs["shear"]), jnp.asarray(noise)))
    return jax.tree_util.tree_map(lambda c: jnp.broadcast_to(c, (num,) + c.shape), context)


class Reference(NamedTuple):
    """NUTS's posterior on one observation: draws and the mean auto power per bin (C,)."""

    theta: np.ndarray
    kappa: np.ndarray
    power: np.ndarray


def _power(kappa, preset):
    return pvn.auto_power(kappa, preset).mean(0).sum(-1)


def _row(lead, x, prior, nuts, preset, *, pixel=True, tail=()):
    """A table row of normalised draws x against NUTS's (a `Reference`): the `lead` cells,
    Δmean, σ ratio, [median pixel-σ ratio,] auto power / NUTS's per bin, the `tail` cells."""
    theta, kappa = (np.asarray(a) for a in prior.unpack(prior.from_normalized(x)))
    d, r = _theta_stats(theta, nuts.theta)
    power = _power(kappa, preset) / nuts.power
    pix = [f"{np.median(kappa.std(0) / nuts.kappa.std(0)):.2f}"] if pixel else []
    cells = [*lead, _fmt(d), _fmt(r, "{:.2f}"), *pix, _fmt(power, "{:.2f}"), *tail]
    row = "| " + " | ".join(cells) + " |"
    print(row, flush=True)
    return row


def theta_given_kappa_rows(case, posteriors, joint):
    from numpyro_diffprior.diffusion.samplers import sample_theta_given_kappa

    P = joint.n_params
    redraw = jax.jit(
        lambda key, p, x: sample_theta_given_kappa(key, p.denoise_normalized, x, P, num_steps=32)
    )
    nuts_theta = posteriors["nuts"][0]
    rows = []
    for method, (theta, kappa) in posteriors.items():
        idx = np.random.default_rng(0).choice(len(theta), NUM_MAPS, replace=False)
        x = jnp.concatenate([theta[idx], kappa[idx].reshape(NUM_MAPS, -1)], axis=1)
        x = jnp.repeat(joint.to_normalized(jnp.asarray(x)), DRAWS_PER_MAP, axis=0)
        redrawn = np.asarray(joint.from_normalized(redraw(jax.random.key(1), joint, x)))[:, :P]
        own_d, own_r = _theta_stats(theta, nuts_theta)
        d, r = _theta_stats(redrawn, nuts_theta)
        rows.append(
            f"| {case} | {method} | {_fmt(own_d)} | {_fmt(own_r, '{:.2f}')} | {_fmt(d)} | "
            f"{_fmt(r, '{:.2f}')} |"
        )
        print(rows[-1], flush=True)
    return rows


def solver_rows(case, obs, nuts, prior, preset):
    ctx = _context(obs, prior, preset, NUM_DRAWS)
    rows = []
    for name, solver in _solvers().items():
        t0 = time.perf_counter()
        # the model and the observation are arguments, not constants XLA would fold
        run = jax.jit(
            lambda key, p, c, solver=solver: solver(
                key, lambda x, s: p.conditional_denoise_normalized(x, s, c), NUM_DRAWS, p.dim
            )
        )
        x = jax.block_until_ready(run(jax.random.key(7), prior, ctx))
        wall = time.perf_counter() - t0
        rows.append(_row((case, name), x, prior, nuts, preset, tail=(f"{wall:.0f}",)))
    return rows


def restart_rows(case, obs, nuts, prior, preset):
    from numpyro_diffprior.diffusion.samplers import dpmpp_2m_sampler
    from numpyro_diffprior.infer.algorithms import AMORTIZED_DEFAULTS as default

    n = RESTART_DRAWS
    ctx = _context(obs, prior, preset, n)
    idx = np.random.default_rng(0).choice(len(nuts.theta), n, replace=False)
    x_post = prior.to_normalized(prior.pack(jnp.asarray(nuts.theta[idx]),
                                            jnp.asarray(nuts.kappa[idx])))  # fmt: skip
    sigma_min, sigma_max = default["sigma_min"], default["sigma_max"]
    rows = []
    for sigma_start in RESTART_SIGMAS:
        # the default's steps per decade of sigma (its steps are equal in log sigma)
        decades = np.log(sigma_start / sigma_min) / np.log(sigma_max / sigma_min)
        steps = max(4, round(default["num_steps"] * decades))
        x_init = x_post + sigma_start * jax.random.normal(jax.random.key(1), x_post.shape)
        x = dpmpp_2m_sampler(
            jax.random.key(2), lambda x, s: prior.conditional_denoise_normalized(x, s, ctx), n,
            prior.dim, num_steps=steps, sigma_min=sigma_min, sigma_max=sigma_start,
            rho=default["rho"], x_init=x_init,
        )  # fmt: skip
        lead = (case, f"{sigma_start:g}", str(steps))
        rows.append(_row(lead, x, prior, nuts, preset, pixel=False))
    return rows


def guidance_rows(case, obs, nuts, prior, preset):
    from numpyro_diffprior.diffusion.samplers import dpmpp_2m_sampler
    from numpyro_diffprior.infer.algorithms import AMORTIZED_DEFAULTS as default

    n = RESTART_DRAWS
    ctx = _context(obs, prior, preset, n)

    @jax.jit
    def run(p, c, w):
        def denoise(x, s):
            d_u = p.conditional.denoise_prior(p.params, x, s)
            return d_u + w * (p.conditional_denoise_normalized(x, s, c) - d_u)

        settings = {k: default[k] for k in ("num_steps", "sigma_min", "sigma_max", "rho")}
        return dpmpp_2m_sampler(jax.random.key(5), denoise, n, p.dim, **settings)

    rows = []
    for w in GUIDANCE_SCALES:
        rows.append(_row((case, f"{w:g}"), run(prior, ctx, w), prior, nuts, preset))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(pvn.CASES), choices=list(pvn.CASES))
    parser.add_argument("--solver-cases", nargs="+", default=["fiducial", "far-high"])
    parser.add_argument("--restart-cases", nargs="+", default=["fiducial", "far-high"])
    parser.add_argument("--guidance-cases", nargs="+", default=["fiducial", "far-high"])
    parser.add_argument("--amortized-model", default="lsst-y10-coarse")
    parser.add_argument("--cache", default=os.path.expanduser("~/runs/posterior_vs_nuts"))
    parser.add_argument("--seed", type=int, default=0, help="posterior_vs_nuts.py's --seed")
    parser.add_argument("--skip-theta-given-kappa", action="store_true")
    parser.add_argument("--skip-samplers", action="store_true")
    parser.add_argument("--skip-restarts", action="store_true")
    parser.add_argument("--skip-guidance", action="store_true")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import arviz as az

    from numpyro_diffprior.amortized.prior import load_amortized_prior
    from numpyro_diffprior.diagnostics.compare import posterior_draws
    from numpyro_diffprior.presets import get_preset
    from numpyro_diffprior.prior import DiffusionPrior

    joint = DiffusionPrior.from_pretrained("lsst-y10-coarse")
    amortized = load_amortized_prior(args.amortized_model)
    preset = get_preset(amortized.preset)
    tgk, solver, restart, guidance = [], [], [], []
    for case in args.cases:
        posteriors = {}
        for method in ("nuts", "amortized-default"):
            path = pathlib.Path(args.cache) / f"{case}_{method}.nc"
            if not path.exists():
                raise SystemExit(
                    f"{path} is missing: run `python benchmarks/posterior_vs_nuts.py --cases "
                    f"{case} --methods amortized-default` first"
                )
            posteriors[method] = tuple(np.asarray(a) for a in posterior_draws(az.from_netcdf(path)))
        nuts = Reference(*posteriors["nuts"], _power(posteriors["nuts"][1], preset))
        if not args.skip_theta_given_kappa:
            tgk += theta_given_kappa_rows(case, posteriors, joint)
        obs = pvn.make_observation(case, preset, args.seed)  # one simulation: cheap
        if not args.skip_samplers and case in args.solver_cases:
            solver += solver_rows(case, obs, nuts, amortized, preset)
        if not args.skip_restarts and case in args.restart_cases:
            restart += restart_rows(case, obs, nuts, amortized, preset)
        if not args.skip_guidance and case in args.guidance_cases:
            guidance += guidance_rows(case, obs, nuts, amortized, preset)
    text = (
        "# The amortised posterior's theta: maps, theta or solver? "
        "(benchmarks/amortized_diagnosis.py)\n\nAll numbers against NUTS on the observations "
        "of posterior_vs_nuts.py: Δmean in NUTS posterior sd, σ ratio = sd / NUTS's sd.\n"
    )
    if tgk:
        text += (
            f"\n## theta | kappa by the shipped joint prior ({NUM_MAPS} maps x {DRAWS_PER_MAP} "
            "draws, replacement, 32 Heun steps, seed 1)\n\n| observation | maps from | method's "
            "Δmean | method's σ ratio | redrawn Δmean | redrawn σ ratio |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(tgk) + "\n"
        )
    if solver:
        text += (
            f"\n## Solvers with the shipped conditional model ({NUM_DRAWS} draws, seed 7)\n\n"
            "| observation | solver | Δmean | σ ratio | median pixel-σ ratio | auto power / NUTS, "
            "bins 1-5 | s incl. compilation |\n|---|---|---|---|---|---|---|\n"
            + "\n".join(solver)
            + "\n"
        )
    if restart:
        text += (
            f"\n## Restarts: the default solver from NUTS's draws + sigma_start noise "
            f"({RESTART_DRAWS} draws, model {args.amortized_model})\n\n"
            "| observation | sigma_start | steps | Δmean | σ ratio | auto power / NUTS, bins 1-5 "
            "|\n|---|---|---|---|---|---|\n" + "\n".join(restart) + "\n"
        )
    if guidance:
        text += (
            f"\n## Classifier-free guidance, D_u + w (D_c - D_u) ({RESTART_DRAWS} draws, default "
            f"solver, seed 5, model {args.amortized_model})\n\n| observation | w | Δmean | σ ratio "
            "| median pixel-σ ratio | auto power / NUTS, bins 1-5 |\n|---|---|---|---|---|---|\n"
            + "\n".join(guidance)
            + "\n"
        )
    pathlib.Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
