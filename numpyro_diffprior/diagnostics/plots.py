"""Figures (PNG, matplotlib Agg): the only module of the package that imports matplotlib.

Each function takes plain arrays or the tables of `diagnostics.compare` / `calibration`, writes
one PNG to `path` and returns the path.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402

__all__ = [
    "plot_theta_contours",
    "plot_kappa_maps",
    "plot_power_spectra",
    "plot_cross_correlation",
    "plot_one_point_pdfs",
    "plot_tarp",
    "plot_mira",
]

_COLORS = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]


def _save(fig, path):
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return str(path)


def _levels(h, probs=(0.95, 0.68)):
    """Density thresholds enclosing the given probability masses of a 2D histogram."""
    flat = np.sort(h.ravel())[::-1]
    cum = np.cumsum(flat) / max(flat.sum(), 1e-300)
    levels = [flat[min(np.searchsorted(cum, p), len(flat) - 1)] for p in probs]
    return np.unique(levels)


def plot_theta_contours(samples: dict, param_names, path, *, truth=None, bins=40, smooth=1.0):
    """Corner plot of {method: (S, P)} draws overlaid: 1D histograms, 68/95% 2D contours."""
    p = len(param_names)
    allv = np.concatenate([np.asarray(s) for s in samples.values()])
    lo, hi = np.percentile(allv, 0.2, axis=0), np.percentile(allv, 99.8, axis=0)
    pad = 0.1 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    fig, axes = plt.subplots(p, p, figsize=(2.8 * p + 0.6, 2.8 * p + 0.6), squeeze=False)
    for i in range(p):
        for j in range(p):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            for k, (name, s) in enumerate(samples.items()):
                s = np.asarray(s)
                color = _COLORS[k % len(_COLORS)]
                if i == j:
                    ax.hist(
                        s[:, i],
                        bins=bins,
                        range=(lo[i], hi[i]),
                        density=True,
                        histtype="step",
                        color=color,
                        label=name,
                    )
                else:
                    h, xe, ye = np.histogram2d(
                        s[:, j], s[:, i], bins=bins, range=[(lo[j], hi[j]), (lo[i], hi[i])]
                    )
                    h = gaussian_filter(h, smooth)
                    xc, yc = 0.5 * (xe[1:] + xe[:-1]), 0.5 * (ye[1:] + ye[:-1])
                    levels = _levels(h)
                    if len(levels) >= 1 and h.max() > 0:
                        ax.contour(
                            xc, yc, h.T, levels=list(levels) + [h.max() * 1.0001], colors=color
                        )
            if truth is not None:
                if i == j:
                    ax.axvline(truth[i], color="k", ls="--", lw=1)
                else:
                    ax.plot(truth[j], truth[i], "k+", ms=10)
            if i == p - 1:
                ax.set_xlabel(param_names[j])
            if j == 0 and i > 0:
                ax.set_ylabel(param_names[i])
    axes[0, 0].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    return _save(fig, path)


def plot_kappa_maps(means: dict, stds: dict, path, *, truth=None):
    """Rows: tomographic bins; columns: truth, posterior mean per method, std per method."""
    names = list(means)
    n_bins = np.asarray(next(iter(means.values()))).shape[0]
    cols = [("truth", truth)] if truth is not None else []
    cols += [(f"mean {n}", means[n]) for n in names] + [(f"std {n}", stds[n]) for n in names]
    fig, axes = plt.subplots(
        n_bins, len(cols), figsize=(2.2 * len(cols), 2.1 * n_bins), squeeze=False
    )
    for c in range(n_bins):
        ref = truth[c] if truth is not None else np.asarray(means[names[0]])[c]
        vmin, vmax = np.percentile(ref, [1, 99])
        smax = max(float(np.max(np.asarray(stds[n])[c])) for n in names)
        for k, (title, maps) in enumerate(cols):
            ax = axes[c, k]
            is_std = title.startswith("std")
            im = ax.imshow(
                np.asarray(maps)[c],
                origin="lower",
                cmap="magma" if is_std else "RdBu_r",
                vmin=0 if is_std else vmin,
                vmax=smax if is_std else vmax,
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_title(title, fontsize=8)
            if k == 0:
                ax.set_ylabel(f"bin {c + 1}")
            if k == len(cols) - 1 or (not is_std and k == len(cols) - len(names) - 1):
                fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_power_spectra(ell, power: dict, path, *, truth=None):
    """Lower triangle of auto/cross l C_l: median and 16-84% band of draws, truth as points."""
    n_bins = next(iter(power.values()))["median"].shape[0]
    fig, axes = plt.subplots(
        n_bins, n_bins, figsize=(2.4 * n_bins + 0.5, 2.0 * n_bins + 0.5), squeeze=False, sharex=True
    )
    for i in range(n_bins):
        for j in range(n_bins):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            for k, (name, tab) in enumerate(power.items()):
                color = _COLORS[k % len(_COLORS)]
                ax.plot(ell, ell * tab["median"][i, j], color=color, label=name)
                ax.fill_between(
                    ell, ell * tab["low"][i, j], ell * tab["high"][i, j], color=color, alpha=0.25
                )
            if truth is not None:
                ax.plot(ell, ell * truth[i, j], "k.", label="truth")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            if i == j:
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"({i + 1},{j + 1})", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel(r"$\ell$")
    axes[0, 0].set_ylabel(r"$\ell C_\ell$")
    axes[0, 0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.05, 1.0))
    return _save(fig, path)


def plot_cross_correlation(ell, r: dict, path):
    """r(l) of each posterior mean with the truth, one panel per bin."""
    n_bins = next(iter(r.values())).shape[0]
    fig, axes = plt.subplots(1, n_bins, figsize=(2.6 * n_bins, 2.6), squeeze=False, sharey=True)
    for c in range(n_bins):
        ax = axes[0, c]
        for k, (name, rr) in enumerate(r.items()):
            ax.plot(ell, rr[c], "o-", ms=3, color=_COLORS[k % len(_COLORS)], label=name)
        ax.axhline(1.0, color="k", lw=0.5)
        ax.set_xscale("log")
        ax.set_ylim(-0.2, 1.05)
        ax.set_title(f"bin {c + 1}", fontsize=9)
        ax.set_xlabel(r"$\ell$")
    axes[0, 0].set_ylabel(r"$r(\ell)$ mean vs truth")
    axes[0, -1].legend(fontsize=7)
    return _save(fig, path)


def plot_one_point_pdfs(edges, pdfs: dict, path):
    """One-point PDFs per bin of pooled posterior draws (and of the truth if in `pdfs`)."""
    n_bins = edges.shape[0]
    fig, axes = plt.subplots(1, n_bins, figsize=(2.6 * n_bins, 2.6), squeeze=False)
    for c in range(n_bins):
        ax = axes[0, c]
        centers = 0.5 * (edges[c, 1:] + edges[c, :-1])
        for k, (name, pdf) in enumerate(pdfs.items()):
            style = dict(color="k", ls="--") if name == "truth" else dict(color=_COLORS[k % 7])
            ax.plot(centers, np.maximum(pdf[c], 1e-3 * pdf[c].max()), label=name, **style)
        ax.set_yscale("log")
        ax.set_title(f"bin {c + 1}", fontsize=9)
        ax.set_xlabel(r"$\kappa$")
    axes[0, -1].legend(fontsize=7)
    return _save(fig, path)


def plot_tarp(results: dict, path):
    """TARP expected coverage vs credibility for {label: TarpResult}, with bootstrap bands."""
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for k, (label, res) in enumerate(results.items()):
        color = _COLORS[k % len(_COLORS)]
        ax.plot(res.alpha, res.ecp, color=color, label=f"{label} (ATC {res.atc:+.3f})")
        ax.fill_between(res.alpha, res.ecp_low, res.ecp_high, color=color, alpha=0.25)
    ax.set_xlabel("credibility level")
    ax.set_ylabel("expected coverage")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_mira(results: dict, path):
    """MIRA mean scores with bootstrap errors for {label: MiraResult}, and the 2/3 reference."""
    labels = list(results)
    fig, ax = plt.subplots(figsize=(1.4 * len(labels) + 2.0, 3.2))
    x = np.arange(len(labels))
    ax.errorbar(
        x,
        [results[k].score for k in labels],
        yerr=[results[k].error for k in labels],
        fmt="o",
        capsize=4,
    )
    ax.axhline(2.0 / 3.0, color="k", ls="--", lw=1, label="2/3 (calibrated)")
    ax.set_xticks(x, labels)
    ax.set_ylabel("MIRA score")
    ax.legend(fontsize=8)
    return _save(fig, path)
