"""Is the conditional denoiser's theta calibrated at each noise level? No NUTS needed.

Usage: python benchmarks/amortized_denoiser_calibration.py [--amortized-model DIR]
       [--num 4096] [--sigmas 0.3 1 3 10 30 80] [--seed 0] [--noise-factor LO HI]
       [--mask-family none holes edges]
       [--out benchmarks/results/amortized_denoiser_calibration.md]

The amortised sampler follows the theta part of D(x; sigma, y) = E[x | x + sigma n, y]. For an
exact denoiser, the prediction theta_hat = E[theta | x_sigma, y] satisfies, over simulated
(theta, kappa, y) and noise draws:

- E[theta - theta_hat] = 0 (no offset);
- the least-squares slope of theta on theta_hat is 1 exactly, since theta - theta_hat is
  uncorrelated with every function of (x_sigma, y), theta_hat included. A slope above 1 means
  the predictions are shrunk towards the prior mean; below 1, overconfident.

For `--num` examples from the model's own training family (`ObservationRange`, without the
no-data examples; `--noise-factor` and `--mask-family` narrow it) and each sigma, the table
gives per parameter the offset (in the prior's sd), the slope, the mean squared error / prior
variance, and the share of training examples the model's EDM noise distribution
(ln sigma ~ N(P_mean, P_std^2)) puts at or above that sigma.
The errors are one standard error of the mean (offset) and of the least-squares slope.

An average over the whole prior can hide errors in a part of it, so the offset is also given
on the examples whose prediction lies in each of REGIONS: theta - theta_hat is uncorrelated
with every function of theta_hat, so an exact denoiser has E[theta - theta_hat | theta_hat in
A] = 0 for any region A. (Selecting on the true theta instead would not be a test: even an exact
posterior mean is pulled towards the prior mean there.)
"""

from __future__ import annotations

import argparse
import math
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

RESULTS = pathlib.Path(__file__).parent / "results" / "amortized_denoiser_calibration.md"
BATCH = 256
# the far-from-fiducial regions of posterior_vs_nuts.py's observations, on (Omega_c, sigma_8)
REGIONS = {
    "far-high": lambda om, s8: (om >= 0.33) & (s8 <= 0.72),
    "far-low": lambda om, s8: (om <= 0.22) & (s8 >= 0.9),
}


def simulate(prior, preset, num, seed, **family):
    """(theta (M, P), normalised x (M, D), observation features (M, 4C, N, N))."""
    from numpyro_diffprior.amortized.simulate import draw_observations
    from numpyro_diffprior.training_loop import simulator_source

    source = simulator_source(preset)
    obs_range = prior.observation_range
    obs_range = type(obs_range).from_dict({**obs_range.to_dict(), "uncond_prob": 0.0, **family})

    @jax.jit
    def batch(key):
        k_maps, k_obs = jax.random.split(key)
        theta, kappa = source(k_maps, BATCH)
        features = prior.encode(draw_observations(k_obs, kappa, obs_range))
        return theta, prior.to_normalized(prior.pack(theta, kappa)), features

    parts = [batch(jax.random.fold_in(jax.random.key(seed), i)) for i in range(num // BATCH)]
    return [np.concatenate([np.asarray(p[j]) for p in parts]) for j in range(3)]


@jax.jit
def _theta_hat(prior, x, ctx, key, sigma):
    """The denoiser's theta (physical units) for x (B, D) noised at sigma (one program for
    every sigma)."""
    x_sigma = x + sigma * jax.random.normal(key, x.shape)
    x_hat = prior.conditional_denoise_normalized(x_sigma, jnp.full(x.shape[:1], sigma), ctx)
    return prior.unpack(prior.from_normalized(x_hat))[0]


def predict(prior, x0, features, sigma, seed):
    """theta_hat (M, P) of the denoiser at noise level sigma, batch by batch."""
    key, sigma = jax.random.key(seed), jnp.float32(sigma)
    out = [
        _theta_hat(
            prior, x0[i : i + BATCH], features[i : i + BATCH], jax.random.fold_in(key, i), sigma
        )  # fmt: skip
        for i in range(0, x0.shape[0], BATCH)
    ]
    return np.concatenate([np.asarray(o) for o in out])


def calibration(theta, theta_hat):
    """Per parameter: (offset, its se, slope, its se, mse) in prior-sd units."""
    scale = theta.std(0)
    rows = []
    for j in range(theta.shape[1]):
        t, p = theta[:, j] / scale[j], theta_hat[:, j] / scale[j]
        resid = t - p
        slope, intercept = np.polyfit(p, t, 1)
        fit_resid = t - (slope * p + intercept)
        slope_se = fit_resid.std() / (p.std() * math.sqrt(len(p)))
        rows.append((resid.mean(), resid.std() / math.sqrt(len(p)), slope, slope_se,
                     np.mean(resid**2)))  # fmt: skip
    return rows


def region_offsets(theta, theta_hat, names):
    """{region: (count, [offset per parameter in prior sd], [its se])} on theta_hat in it."""
    if names[:2] != ("Omega_c", "sigma_8"):
        return {}
    scale, out = theta.std(0), {}
    for name, region in REGIONS.items():
        inside = region(theta_hat[:, 0], theta_hat[:, 1])
        resid = (theta[inside] - theta_hat[inside]) / scale
        n = int(inside.sum())
        out[name] = (n, resid.mean(0), resid.std(0) / math.sqrt(max(n, 1)))
    return out


def share_above(sigma, p_mean, p_std):
    """P(sigma' >= sigma) for ln sigma' ~ N(p_mean, p_std^2)."""
    return 0.5 * math.erfc((math.log(sigma) - p_mean) / (p_std * math.sqrt(2)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amortized-model", default="lsst-y10-coarse")
    parser.add_argument("--num", type=int, default=4096)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 1, 3, 10, 30, 80])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-factor", type=float, nargs=2, default=None)
    parser.add_argument("--mask-family", nargs="+", default=None)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    family = {k: v for k, v in (("noise_factor", args.noise_factor),
                                ("mask_family", args.mask_family)) if v is not None}  # fmt: skip
    if args.num < BATCH or args.num % BATCH:
        raise SystemExit(f"--num must be a positive multiple of {BATCH}")

    from numpyro_diffprior.amortized.prior import _AMORTIZED_SUFFIX, AmortizedPrior
    from numpyro_diffprior.checkpoints import _PRETRAINED, load_checkpoint

    path = pathlib.Path(args.amortized_model)
    if not path.is_dir():  # a preset name: its shipped model
        path = _PRETRAINED / f"{args.amortized_model}{_AMORTIZED_SUFFIX}"
    checkpoint = load_checkpoint(path)
    prior, preset = AmortizedPrior.from_checkpoint(checkpoint), checkpoint.preset
    training = checkpoint.training_config
    start = time.perf_counter()
    theta, x0, features = simulate(prior, preset, args.num, args.seed, **family)
    names = preset.param_names
    rows, region_rows = [], []
    for sigma in args.sigmas:
        theta_hat = predict(prior, x0, features, sigma, args.seed + 1)
        stats = calibration(theta, theta_hat)
        for region, (n, off, se) in region_offsets(theta, theta_hat, tuple(names)).items():
            cells = " | ".join(f"{o:+.3f} ± {e:.3f}" for o, e in zip(off, se, strict=True))
            region_rows.append(f"| {sigma:g} | {region} | {n} | {cells} |")
        share = share_above(sigma, training.P_mean, training.P_std)
        cells = [f"{o:+.3f} ± {ose:.3f}" for o, ose, *_ in stats]
        cells += [f"{s:.3f} ± {sse:.3f}" for _, _, s, sse, _ in stats]
        cells += [f"{m:.3f}" for *_, m in stats]
        rows.append(f"| {sigma:g} | " + " | ".join(cells) + f" | {100 * share:.1f} % |")
        print(rows[-1], flush=True)
    narrowed = "".join(f"; {k} {v}" for k, v in family.items())
    head = (
        [f"offset {n}" for n in names] + [f"slope {n}" for n in names]
        + [f"MSE {n}" for n in names]
    )  # fmt: skip
    text = (
        "# Calibration of the conditional denoiser's theta per noise level "
        "(benchmarks/amortized_denoiser_calibration.py)\n\n"
        f"Model {args.amortized_model}; {args.num} simulated observations of its training family "
        f"(no no-data examples{narrowed}), seed {args.seed}; "
        f"{time.perf_counter() - start:.0f} s. "
        "Exact denoiser: offset 0, slope 1. Offset and MSE in prior-sd units; the last column "
        f"is the share of training examples at or above sigma (ln sigma ~ N({training.P_mean}, "
        f"{training.P_std}^2)).\n\n| sigma | "
        + " | ".join(head)
        + " | training share |\n|"
        + "---|" * (len(head) + 2)
        + "\n"
        + "\n".join(rows)
        + "\n"
    )
    if region_rows:
        text += (
            "\n## Offsets on the examples whose prediction is far from the fiducial cosmology\n\n"
            "far-high: Omega_c_hat >= 0.33 and sigma_8_hat <= 0.72; far-low: Omega_c_hat <= 0.22 "
            "and sigma_8_hat >= 0.9 (prior-sd units).\n\n| sigma | region | examples | "
            + " | ".join(f"offset {n}" for n in names)
            + " |\n|---|---|---|"
            + "---|" * len(names)
            + "\n"
            + "\n".join(region_rows)
            + "\n"
        )
    pathlib.Path(args.out).write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
