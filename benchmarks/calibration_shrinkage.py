"""Benchmark: where a calibration run's posteriors sit against the truths (shrinkage, map power).

Usage: python benchmarks/calibration_shrinkage.py PROGRESS.npz [--out FILE.md]

Reads the draws a calibration run saved (`run_calibration`'s progress file:
progress_<K>x<M>.npz, from `calibration_shipped.py` or `calibrate --method ...`) and reports
what TARP and MIRA, with reference points spread over all draws, barely see:
- per parameter and for S8 = sigma_8 sqrt(Omega_c / 0.3): z = (truth - posterior mean) /
  posterior sd, its mean (± standard error) and spread (a calibrated Gaussian posterior: 0 and
  sqrt((M + 1) (M - 1) / (M (M - 3))) for M draws: z is sqrt(1 + 1 / M) times a Student t with
  M - 1 degrees of freedom);
- the slope of (posterior mean - truth) on the truth, against the calibrated value
  -E[Var(theta | y)] / Var(theta) (both from the run: the mean posterior variance over the
  variance of the truths);
- per redshift bin, the median over observations of the draws' mean pixel variance over the
  truth's, and the median z of the truth's pixel variance among the draws'.
The amplitude helpers are `posterior_amplitude.py`'s, whose calibration table gives the
means of those z-scores; this report adds theta's own and the regression slopes.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from posterior_amplitude import _calibrated_spread, pixel_variance, s8  # noqa: E402


def shrinkage_rows(samples, truths):
    """[(z mean, z standard error, z spread, slope, calibrated slope)] for samples (K, M) and
    truths (K,)."""
    mean, sd = samples.mean(1), samples.std(1, ddof=1)
    z = (truths - mean) / sd
    slope = np.polyfit(truths, mean - truths, 1)[0]
    calibrated = -np.mean(sd**2) / np.var(truths)
    return z.mean(), z.std(ddof=1) / np.sqrt(len(z)), z.std(ddof=1), slope, calibrated


def power_rows(kappa_samples, kappa_true):
    """Per bin: (median draws' pixel variance / truth's, median z of the truth's variance)."""
    var_draws = pixel_variance(kappa_samples)  # (K, M, C)
    var_true = pixel_variance(kappa_true)  # (K, C)
    ratio = np.median(var_draws.mean(1) / var_true, axis=0)
    z = (var_true - var_draws.mean(1)) / var_draws.std(1, ddof=1)
    return ratio, np.median(z, axis=0)


def report(progress) -> str:
    with np.load(progress) as d:
        theta, theta_true = d["theta_samples"], d["theta_true"]
        kappa, kappa_true = d["kappa_samples"], d["kappa_true"]
        label = str(d["run_label"])
    num_obs, num_draws = theta.shape[:2]
    names = ("Omega_c", "sigma_8")
    columns = [(n, theta[..., i], theta_true[:, i]) for i, n in enumerate(names)]
    unphysical = int(np.sum(theta[..., 0] <= 0))  # S8 is undefined there: taken as 0
    columns.append(("S8", s8(np.maximum(theta, 0.0)), s8(theta_true)))
    text = [
        "# Calibration run: theta against the truths, and the maps' power\n",
        f"`python benchmarks/calibration_shrinkage.py {pathlib.Path(progress).name}`: "
        f"{num_obs} observations x {num_draws} draws; sampler settings {label}.\n",
        f"A calibrated posterior gives z mean 0 and spread "
        f"{_calibrated_spread(num_draws):.2f} for {num_draws} draws. Draws with Omega_c <= 0 "
        f"(S8 undefined, taken as 0): {unphysical} of {theta[..., 0].size}.\n",
        "| quantity | z mean (± s.e.) | z spread | slope of (mean − truth) on truth "
        "| calibrated slope |",
        "|---|---|---|---|---|",
    ]
    for name, samples, truths in columns:
        zm, se, zs, slope, cal = shrinkage_rows(samples, truths)
        text.append(f"| {name} | {zm:+.2f} ± {se:.2f} | {zs:.2f} | {slope:+.2f} | {cal:+.2f} |")
    ratio, z = power_rows(kappa, kappa_true)
    text += [
        "\nPixel variance per redshift bin (medians over observations):\n",
        "| bin | draws' / truth's | z of the truth's among the draws' |",
        "|---|---|---|",
    ]
    rows = enumerate(zip(ratio, z, strict=True))
    text += [f"| {c + 1} | {r:.2f} | {v:+.2f} |" for c, (r, v) in rows]
    return "\n".join(text) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("progress", help="a calibration run's progress_<K>x<M>.npz")
    parser.add_argument("--out", default=None, help="write the report here (markdown)")
    args = parser.parse_args(argv)
    text = report(args.progress)
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(out)
    print(text)


if __name__ == "__main__":
    main()
