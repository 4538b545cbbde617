"""Side-by-side numbers for several posteriors of one observation (docs/design.md §2.8).

`compare_posteriors` takes InferenceData with the package's conventions (posterior `theta`
("param",), `kappa` ("zbin","y","x"); truth in constant_data `theta_true`/`kappa_true`) and
returns plain numpy tables: theta moments and correlations, kappa mean/std maps and the
correlation of mean maps, binned auto/cross power spectra of posterior draws and of the truth,
the cross-correlation coefficient r(l) of each posterior mean with the truth, and one-point
PDFs. `quality_checks` turns them into the pass/fail rows of issue 5 against a reference
(NUTS by default).
"""

from __future__ import annotations

import arviz as az
import numpy as np

from numpyro_diffprior.diagnostics.power import (
    cross_correlation_coefficient,
    ell_bin_edges,
    power_spectrum,
)
from numpyro_diffprior.presets import get_preset

__all__ = ["posterior_draws", "find_truth", "compare_posteriors", "quality_checks"]


def posterior_draws(idata):
    """(theta (S, P), kappa (S, C, N, N)) with chains and draws flattened."""
    theta = idata.posterior["theta"].values
    kappa = idata.posterior["kappa"].values
    return theta.reshape((-1,) + theta.shape[2:]), kappa.reshape((-1,) + kappa.shape[2:])


def find_truth(idatas: dict, truth: dict | None = None) -> dict | None:
    """`truth` if given, else theta_true/kappa_true from the first idata that stores them."""
    if truth:
        return {k: np.asarray(v) for k, v in truth.items() if v is not None}
    for idata in idatas.values():
        if "constant_data" in idata.groups():
            const = idata.constant_data
            found = {}
            if "theta_true" in const:
                found["theta"] = const["theta_true"].values
            if "kappa_true" in const:
                found["kappa"] = const["kappa_true"].values
            if found:
                return found
    return None


def _pearson(a, b):
    a = np.ravel(a) - np.mean(a)
    b = np.ravel(b) - np.mean(b)
    denom = np.sqrt(np.sum(a**2) * np.sum(b**2))
    return float(np.sum(a * b) / denom) if denom > 0 else float("nan")


def _convergence(idata) -> dict:
    theta = idata.posterior["theta"]
    out = {"rhat_max": float("nan"), "ess_min": float("nan")}
    # rank-normalised split R-hat (needs >= 2 chains) and bulk ESS (Vehtari et al. 2021)
    if theta.sizes["draw"] >= 4:
        out["ess_min"] = float(az.ess(idata, var_names=["theta"])["theta"].min())
        if theta.sizes["chain"] >= 2:
            out["rhat_max"] = float(az.rhat(idata, var_names=["theta"])["theta"].max())
    attrs = idata.posterior.attrs
    for key in ("wall_time_s", "sampling_time_s", "time_per_effective_sample_s", "num_divergent"):
        if key in attrs:
            out[key] = attrs[key]
    return out


def compare_posteriors(
    idatas: dict,
    truth: dict | None = None,
    preset=None,
    *,
    reference: str | None = None,
    num_power_draws: int = 200,
    num_pdf_bins: int = 40,
    seed: int = 0,
) -> dict:
    """Tables comparing posteriors {name: InferenceData} of one observation.

    reference: the method others are measured against (default "nuts" if present, else the
    first). preset: name (default the idata attrs' `preset`). Returns a dict with keys
    "methods", "reference", "param_names", "truth", "theta", "kappa", "power", "r_ell",
    "pdf", "convergence" (see the module docstring).
    """
    if not idatas:
        raise ValueError("need at least one InferenceData to compare")
    names = list(idatas)
    if reference is None:
        reference = "nuts" if "nuts" in idatas else names[0]
    if reference not in idatas:
        raise ValueError(f"reference {reference!r} is not one of the methods {names}")
    first = idatas[names[0]]
    if preset is None:
        preset = first.posterior.attrs.get("preset")
    preset = get_preset(preset)
    param_names = [str(p) for p in first.posterior["param"].values]
    truth = find_truth(idatas, truth)
    draws = {name: posterior_draws(idata) for name, idata in idatas.items()}
    for name, (th, ka) in draws.items():
        if th.shape[1:] != (len(param_names),) or ka.shape[1:] != draws[reference][1].shape[1:]:
            raise ValueError(
                f"{name!r} has shapes {th.shape[1:]}, {ka.shape[1:]} unlike the others"
            )

    theta_tab = {}
    ref_mean = draws[reference][0].mean(axis=0)
    ref_std = draws[reference][0].std(axis=0)
    for name, (th, _) in draws.items():
        mean, std = th.mean(axis=0), th.std(axis=0)
        theta_tab[name] = {
            "mean": mean,
            "std": std,
            "corr": np.corrcoef(th, rowvar=False) if th.shape[1] > 1 else np.ones((1, 1)),
            "delta_mean_over_ref_std": (mean - ref_mean) / ref_std,
            "std_ratio": std / ref_std,
            "truth_pull": None
            if truth is None or "theta" not in truth
            else (mean - truth["theta"]) / std,
        }

    kappa_tab = {}
    ref_kmean = draws[reference][1].mean(axis=0)
    for name, (_, ka) in draws.items():
        kmean, kstd = ka.mean(axis=0), ka.std(axis=0)
        row = {
            "mean": kmean,
            "std": kstd,
            "corr_ref": _pearson(kmean, ref_kmean),
            "corr_ref_per_bin": np.array(
                [_pearson(kmean[c], ref_kmean[c]) for c in range(len(kmean))]
            ),
        }
        if truth is not None and "kappa" in truth:
            kt = truth["kappa"]
            row["corr_truth"] = _pearson(kmean, kt)
            row["corr_truth_per_bin"] = np.array(
                [_pearson(kmean[c], kt[c]) for c in range(len(kmean))]
            )
            row["rms_residual_per_bin"] = np.sqrt(np.mean((kmean - kt) ** 2, axis=(1, 2)))
            row["mean_abs_pull"] = float(np.mean(np.abs(kmean - kt) / np.maximum(kstd, 1e-30)))
        kappa_tab[name] = row

    edges = ell_bin_edges(preset.npix, preset.field_rad)
    rng = np.random.default_rng(seed)
    power_tab, r_tab = {}, {}
    for name, (_, ka) in draws.items():
        pick = rng.choice(len(ka), size=min(num_power_draws, len(ka)), replace=False)
        ell, cl = power_spectrum(ka[pick], preset.field_rad, edges)
        cl = np.asarray(cl)
        power_tab[name] = {
            "median": np.median(cl, axis=0),
            "low": np.percentile(cl, 16, axis=0),
            "high": np.percentile(cl, 84, axis=0),
        }
        if truth is not None and "kappa" in truth:
            r = cross_correlation_coefficient(
                kappa_tab[name]["mean"], truth["kappa"], preset.field_rad, edges
            )
            r_tab[name] = np.asarray(r)
    ell = np.asarray(ell)
    truth_cl = None
    if truth is not None and "kappa" in truth:
        truth_cl = np.asarray(power_spectrum(truth["kappa"], preset.field_rad, edges)[1])

    pooled = np.concatenate([ka.reshape(len(ka), ka.shape[1], -1) for _, ka in draws.values()])
    lo = np.percentile(pooled, 0.5, axis=(0, 2))
    hi = np.percentile(pooled, 99.5, axis=(0, 2))
    pdf_edges = np.stack([np.linspace(a, b, num_pdf_bins + 1) for a, b in zip(lo, hi, strict=True)])
    pdf_tab = {}
    for name, (_, ka) in draws.items():
        pdf_tab[name] = np.stack(
            [np.histogram(ka[:, c], bins=pdf_edges[c], density=True)[0] for c in range(ka.shape[1])]
        )
    if truth is not None and "kappa" in truth:
        pdf_tab["truth"] = np.stack(
            [
                np.histogram(truth["kappa"][c], bins=pdf_edges[c], density=True)[0]
                for c in range(ka.shape[1])
            ]
        )

    return {
        "methods": names,
        "reference": reference,
        "preset": preset.name,
        "param_names": param_names,
        "truth": truth,
        "theta": theta_tab,
        "kappa": kappa_tab,
        "power": {"ell": ell, "edges": edges, "methods": power_tab, "truth": truth_cl},
        "r_ell": {"ell": ell, "methods": r_tab},
        "pdf": {"edges": pdf_edges, "methods": pdf_tab},
        "convergence": {name: _convergence(idata) for name, idata in idatas.items()},
    }


def quality_checks(
    tables: dict,
    *,
    max_delta_mean: float = 0.3,
    std_ratio_range=(0.8, 1.25),
    min_map_correlation: float = 0.95,
    max_rhat: float = 1.01,
    min_ess: float = 100.0,
) -> list[dict]:
    """Issue-5 pass/fail rows of every method against the reference (NUTS).

    |mean - mean_ref| <= max_delta_mean * sigma_ref and sigma / sigma_ref in std_ratio_range
    per parameter; correlation of the kappa posterior mean maps (all bins together)
    >= min_map_correlation; the reference's max R-hat <= max_rhat and min ESS >= min_ess
    over theta (Vehtari et al. 2021 thresholds).
    """
    ref = tables["reference"]
    rows = []
    for name in tables["methods"]:
        if name == ref:
            continue
        t = tables["theta"][name]
        for i, p in enumerate(tables["param_names"]):
            d = float(t["delta_mean_over_ref_std"][i])
            rows.append(
                dict(
                    method=name,
                    check=f"|Δmean({p})| / σ_{ref}",
                    value=abs(d),
                    target=f"≤ {max_delta_mean}",
                    passed=abs(d) <= max_delta_mean,
                )
            )
            r = float(t["std_ratio"][i])
            rows.append(
                dict(
                    method=name,
                    check=f"σ({p}) / σ_{ref}",
                    value=r,
                    target=f"in [{std_ratio_range[0]}, {std_ratio_range[1]}]",
                    passed=std_ratio_range[0] <= r <= std_ratio_range[1],
                )
            )
        c = tables["kappa"][name]["corr_ref"]
        rows.append(
            dict(
                method=name,
                check=f"corr(mean κ, mean κ_{ref})",
                value=c,
                target=f"≥ {min_map_correlation}",
                passed=c >= min_map_correlation,
            )
        )
    conv = tables["convergence"][ref]
    rows.append(
        dict(
            method=ref,
            check="max R-hat(θ)",
            value=conv["rhat_max"],
            target=f"≤ {max_rhat}",
            passed=conv["rhat_max"] <= max_rhat,
        )
    )
    rows.append(
        dict(
            method=ref,
            check="min ESS(θ)",
            value=conv["ess_min"],
            target=f"≥ {min_ess:g}",
            passed=conv["ess_min"] >= min_ess,
        )
    )
    return rows
