"""`numpyro-diffprior evaluate`: compare posteriors of one observation; markdown report + PNGs."""

from __future__ import annotations

import argparse
import os

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="compare posteriors (InferenceData files) of one observation",
        description=(
            "Theta moments and contours, kappa mean/std maps, power spectra, r(l) and one-point "
            "PDFs of two or more posteriors; writes report.md, summary.json and PNG figures."
        ),
    )
    parser.add_argument("--idata", nargs="+", required=True, help="InferenceData .nc files")
    parser.add_argument("--names", nargs="+", default=None, help="method names (default: attrs)")
    parser.add_argument("--obs", default=None, help="observation .npz with the truth (optional)")
    parser.add_argument("--reference", default=None, help="reference method (default: nuts)")
    parser.add_argument("--preset", default=None, help="preset (default: from the files)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    import arviz as az

    from numpyro_diffprior.diagnostics.report import write_report
    from numpyro_diffprior.observations import load_observation

    if args.names is not None and len(args.names) != len(args.idata):
        raise ValueError(f"--names has {len(args.names)} entries for {len(args.idata)} files")
    idatas = {}
    for i, path in enumerate(args.idata):
        if not os.path.exists(path):
            raise FileNotFoundError(f"InferenceData file not found: {path}")
        idata = az.from_netcdf(path)
        if args.names is not None:
            name = args.names[i]
        else:
            name = str(
                idata.posterior.attrs.get("method", os.path.splitext(os.path.basename(path))[0])
            )
        if name in idatas:
            name = f"{name}_{i}"
        idatas[name] = idata
    truth = None
    if args.obs is not None:
        obs = load_observation(args.obs)
        truth = {k: obs[f"{k}_true"] for k in ("theta", "kappa") if obs[f"{k}_true"] is not None}
    path = write_report(
        args.out, idatas, truth=truth or None, preset=args.preset, reference=args.reference
    )
    print(f"wrote {path}")
    return 0
