"""Calibration of posterior samplers over many simulated observations: TARP and MIRA.

TARP (Lemos, Coogan et al. 2023, "Sampling-based accuracy testing of posterior estimators for
general inference", arXiv:2302.03026): for simulation i with truth x*_i, posterior draws x_ij and
a reference point r_i drawn independently of x*_i, f_i = fraction of draws closer to r_i than x*_i.
For a correct posterior f_i ~ U(0, 1), so the expected coverage ECP(alpha) = P(f < alpha) is the
diagonal. With M draws f is discrete (count / M), so we use f made continuous by randomisation,
(count + U) / (M + 1) with U ~ U(0, 1), which is exactly uniform for a correct posterior (the
randomised PIT of simulation-based calibration). We report its ECP curve, a bootstrap band over
simulations, the area to curve ATC = int_{1/2}^{1} (ECP(alpha) - alpha) d alpha (> 0
under-confident, < 0 over-confident; the `sbi` convention, integrated instead of summed over the
grid) and the one-sample Kolmogorov-Smirnov statistic/p-value against U(0, 1). The discrete
curve P(count / M < alpha) (the `tarp` package's, `randomize=False`) is a staircase that departs
from the diagonal by up to 1/(M + 1) even for a correct posterior: at M = 16 as far as the 95 %
bootstrap band of 200 simulations reaches, so "the diagonal inside the band" would fail.

MIRA (Sharief, Zeghal et al. 2026; docs/design.md §2.8): per truth, a ball centred at a random
reference point with radius the distance to one random posterior draw; with n of the other N
draws inside, the score is (n+1)/(N+2) if the truth is inside, else (N-n+1)/(N+2). If the
truth is exchangeable with the draws, E[score] = (2N+3)/(3N+6) -> 2/3 (variance -> 1/18 per
truth); lower means over-confident or biased, higher means under-confident.

Coordinates: each coordinate is standardised by the mean/std of the draws pooled over all
simulations (independent of any single truth given its data). For the joint (theta, kappa) the two
standardised blocks are further divided by sqrt(their dimension) so that theta's P coordinates and
kappa's C*N*N pixels carry the same weight in Euclidean distances (`joint_coordinates`).
Reference points / ball centres (`references`, default "uniform" for both): "uniform" in the
per-coordinate box [min, max] of the pooled standardised draws (the `tarp` package's choice,
with the box taken from draws, not truths), "gaussian" N(0, I) in standardised coordinates,
"posterior": one posterior draw of the same simulation, then left out of the counts, or an
array (n_sims, dim). Every choice is independent of the truth given the data, so a correct
posterior scores exactly as stated. The direction of MIRA's deviations depends on it: with
centres far from the posterior (uniform, gaussian) a ball is nearly a half-space, MIRA =
E[1/2 + r(1 - r)] with r the truth's rank among the draws along that direction, so
under-confidence (r near 1/2) raises it towards 3/4 and over-confidence or bias lowers it
towards 1/2; with "posterior" centres r is a radial rank and both kinds of miscalibration lower
it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats

__all__ = [
    "TarpResult",
    "MiraResult",
    "standardize",
    "joint_coordinates",
    "reference_points",
    "tarp_coverage",
    "mira_score",
    "mira_expected",
    "calibration_summary",
]


class TarpResult(NamedTuple):
    alpha: np.ndarray  # (K,) credibility levels in [0, 1]
    ecp: np.ndarray  # (K,) expected coverage P(f < alpha) of the randomised (or discrete) f
    ecp_low: np.ndarray  # (K,) bootstrap band, lower percentile
    ecp_high: np.ndarray  # (K,) bootstrap band, upper percentile
    f: np.ndarray  # (n_sims,) per-simulation fractions count / M (discrete)
    atc: float  # area to curve over alpha > 1/2
    ks_statistic: float  # sup |ECDF(f) - alpha|
    ks_pvalue: float


class MiraResult(NamedTuple):
    score: float  # mean score over truths
    error: float  # bootstrap standard error of the mean
    scores: np.ndarray  # (n_sims,) per-truth scores
    expected: float  # (2N+3)/(3N+6) for a correct posterior with N counted draws


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check(samples, truths):
    samples = np.asarray(samples)
    truths = np.asarray(truths)
    if samples.ndim != 3:
        raise ValueError(f"samples must have shape (n_sims, n_draws, dim), got {samples.shape}")
    if truths.shape != (samples.shape[0], samples.shape[2]):
        raise ValueError(
            f"truths must have shape (n_sims, dim) = {(samples.shape[0], samples.shape[2])}, "
            f"got {truths.shape}"
        )
    if samples.shape[0] < 2 or samples.shape[1] < 3:
        raise ValueError(f"need >= 2 simulations and >= 3 draws each, got {samples.shape[:2]}")
    return samples, truths


def standardize(samples, truths):
    """Standardise each coordinate by the mean/std of the draws pooled over simulations."""
    samples, truths = _check(samples, truths)
    flat = samples.reshape(-1, samples.shape[-1])
    center = flat.mean(axis=0)
    scale = flat.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return ((samples - center) / scale).astype(np.float32), ((truths - center) / scale)


def joint_coordinates(theta_samples, kappa_samples, theta_true, kappa_true, *, balance=True):
    """Flat standardised joint coordinates (n_sims, n_draws, P + C*N*N) and truths.

    theta_samples (S, M, P), kappa_samples (S, M, C, N, N), theta_true (S, P), kappa_true
    (S, C, N, N). With `balance`, each block is divided by sqrt(its dimension).
    """
    theta_samples = np.asarray(theta_samples)
    kappa_samples = np.asarray(kappa_samples)
    s, m = theta_samples.shape[:2]
    ks = kappa_samples.reshape(s, m, -1)
    kt = np.asarray(kappa_true).reshape(s, -1)
    ts, tt = standardize(theta_samples, theta_true)
    ks, kt = standardize(ks, kt)
    if balance:
        ts, tt = ts / np.sqrt(ts.shape[-1]), tt / np.sqrt(ts.shape[-1])
        ks, kt = ks / np.sqrt(ks.shape[-1]), kt / np.sqrt(ks.shape[-1])
    return np.concatenate([ts, ks], axis=-1), np.concatenate([tt, kt], axis=-1)


def reference_points(rng, samples, references="uniform"):
    """Reference points (n_sims, dim) drawn independently of the truths given the data, and
    the index (n_sims,) of the posterior draw used as reference (None unless "posterior")."""
    rng = _rng(rng)
    n_sims, n_draws, dim = samples.shape
    if isinstance(references, str):
        if references == "uniform":
            flat = samples.reshape(-1, dim)
            low, high = flat.min(axis=0), flat.max(axis=0)
            return rng.uniform(low, high, size=(n_sims, dim)), None
        if references == "gaussian":
            return rng.standard_normal((n_sims, dim)), None
        if references == "posterior":
            k = rng.integers(0, n_draws, size=n_sims)
            return samples[np.arange(n_sims), k], k
        raise ValueError(
            f"references must be 'uniform', 'gaussian', 'posterior' or an array, got {references!r}"
        )
    references = np.asarray(references)
    if references.shape != (n_sims, dim):
        raise ValueError(f"references must have shape {(n_sims, dim)}, got {references.shape}")
    return references, None


def _distances(points, ref):
    """Euclidean distances (n_sims, n) of points (n_sims, n, dim) to ref (n_sims, dim)."""
    out = np.empty(points.shape[:2])
    for i in range(points.shape[0]):  # loop over simulations keeps memory at one copy
        out[i] = np.sqrt(np.sum((points[i] - ref[i]) ** 2, axis=-1))
    return out


def tarp_coverage(
    rng,
    samples,
    truths,
    *,
    references="uniform",
    standardise=True,
    num_alpha=101,
    num_bootstrap=200,
    band=0.95,
    randomize=True,
) -> TarpResult:
    """TARP expected coverage of posterior draws (n_sims, n_draws, dim) given truths (n_sims, dim).

    rng: int seed or numpy Generator. The ECP curve, its band and the ATC use the randomised
    fractions (count + U) / (M + 1) (`randomize=True`) or the discrete count / M (`False`, as
    the `tarp` package); the KS test always uses the randomised ones. Returns a `TarpResult`
    (module docstring for definitions).
    """
    samples, truths = _check(samples, truths)
    rng = _rng(rng)
    if standardise:
        samples, truths = standardize(samples, truths)
    ref, used = reference_points(rng, samples, references)
    d_draws = _distances(samples, ref)
    d_truth = np.sqrt(np.sum((truths - ref) ** 2, axis=-1))
    closer = d_draws < d_truth[:, None]
    n_counted = samples.shape[1]
    if used is not None:  # the reference draw itself is not counted
        closer[np.arange(len(used)), used] = False
        n_counted -= 1
    count = np.sum(closer, axis=1)
    f = count / n_counted
    f_continuous = (count + rng.uniform(size=count.shape)) / (n_counted + 1)
    f_curve = f_continuous if randomize else f
    alpha = np.linspace(0.0, 1.0, num_alpha)
    ecp = np.mean(f_curve[:, None] < alpha[None, :], axis=0)
    ecp[-1] = 1.0
    idx = rng.integers(0, f.shape[0], size=(num_bootstrap, f.shape[0]))
    boot = np.mean(f_curve[idx][..., None] < alpha, axis=1)
    boot[:, -1] = 1.0
    q = (1.0 - band) / 2.0
    low, high = np.quantile(boot, [q, 1.0 - q], axis=0)
    upper = alpha >= 0.5
    atc = float(np.trapezoid(ecp[upper] - alpha[upper], alpha[upper]))
    ks = stats.kstest(f_continuous, "uniform")
    return TarpResult(alpha, ecp, low, high, f, atc, float(ks.statistic), float(ks.pvalue))


def mira_expected(num_counted: int) -> float:
    """E[score] for a correct posterior with N = num_counted draws besides the radius draw."""
    return (2.0 * num_counted + 3.0) / (3.0 * num_counted + 6.0)


def mira_score(
    rng,
    samples,
    truths,
    *,
    references="uniform",
    standardise=True,
    num_bootstrap=1000,
) -> MiraResult:
    """MIRA score of posterior draws (n_sims, n_draws, dim) given truths (n_sims, dim)."""
    samples, truths = _check(samples, truths)
    rng = _rng(rng)
    if standardise:
        samples, truths = standardize(samples, truths)
    n_sims, n_draws, _ = samples.shape
    ref, used = reference_points(rng, samples, references)
    d_draws = _distances(samples, ref)
    d_truth = np.sqrt(np.sum((truths - ref) ** 2, axis=-1))
    rows = np.arange(n_sims)
    n_total = n_draws - 1
    if used is None:
        j = rng.integers(0, n_draws, size=n_sims)
    else:  # radius from another draw; the centre draw is not counted
        j = (used + rng.integers(1, n_draws, size=n_sims)) % n_draws
        d_draws[rows, used] = np.inf
        n_total -= 1
    radius = d_draws[rows, j]
    inside = d_draws < radius[:, None]  # the radius draw itself is never strictly inside
    n_in = inside.sum(axis=1)
    truth_in = d_truth < radius
    scores = np.where(
        truth_in, (n_in + 1.0) / (n_total + 2.0), (n_total - n_in + 1.0) / (n_total + 2.0)
    )
    idx = rng.integers(0, n_sims, size=(num_bootstrap, n_sims))
    error = float(np.std(scores[idx].mean(axis=1)))
    return MiraResult(float(scores.mean()), error, scores, mira_expected(n_total))


def calibration_summary(
    rng,
    theta_samples,
    kappa_samples,
    theta_true,
    kappa_true,
    *,
    tarp_references="uniform",
    mira_references="uniform",
):
    """TARP and MIRA on theta, on kappa (flattened) and on the balanced joint.

    Shapes: theta_samples (S, M, P), kappa_samples (S, M, C, N, N), theta_true (S, P),
    kappa_true (S, C, N, N). Returns {"theta"|"kappa"|"joint": {"tarp": TarpResult,
    "mira": MiraResult}}.
    """
    rng = _rng(rng)
    theta_samples = np.asarray(theta_samples)
    s, m = theta_samples.shape[:2]
    blocks = {
        "theta": (theta_samples, np.asarray(theta_true)),
        "kappa": (
            np.asarray(kappa_samples).reshape(s, m, -1),
            np.asarray(kappa_true).reshape(s, -1),
        ),
        "joint": joint_coordinates(theta_samples, kappa_samples, theta_true, kappa_true),
    }
    out = {}
    for name, (xs, xt) in blocks.items():
        std = name != "joint"  # the joint is already standardised and balanced
        out[name] = {
            "tarp": tarp_coverage(rng, xs, xt, standardise=std, references=tarp_references),
            "mira": mira_score(rng, xs, xt, standardise=std, references=mira_references),
        }
    return out
