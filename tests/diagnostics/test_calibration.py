"""TARP and MIRA on synthetic Gaussian posteriors with known calibration.

Model: x* ~ N(0, I_D), y = x* + N(0, s2 I), exact posterior N(y / (1 + s2), s2 / (1 + s2) I).
Draws from it are calibrated; scaling the spread by 0.5 (over-confident) / 2.0 (under-confident)
or shifting the mean by 1.5 posterior std (biased) miscalibrates them. In the half-space limit
of MIRA (far centres) the expected scores are 0.602 (over), 0.718 (under), against 2/3.
"""

import sys
import types

import numpy as np
import pytest

from numpyro_diffprior.diagnostics.calibration import (
    calibration_summary,
    joint_coordinates,
    mira_expected,
    mira_score,
    tarp_coverage,
)

N_SIMS, N_DRAWS, DIM = 1000, 100, 3


def _posteriors(seed, scale=1.0, bias=0.0, n_sims=N_SIMS, dim=DIM, n_draws=N_DRAWS):
    rng = np.random.default_rng(seed)
    s2 = 0.25
    truth = rng.standard_normal((n_sims, dim))
    y = truth + np.sqrt(s2) * rng.standard_normal((n_sims, dim))
    mean, std = y / (1 + s2), np.sqrt(s2 / (1 + s2))
    draws = mean[:, None] + bias * std + scale * std * rng.standard_normal((n_sims, n_draws, dim))
    return draws, truth


ATC_SD = 0.161 / np.sqrt(N_SIMS)
CASES = {"calibrated": {}, "over": {"scale": 0.5}, "under": {"scale": 2.0}, "biased": {"bias": 1.5}}


@pytest.fixture(scope="module")
def results():
    out = {}
    for i, (name, kw) in enumerate(CASES.items()):
        draws, truth = _posteriors(10 + i, **kw)
        out[name] = (tarp_coverage(100 + i, draws, truth), mira_score(200 + i, draws, truth))
    return out


def test_mira_reference_value():
    assert mira_expected(99) == pytest.approx((2 * 99 + 3) / (3 * 99 + 6))
    assert mira_expected(10**6) == pytest.approx(2 / 3, abs=1e-6)


def test_calibrated_posterior(results):
    tarp, mira = results["calibrated"]
    # MIRA: per-truth variance ~1/18 -> sd of the mean ~ 0.0118 for 400 truths; 3 sd tolerance.
    assert abs(mira.score - mira.expected) < 3 * np.sqrt(1 / 18 / N_SIMS)
    assert mira.error == pytest.approx(np.sqrt(1 / 18 / N_SIMS), rel=0.25)
    # TARP: the randomised f is exactly U(0, 1) -> KS test should not reject; the ECP stays
    # within the 99% KS band (1.63 / sqrt(n)) of the diagonal.
    assert tarp.ks_pvalue > 0.01
    assert np.max(np.abs(tarp.ecp - tarp.alpha)) <= 1.63 / np.sqrt(N_SIMS)
    # ATC = mean of g(f) = 1/8 - max(f - 1/2, 0) ... has sd 0.161 / sqrt(n) for uniform f.
    assert abs(tarp.atc) < 3.5 * ATC_SD
    assert np.all(tarp.ecp_low <= tarp.ecp + 1e-12) and np.all(tarp.ecp <= tarp.ecp_high + 1e-12)


def test_few_draws_randomised_curve_is_the_diagonal():
    """With M = 8 draws the discrete ECP P(count / M < alpha) is a staircase 1/(M + 1) off the
    diagonal for a calibrated posterior; the randomised one is not (seeded; 99% KS band)."""
    n_sims, m = 4000, 8
    draws, truth = _posteriors(3, n_sims=n_sims, n_draws=m)
    randomised = tarp_coverage(7, draws, truth)
    discrete = tarp_coverage(7, draws, truth, randomize=False)
    band = 1.63 / np.sqrt(n_sims)
    assert np.max(np.abs(randomised.ecp - randomised.alpha)) <= band
    assert np.max(np.abs(discrete.ecp - discrete.alpha)) > 1.0 / (m + 1) - band
    inside = np.mean(
        (randomised.ecp_low <= randomised.alpha) & (randomised.alpha <= randomised.ecp_high)
    )
    assert inside > 0.9
    np.testing.assert_array_equal(randomised.f, discrete.f)  # f stays the discrete fraction
    assert randomised.ks_pvalue == discrete.ks_pvalue > 0.01


def test_overconfident_posterior(results):
    tarp, mira = results["over"]
    assert mira.score < results["calibrated"][1].expected - 4 * mira.error
    assert tarp.ks_pvalue < 1e-3 and tarp.atc < -3 * ATC_SD


def test_underconfident_posterior(results):
    tarp, mira = results["under"]
    assert mira.score > results["calibrated"][1].expected + 4 * mira.error
    assert tarp.ks_pvalue < 1e-3 and tarp.atc > 3 * ATC_SD


def test_biased_posterior(results):
    tarp, mira = results["biased"]
    assert mira.score < results["calibrated"][1].expected - 4 * mira.error
    assert tarp.ks_pvalue < 1e-6


def test_joint_balances_blocks():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal((5, 7, 2)) * 3.0
    kappa = rng.standard_normal((5, 7, 2, 4, 4)) * 0.01
    xs, xt = joint_coordinates(theta, kappa, theta[:, 0], kappa[:, 0])
    assert xs.shape == (5, 7, 2 + 32) and xt.shape == (5, 34)
    # each block has unit mean squared norm over pooled draws
    assert np.mean(np.sum(xs[..., :2] ** 2, -1)) == pytest.approx(1.0, rel=1e-5)
    assert np.mean(np.sum(xs[..., 2:] ** 2, -1)) == pytest.approx(1.0, rel=1e-5)


def test_calibration_summary_on_fields():
    """theta (P=2) and a 'kappa' block (2x4x4) drawn from calibrated posteriors: all ~2/3."""
    draws, truth = _posteriors(7, n_sims=300, dim=34, n_draws=60)
    theta_s, kappa_s = draws[..., :2], draws[..., 2:].reshape(300, 60, 2, 4, 4)
    theta_t, kappa_t = truth[:, :2], truth[:, 2:].reshape(300, 2, 4, 4)
    out = calibration_summary(3, theta_s, kappa_s, theta_t, kappa_t)
    assert set(out) == {"theta", "kappa", "joint"}
    for block in out.values():
        mira = block["mira"]
        assert abs(mira.score - mira.expected) < 3.5 * mira.error
        assert block["tarp"].ks_pvalue > 1e-3


def test_bad_shapes():
    with pytest.raises(ValueError, match="samples must have shape"):
        tarp_coverage(0, np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="truths must have shape"):
        mira_score(0, np.zeros((3, 5, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="references"):
        tarp_coverage(0, np.zeros((3, 5, 2)), np.zeros((3, 2)), references="nope")


def _import_tarp(monkeypatch):
    """tarp 0.1.x imports `deprecation` only for a decorator on its deprecated alias; shim it
    when that package is absent so the cross-check runs."""
    try:
        import deprecation  # noqa: F401
    except ImportError:
        shim = types.ModuleType("deprecation")
        shim.deprecated = lambda **kw: lambda f: f
        monkeypatch.setitem(sys.modules, "deprecation", shim)
    return pytest.importorskip("tarp")


def test_tarp_matches_reference_package(monkeypatch):
    tarp = _import_tarp(monkeypatch)
    draws, truth = _posteriors(5, scale=0.8, n_sims=300)
    rng = np.random.default_rng(1)
    refs = rng.uniform(-2.0, 2.0, size=truth.shape)
    ecp_ref, alpha_ref = tarp.get_tarp_coverage(
        np.swapaxes(draws, 0, 1),
        truth,
        references=refs,
        norm=False,
        bootstrap=False,
        num_alpha_bins=30,
    )
    ours = tarp_coverage(0, draws, truth, references=refs, standardise=False, num_alpha=2)
    ecdf = np.mean(ours.f[:, None] < alpha_ref[None, :-1], axis=0)  # tarp: P(f < edge)
    np.testing.assert_allclose(ecdf, ecp_ref[:-1], atol=1e-12)
