"""Calibration (TARP, MIRA) of the shipped prior's posterior samplers over K simulated observations.

    python benchmarks/calibration_shipped.py --num-obs 200 --num-draws 64 --method langevin

Uses the demo's sampler settings (docs/sampling.md); writes
benchmarks/results/calibration_<method>[_<mmps covariance>]/
(report.md, TARP and MIRA figures) and prints the summary. The draws are saved after every
observation (progress_<K>x<M>.npz, not in git); rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax

from numpyro_diffprior.demo import FULL, diffusion_guidance
from numpyro_diffprior.diagnostics.calibrate import run_calibration
from numpyro_diffprior.diagnostics.calibration_samplers import LazySamplerFn, pretrained_sampler_fn
from numpyro_diffprior.diagnostics.report import write_calibration_report

SETTINGS = {
    "langevin": dict(
        sigma_max=FULL.langevin_sigma_max,
        num_levels=FULL.langevin_levels,
        num_steps_per_level=FULL.langevin_steps_per_level,
    ),
    "diffusion": dict(
        guidance=FULL.diffusion_guidance,
        sampler=FULL.diffusion_sampler,
        num_steps=FULL.diffusion_steps,
        num_corrector_steps=FULL.diffusion_corrector_steps,
        sigma_max=FULL.diffusion_sigma_max,
        mmps_covariance=FULL.diffusion_mmps_covariance,
        guidance_clip=FULL.diffusion_guidance_clip,
        cg_maxiter=FULL.diffusion_cg_maxiter,
    ),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num-obs", type=int, default=200)
    p.add_argument("--num-draws", type=int, default=64)
    p.add_argument("--method", choices=sorted(SETTINGS), default="langevin")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--mmps-covariance",
        choices=("cross", "kappa", "joint"),
        default=None,
        help="diffusion only: override the demo's MMPS covariance blocks",
    )
    p.add_argument(
        "--workers",
        default="auto",
        help="processes sampling observations in parallel (auto: one per CPU core on a CPU)",
    )
    p.add_argument("--out", default=None, help="output directory (default: see above)")
    args = p.parse_args(argv)
    settings = dict(SETTINGS[args.method])
    name = f"calibration_{args.method}"
    if args.method == "diffusion":
        settings["mmps_covariance"] = args.mmps_covariance or settings["mmps_covariance"]
        name += f"_{settings['mmps_covariance']}"
    kwargs = dict(settings)  # `settings` also labels the run (resuming needs the same label)
    if args.method == "diffusion":
        guidance = {"diffusion_mmps_covariance": kwargs.pop("mmps_covariance")}
        guidance.update(diffusion_guidance_clip=kwargs.pop("guidance_clip"),
                        diffusion_cg_maxiter=kwargs.pop("cg_maxiter"))  # fmt: skip
        kwargs["guidance"] = diffusion_guidance({**FULL, **guidance})
    sampler_fn = LazySamplerFn(
        pretrained_sampler_fn,
        model="lsst-y10-coarse",
        num_draws=args.num_draws,
        method=args.method,
        chunk_size=args.num_draws,
        **kwargs,
    )
    out = pathlib.Path(args.out or pathlib.Path(__file__).parent / "results" / name)
    out.mkdir(parents=True, exist_ok=True)
    result = run_calibration(
        jax.random.key(args.seed),
        "lsst-y10-coarse",
        sampler_fn,
        args.num_obs,
        seed=args.seed,
        progress_file=out / f"progress_{args.num_obs}x{args.num_draws}.npz",
        run_label=json.dumps(settings, sort_keys=True),
        num_workers=args.workers,
    )
    notes = (
        f"{args.num_obs} observations (theta from the prior), {args.num_draws} draws each, "
        f"sampler {args.method} with {settings}; wall time "
        f"{result['wall_time_s']:.0f} s."
    )
    report = write_calibration_report(out, result["summary"], notes=notes)
    summary = {
        block: {
            "mira": float(v["mira"].score),
            "mira_error": float(v["mira"].error),
            "tarp_atc": float(v["tarp"].atc),
            "tarp_ks": float(v["tarp"].ks_statistic),
        }
        for block, v in result["summary"].items()
    }
    (out / "summary_numbers.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"report: {report}")


if __name__ == "__main__":
    main()
