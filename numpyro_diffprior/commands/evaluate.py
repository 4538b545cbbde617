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
    parser.add_argument(
        "--idata", nargs="+", required=True, help="two or more InferenceData .nc files"
    )
    parser.add_argument("--names", nargs="+", default=None, help="method names (default: attrs)")
    parser.add_argument("--obs", default=None, help="observation .npz with the truth (optional)")
    parser.add_argument(
        "--reference",
        default=None,
        help="the method the others are measured against (default: nuts if present, else the "
        "first file's); printed at the start",
    )
    parser.add_argument("--preset", default=None, help="preset (default: from the files)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.set_defaults(func=run)
    return parser


def run(args) -> int:
    from numpyro_diffprior.observations import check_output_path, load_observation

    # Every input is checked before arviz and matplotlib are imported.
    if len(args.idata) < 2:
        raise ValueError(
            f"--idata needs two or more InferenceData files to compare, got {len(args.idata)} "
            f"({args.idata[0]}); add the reference posterior (e.g. NUTS from `baseline`)"
        )
    if args.names is not None and len(args.names) != len(args.idata):
        raise ValueError(f"--names has {len(args.names)} entries for {len(args.idata)} files")
    for path in args.idata:
        if not os.path.exists(path):
            raise FileNotFoundError(f"InferenceData file not found: {path}")
        if os.path.isdir(path):
            raise ValueError(f"--idata {path!r} is a directory, not an InferenceData .nc file")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; evaluate writes a directory")
    check_output_path(os.path.join(args.out, "report.md"), what="--out")
    truth = None
    if args.obs is not None:
        obs = load_observation(args.obs)
        truth = {k: obs[f"{k}_true"] for k in ("theta", "kappa") if obs[f"{k}_true"] is not None}

    import arviz as az

    from numpyro_diffprior.diagnostics.report import write_report

    idatas, sources = {}, {}
    for i, path in enumerate(args.idata):
        try:
            idata = az.from_netcdf(path)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"--idata {path!r} is not a readable InferenceData file: {err}"
            ) from None
        if args.names is not None:
            name = args.names[i]
        else:
            name = str(
                idata.posterior.attrs.get("method", os.path.splitext(os.path.basename(path))[0])
            )
        if name in idatas:
            name = f"{name}_{i}"
        idatas[name], sources[name] = idata, path
    reference = args.reference
    if reference is None:
        reference = "nuts" if "nuts" in idatas else next(iter(idatas))
    if reference not in idatas:
        raise ValueError(f"--reference {reference!r} is not one of the methods {list(idatas)}")
    print(f"reference: {reference} ({sources[reference]}); compared: "
          + ", ".join(f"{n} ({sources[n]})" for n in idatas if n != reference))  # fmt: skip
    path = write_report(
        args.out, idatas, truth=truth or None, preset=args.preset, reference=reference
    )
    print(f"wrote {path}")
    return 0
