"""Is the amortised posterior calibrated but less informative than NUTS's? Random observations.

Usage: python benchmarks/amortized_information.py [--num 24] [--seed 0] [--noise 1.0]
       [--amortized-model DIR] [--cache ~/runs/amortized_information]
       [--out benchmarks/results/amortized_information.md]

`--num` observations with theta drawn from the prior (noise `--noise` x the preset's pixel
noise, no mask), each sampled by NUTS (posterior_vs_nuts.py's settings) and by the amortised
sampler (library defaults, 200 draws); runs are cached under --cache (NUTS's shared, the
amortised ones per `--amortized-model`).

Why: theta - E_p[theta | y] is uncorrelated with every function of y, so for any posterior q,
averaging over observations from the prior,

    E[(theta - E_q[theta])^2] = E[Var_p(theta | y)] + E[(E_q[theta] - E_p[theta | y])^2].

If q's spread matches its error (calibrated in mean square, as TARP and MIRA check), the left
side is E[Var_q(theta)], hence

    E[Delta mean^2] = E[Var_q] - E[Var_p]:

a calibrated posterior wider than the exact one must have mean errors of exactly that size (the
exact posterior given a summary s(y) of the data is one such q). The report gives both sides per
parameter in units of NUTS's mean posterior variance, with a bootstrap interval of their
difference: about 0 means the mean errors are the price of the lost information; above 0, q is
also too narrow for its errors. Either way |Delta mean| <= 0.3 sd_NUTS on most observations
needs E[Delta mean^2] / E[Var_p] of about 0.1, i.e. a theta error (mean square, against the
truth) within about 1.1x the exact posterior's.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import posterior_vs_nuts as pvn  # noqa: E402

RESULTS = pathlib.Path(__file__).parent / "results" / "amortized_information.md"
METHOD = "amortized-default"


def observation(index, preset, seed, noise):
    from numpyro_diffprior.observations import simulate_observation

    key = jax.random.fold_in(jax.random.key(seed + 1000), index)
    return simulate_observation(key, preset, noise_std=np.asarray(preset.noise_std()) * noise)


def posteriors(index, obs, preset, amortized, cache, seed, amortized_model):
    """{method: theta draws (S, P)} of NUTS and the amortised sampler, cached
    (`posterior_vs_nuts.cached_run`; the amortised runs under a name per model)."""
    from numpyro_diffprior.diagnostics.compare import posterior_draws

    out = {}
    for i, method in enumerate(("nuts", METHOD)):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed + 1), index), i)
        idata = pvn.cached_run(
            cache, f"obs{index}", pvn.cache_name(method, amortized_model),
            lambda: pvn.run_method(method, obs, preset, None, amortized, key),
        )  # fmt: skip
        out[method] = np.asarray(posterior_draws(idata)[0])
    return out


def _sides(m_p, v_p, m_q, v_q):
    """Both sides of the identity, (P,) each, in units of NUTS's mean posterior variance."""
    excess = v_q.mean(0) / v_p.mean(0) - 1
    return excess, ((m_q - m_p) ** 2).mean(0) / v_p.mean(0)


def summary(rows, names, prior_var, num_boot=5000):
    """Markdown lines: both sides of the identity per parameter, from the per-observation rows
    of (NUTS mean, NUTS var, amortised mean, amortised var), each (P,), with a bootstrap
    (over observations, seed 0) 95 % interval of their difference."""
    m_p, v_p, m_q, v_q = (np.array([r[k] for r in rows]) for k in range(4))
    excess, sq = _sides(m_p, v_p, m_q, v_q)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(num_boot):
        idx = rng.integers(0, len(rows), len(rows))
        e, q = _sides(m_p[idx], v_p[idx], m_q[idx], v_q[idx])
        boot.append(q - e)
    low, high = np.percentile(np.array(boot), [2.5, 97.5], axis=0)
    z = (m_q - m_p) / np.sqrt(v_p)
    lines = [
        "| parameter | mean NUTS var / prior var | E[Var_q] / E[Var_NUTS] - 1 | "
        "E[Δmean²] / E[Var_NUTS] | difference (bootstrap 95 %) | rms Δmean / sd_NUTS | "
        "observations with |Δmean| <= 0.3 |",
        "|---|---|---|---|---|---|---|",
    ]
    for j, name in enumerate(names):
        lines.append(
            f"| {name} | {v_p[:, j].mean() / prior_var[j]:.3f} | {excess[j]:+.2f} | "
            f"{sq[j]:.2f} | {sq[j] - excess[j]:+.2f} ({low[j]:+.2f}, {high[j]:+.2f}) | "
            f"{np.sqrt(np.mean(z[:, j] ** 2)):.2f} | {np.sum(np.abs(z[:, j]) <= 0.3)} of "
            f"{len(z)} |"
        )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--amortized-model", default="lsst-y10-coarse")
    parser.add_argument("--cache", default=os.path.expanduser("~/runs/amortized_information"))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    from numpyro_diffprior.amortized.prior import load_amortized_prior
    from numpyro_diffprior.cosmology.params import prior_distribution
    from numpyro_diffprior.presets import get_preset

    amortized = load_amortized_prior(args.amortized_model)
    preset = get_preset(amortized.preset)
    cache = pathlib.Path(args.cache) / f"{preset.name}_seed{args.seed}_noise{args.noise:g}"
    cache.mkdir(parents=True, exist_ok=True)
    prior_var = np.array([
        np.asarray(prior_distribution(name).sample(jax.random.key(3), (200_000,))).var()
        for name in preset.param_names
    ])  # fmt: skip
    table, rows = [], []
    for index in range(args.num):
        obs = observation(index, preset, args.seed, args.noise)
        post = posteriors(index, obs, preset, amortized, cache, args.seed, args.amortized_model)
        p, q = post["nuts"], post[METHOD]
        rows.append((p.mean(0), p.var(0), q.mean(0), q.var(0)))
        d = (q.mean(0) - p.mean(0)) / p.std(0)
        truth = np.asarray(obs["theta_true"])
        table.append(
            f"| {index} | {pvn._f(truth, '{:.3f}')} | {pvn._f(p.mean(0), '{:.3f}')} | "
            f"{pvn._f(d)} | {pvn._f(q.std(0) / p.std(0), '{:.2f}')} |"
        )
        print(table[-1], flush=True)
    names, nuts = preset.param_names, pvn.NUTS
    text = "\n".join(
        [
            "# Amortised posterior against NUTS on observations drawn from the prior "
            "(benchmarks/amortized_information.py)",
            "",
            f"{args.num} observations, theta from the prior, noise {args.noise:g} x the pixel "
            f"noise, no mask, seed {args.seed}; NUTS {nuts['num_chains']} chains x "
            f"({nuts['num_warmup']} + {nuts['num_samples']}), max tree depth "
            f"{nuts['max_tree_depth']}; the amortised sampler "
            f"({args.amortized_model}) with the library's defaults, 200 draws.",
            "",
            "## Per observation",
            "",
            f"| # | truth ({', '.join(names)}) | NUTS mean | Δmean / sd_NUTS | sd ratio |",
            "|---|---|---|---|---|",
            *table,
            "",
            "## Information lost and mean errors (module docstring: for a calibrated posterior "
            "the third and fourth columns agree)",
            "",
            *summary(rows, names, prior_var),
            "",
        ]
    )
    pathlib.Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
