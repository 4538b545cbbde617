"""Markdown report of `bench_nuts_jade.py` from its progress.json (also a killed run's).

Usage: python benchmarks/nuts_jade_report.py PROGRESS_JSON [OUT_MD]
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np

REF_CHAINS, REF_ITERATIONS = 10, 3500  # JADE's NUTS reference


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"


def _pct(x, qs=(10, 50, 90)) -> str:
    return " / ".join(f"{np.percentile(x, q):.0f}" for q in qs)


def _phase_rows(name: str, steps, step_size, diverging) -> list[tuple[str, str]]:
    if steps.size == 0:
        return [(f"{name}: iterations", "0")]
    depth = np.ceil(np.log2(steps + 1.0))
    return [
        (f"{name}: iterations per chain", f"{steps.shape[1]}"),
        (
            f"{name}: leapfrog steps per iteration, mean (10 / 50 / 90 %)",
            f"{steps.mean():.1f} ({_pct(steps)})",
        ),
        (f"{name}: tree depth, mean (10 / 50 / 90 %)", f"{depth.mean():.2f} ({_pct(depth)})"),
        (
            f"{name}: step size, last (mean)",
            f"{step_size[:, -1].mean():.4g} ({step_size.mean():.4g})",
        ),
        (f"{name}: divergences", f"{int(diverging.sum())}"),
    ]


def report(data: dict) -> str:
    """The markdown table of a run's progress (`bench_nuts_jade.py`'s progress.json)."""
    steps = np.asarray(data["n_steps"], dtype=float).reshape(data["chains"], -1)
    size = np.asarray(data["step_size"], dtype=float).reshape(steps.shape)
    div = np.asarray(data["diverging"]).reshape(steps.shape)
    w = data["num_warmup"]
    n_draws = max(steps.shape[1] - w, 0)
    state = "finished" if data.get("finished") else "**in progress / interrupted**"
    rows = [
        ("preset, latent dimensions", f"{data['preset']}, {data['dim']:,}"),
        ("machine", data["machine"]),
        (
            "run",
            f"{state}: {data['chains']} chain(s), warmup {w}, max tree depth "
            f"{data['max_tree_depth']}, budget {data['budget_s']:.0f} s, elapsed "
            f"{data['elapsed_s']:.0f} s; load average {data['loadavg_start']:.1f} at the start, "
            f"{data['loadavg'][0]:.1f} now (1 min)",
        ),
        (
            "value+grad of the potential, 1 chain (median, min)",
            f"{data['grad_ms']:.1f} ms, {data['grad_ms_min']:.1f} ms "
            f"(compile {data['grad_compile_s']:.1f} s)",
        ),
        ("warmup wall time (incl. compile and init)", _hours(data["warmup_time_s"])),
        ("sampling wall time", _hours(data["sampling_time_s"])),
    ]
    rows += _phase_rows("warmup", steps[:, :w], size[:, :w], div[:, :w])
    rows += _phase_rows("sampling", steps[:, w:], size[:, w:], div[:, w:])
    grads_warm, grads_samp = steps[:, :w].sum(), steps[:, w:].sum()
    ms = data["grad_ms"]
    if grads_samp > 0:
        ms = 1e3 * data["sampling_time_s"] / grads_samp  # chains run one after the other
        rows.append(("time per gradient while sampling (in NUTS)", f"{ms:.1f} ms"))
    ess = data.get("ess")
    if ess is None and data.get("theta") is not None and n_draws >= 4:
        from numpyro.diagnostics import effective_sample_size

        theta = np.asarray(data["theta"], dtype=np.float64)
        ess = np.atleast_1d(effective_sample_size(theta)).tolist()
    rhat = None
    if data["chains"] > 1 and data.get("theta") is not None and n_draws >= 4:
        from numpyro.diagnostics import split_gelman_rubin

        theta = np.asarray(data["theta"], dtype=np.float64)
        rhat = np.atleast_1d(split_gelman_rubin(theta)).tolist()
    proj = []
    warm_done = steps[:, :w].shape[1]
    per_iter = basis = None
    if grads_samp > 0:
        per_iter, basis = grads_samp / (data["chains"] * n_draws), "the sampling rate"
    elif warm_done:  # no draws yet: the late warmup's rate
        late = steps[:, max(0, warm_done - 20) : warm_done]
        per_iter, basis = late.mean(), f"the last {late.shape[1]} warmup iterations' rate"
    if per_iter:
        warm_per_iter = grads_warm / (data["chains"] * warm_done) if warm_done else 0.0
        ref = REF_CHAINS * REF_ITERATIONS * per_iter * ms / 1e3
        proj.append(
            (
                f"**{REF_CHAINS} chains x {REF_ITERATIONS:,} iterations** at {basis} "
                f"({per_iter:.0f} gradients per iteration x {ms:.3g} ms)",
                f"**{_hours(ref)}** on one core; {_hours(ref / REF_CHAINS)} with one core "
                f"per chain; + warmup ({warm_per_iter:.0f} gradients per iteration so far: "
                f"{_hours(w * warm_per_iter * ms / 1e3)} per chain of {w})",
            )
        )
    if ess is not None and grads_samp > 0:
        names = data.get("param_names") or [f"p{i}" for i in range(len(ess))]
        rows.append(
            ("ESS per parameter (" + ", ".join(names) + ")", ", ".join(f"{e:.1f}" for e in ess))
        )
        if rhat is not None:
            rows.append(("split R-hat per parameter", ", ".join(f"{r:.3f}" for r in rhat)))
        ess_min = float(np.min(ess))
        per_grad = ess_min / grads_samp
        rows.append(
            (
                "min ESS over theta / gradients while sampling",
                f"{ess_min:.1f} / {grads_samp:,.0f} = **{per_grad:.2e} per gradient** "
                f"({n_draws} draws per chain: uncertain by a factor ~2, see below)",
            )
        )
        for target in (100, 1000):
            need = target / max(per_grad, 1e-300)
            proj.append(
                (
                    f"ESS {target} (min over theta), sampling only",
                    f"{need:,.0f} gradients = {_hours(need * ms / 1e3)} on one core",
                )
            )
    text = f"# NUTS field-level baseline on {data['preset']}\n\n"
    text += "| quantity | value |\n|---|---|\n"
    text += "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n"
    if proj:
        text += "\n## Projected cost on this machine\n\n| run | wall time |\n|---|---|\n"
        text += "\n".join(f"| {k} | {v} |" for k, v in proj) + "\n"
    chains = (
        "one short chain, whose autocorrelation estimate is noisy (a factor ~2 either way for "
        "a few hundred draws or fewer) and cannot show non-convergence (no R-hat with one chain)"
        if data["chains"] == 1
        else f"{data['chains']} short chains, whose autocorrelation estimate is noisy for a "
        "few hundred draws per chain"
    )
    text += (
        f"\nCaveats: the ESS comes from {chains}; the projections scale the measured "
        "gradients per iteration and time per gradient linearly. Times are pessimistic when "
        "the load average above exceeds the number of cores.\n"
        f"\nCommand: `{data['command']}`\n"
    )
    return text


if __name__ == "__main__":
    progress = json.loads(pathlib.Path(sys.argv[1]).read_text())
    out = report(progress)
    if len(sys.argv) > 2:
        pathlib.Path(sys.argv[2]).write_text(out)
    print(out)
