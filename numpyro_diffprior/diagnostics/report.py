"""Markdown reports: posterior comparison (tables + PNG figures) and calibration (TARP, MIRA)."""

from __future__ import annotations

import os

import numpy as np

from numpyro_diffprior.diagnostics import plots
from numpyro_diffprior.diagnostics.compare import (
    compare_posteriors,
    posterior_draws,
    quality_checks,
)
from numpyro_diffprior.strict_json import dump_json

__all__ = ["markdown_table", "write_report", "write_calibration_report"]


def _fmt(x, digits=4):
    if x is None:
        return "—"
    if isinstance(x, bool | np.bool_):
        return "PASS" if x else "FAIL"
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        return "nan" if not np.isfinite(x) else f"{x:.{digits}g}"
    return str(x).replace("|", "\\|")


def markdown_table(header, rows) -> str:
    """A GitHub markdown table from a header list and rows of values."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_report(out_dir, idatas: dict, truth: dict | None = None, preset=None, **kwargs) -> str:
    """Compare posteriors {name: InferenceData} of one observation; write report.md + PNGs.

    kwargs go to `compare_posteriors` (e.g. reference="nuts"). Returns the report path.
    """
    os.makedirs(out_dir, exist_ok=True)
    tab = compare_posteriors(idatas, truth=truth, preset=preset, **kwargs)
    names, ref, params = tab["methods"], tab["reference"], tab["param_names"]
    truth = tab["truth"]
    has_kappa_truth = truth is not None and "kappa" in truth
    theta_true = None if truth is None else truth.get("theta")
    fig = {}
    fig["theta"] = plots.plot_theta_contours(
        {n: posterior_draws(idatas[n])[0] for n in names},
        params,
        os.path.join(out_dir, "theta_contours.png"),
        truth=theta_true,
    )
    fig["maps"] = plots.plot_kappa_maps(
        {n: tab["kappa"][n]["mean"] for n in names},
        {n: tab["kappa"][n]["std"] for n in names},
        os.path.join(out_dir, "kappa_maps.png"),
        truth=truth["kappa"] if has_kappa_truth else None,
    )
    fig["power"] = plots.plot_power_spectra(
        tab["power"]["ell"],
        tab["power"]["methods"],
        os.path.join(out_dir, "power_spectra.png"),
        truth=tab["power"]["truth"],
    )
    if tab["r_ell"]["methods"]:
        fig["r_ell"] = plots.plot_cross_correlation(
            tab["r_ell"]["ell"], tab["r_ell"]["methods"], os.path.join(out_dir, "r_ell.png")
        )
    fig["pdf"] = plots.plot_one_point_pdfs(
        tab["pdf"]["edges"], tab["pdf"]["methods"], os.path.join(out_dir, "one_point_pdfs.png")
    )

    md = [
        f"# Posterior comparison ({tab['preset']})",
        "",
        f"Methods: {', '.join(names)}; reference: **{ref}**.",
        "",
    ]
    checks = quality_checks(tab)
    md += [
        "## Quality checks",
        "",
        markdown_table(
            ["method", "check", "value", "target", "result"],
            [[r["method"], r["check"], r["value"], r["target"], bool(r["passed"])] for r in checks],
        ),
        "",
    ]
    rows = []
    for n in names:
        t = tab["theta"][n]
        for i, p in enumerate(params):
            rows.append(
                [
                    n,
                    p,
                    float(t["mean"][i]),
                    float(t["std"][i]),
                    float(t["delta_mean_over_ref_std"][i]),
                    float(t["std_ratio"][i]),
                    None if theta_true is None else float(theta_true[i]),
                ]
            )
    md += [
        "## Parameters",
        "",
        markdown_table(
            ["method", "param", "mean", "std", f"Δmean/σ_{ref}", f"σ/σ_{ref}", "truth"], rows
        ),
        "",
    ]
    if len(params) > 1:
        pairs = [(i, j) for i in range(len(params)) for j in range(i)]
        md += [
            markdown_table(
                ["method"] + [f"corr({params[j]}, {params[i]})" for i, j in pairs],
                [[n] + [float(tab["theta"][n]["corr"][i, j]) for i, j in pairs] for n in names],
            ),
            "",
        ]
    md += [f"![theta contours]({os.path.basename(fig['theta'])})", ""]
    rows = []
    for n in names:
        k = tab["kappa"][n]
        rows.append(
            [
                n,
                k["corr_ref"],
                " ".join(f"{v:.3f}" for v in k["corr_ref_per_bin"]),
                k.get("corr_truth"),
                " ".join(f"{v:.3g}" for v in k.get("rms_residual_per_bin", [])) or None,
            ]
        )
    md += [
        "## Convergence (κ) maps",
        "",
        markdown_table(
            [
                "method",
                f"corr(mean, mean_{ref})",
                "per bin",
                "corr(mean, truth)",
                "rms(mean − truth) per bin",
            ],
            rows,
        ),
        "",
        f"![kappa maps]({os.path.basename(fig['maps'])})",
        "",
        f"![power spectra]({os.path.basename(fig['power'])})",
        "",
    ]
    if "r_ell" in fig:
        md += [f"![r(l)]({os.path.basename(fig['r_ell'])})", ""]
    md += [f"![one-point PDFs]({os.path.basename(fig['pdf'])})", ""]
    conv_keys = [
        "rhat_max",
        "ess_min",
        "wall_time_s",
        "time_per_effective_sample_s",
        "num_divergent",
    ]
    md += [
        "## Convergence and cost",
        "",
        markdown_table(
            ["method"] + conv_keys,
            [[n] + [tab["convergence"][n].get(k) for k in conv_keys] for n in names],
        ),
        "",
    ]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(md))
    summary = {
        "quality_checks": [
            {k: (bool(v) if k == "passed" else v) for k, v in r.items()} for r in checks
        ],
        "convergence": tab["convergence"],
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        dump_json(summary, fh, indent=2)  # strict JSON: NaN -> null
    return path


def write_calibration_report(out_dir, summary: dict, *, title="Calibration", notes=None) -> str:
    """report.md + tarp.png + mira.png + calibration.json for `calibration_summary` output."""
    os.makedirs(out_dir, exist_ok=True)
    tarp = {k: v["tarp"] for k, v in summary.items()}
    mira = {k: v["mira"] for k, v in summary.items()}
    plots.plot_tarp(tarp, os.path.join(out_dir, "tarp.png"))
    plots.plot_mira(mira, os.path.join(out_dir, "mira.png"))
    n_sims = len(next(iter(mira.values())).scores)
    rows = []
    for k in summary:
        t, m = tarp[k], mira[k]
        inside = float(np.mean((t.ecp_low <= t.alpha) & (t.alpha <= t.ecp_high)))
        rows.append([k, m.score, m.error, m.expected, t.atc, t.ks_statistic, t.ks_pvalue, inside])
    md = [
        f"# {title}",
        "",
        f"{n_sims} simulated observations with known truth.",
        "",
        markdown_table(
            [
                "block",
                "MIRA",
                "± (bootstrap)",
                "MIRA expected",
                "TARP ATC",
                "TARP KS",
                "KS p-value",
                "diagonal inside band (fraction of α)",
            ],
            rows,
        ),
        "",
        "MIRA: 2/3 for a calibrated posterior (exactly (2N+3)/(3N+6) with N counted draws); "
        "lower = over-confident or biased, higher = under-confident. TARP: ATC > 0 "
        "under-confident, < 0 over-confident.",
        "",
        "![TARP](tarp.png)",
        "",
        "![MIRA](mira.png)",
        "",
    ]
    if notes:
        md += [notes, ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as fh:
        fh.write("\n".join(md))
    data = {
        k: {
            "mira": mira[k].score,
            "mira_error": mira[k].error,
            "mira_expected": mira[k].expected,
            "tarp_atc": tarp[k].atc,
            "tarp_ks": tarp[k].ks_statistic,
            "tarp_ks_pvalue": tarp[k].ks_pvalue,
            "tarp_alpha": tarp[k].alpha.tolist(),
            "tarp_ecp": tarp[k].ecp.tolist(),
        }
        for k in summary
    }
    with open(os.path.join(out_dir, "calibration.json"), "w") as fh:
        dump_json(data, fh, indent=2)
    return path
