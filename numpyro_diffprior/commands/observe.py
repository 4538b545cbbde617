"""`numpyro-diffprior observe`: simulate one shear observation into an `.npz`.

    numpyro-diffprior observe --preset lsst-y10-coarse --theta fiducial --out obs.npz
    numpyro-diffprior sample --obs obs.npz --out posterior.nc

The file is `observations.save_observation`'s format (shear, preset, mask, noise_std and the
truth theta_true, kappa_true), drawn by `observations.simulate_observation` from the log-normal
field-level model, and written atomically: an interrupted run leaves no partial file.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["add_parser", "run", "parse_theta", "parse_mask", "parse_noise_std"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "observe",
        help="simulate one shear observation into an .npz (the samplers' input)",
        description=(
            "Draw theta (fiducial, from the prior, or given), a log-normal convergence map and "
            "its noisy shear for --preset, and write the observation .npz that `sample`, "
            "`baseline` and `evaluate` read (observations.save_observation's format, with the "
            "truth). Example: numpyro-diffprior observe --preset tiny --out obs.npz"
        ),
    )
    parser.add_argument("--preset", default="lsst-y10-coarse", help="preset name")
    parser.add_argument(
        "--theta",
        default="fiducial",
        help="'fiducial' (default), 'prior' (a draw from the prior), or the preset's parameter "
        "values, comma-separated in its order (e.g. 0.3,0.8 for Omega_c,sigma_8)",
    )
    parser.add_argument(
        "--mask",
        default="none",
        help="'none' (default: every pixel observed), 'random-holes' (square holes over ~10%% "
        "of the field) or a .npy file of booleans (N,N), (C,N,N) or (C,2,N,N), True = observed",
    )
    parser.add_argument(
        "--noise-std",
        default=None,
        help="shape-noise std per pixel: one positive value, or one per tomographic bin "
        "(comma-separated); default: the preset's survey",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--out", required=True, help="output observation file (.npz)")
    parser.set_defaults(func=run)
    return parser


def _floats(text, option):
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated numbers, got {text!r}") from None


def parse_theta(text, preset):
    """'fiducial', 'prior' (-> None) or P comma-separated values of the preset's parameters."""
    if text in ("fiducial", "prior"):
        return None if text == "prior" else "fiducial"
    values = _floats(text, "--theta")
    if len(values) != preset.n_params:
        raise ValueError(
            f"--theta needs {preset.n_params} values ({','.join(preset.param_names)}) for preset "
            f"{preset.name!r}, or 'fiducial' or 'prior'; got {len(values)}: {text!r}"
        )
    if not all(map(_finite, values)):
        raise ValueError(f"--theta values must be finite, got {text!r}")
    return values


def _finite(x) -> bool:
    return x == x and abs(x) != float("inf")


def parse_mask(text, preset, seed):
    """None, a random-holes mask, or the boolean array of a .npy file."""
    import numpy as np

    from numpyro_diffprior.observations import random_holes_mask

    if text in (None, "none"):
        return None
    if text == "random-holes":
        return random_holes_mask(preset.npix, seed)
    if not os.path.exists(text):
        raise FileNotFoundError(
            f"--mask {text!r}: no such file (use 'none', 'random-holes' or a .npy file)"
        )
    try:
        mask = np.load(text, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"--mask {text!r} is not a readable .npy array: {err}") from None
    if not isinstance(mask, np.ndarray):
        raise ValueError(f"--mask {text!r} must be a .npy array, not an .npz archive")
    return mask


def parse_noise_std(text):
    if text is None:
        return None
    values = _floats(text, "--noise-std")
    return values[0] if len(values) == 1 else values


def _check_out(path):
    import zipfile

    from numpyro_diffprior.observations import check_output_path

    check_output_path(path, what="--out")
    if not str(path).endswith(".npz"):
        raise ValueError(f"--out must name an .npz file, got {path!r}")
    if os.path.exists(path) and not zipfile.is_zipfile(path):
        raise ValueError(
            f"--out {path!r} exists and is not an .npz archive; refusing to overwrite it"
        )


def run(args) -> int:
    import numpy as np

    from numpyro_diffprior.observations import check_observation

    # Every input is checked before jax is imported and anything is simulated.
    _check_out(args.out)
    noise_std = parse_noise_std(args.noise_std)
    from numpyro_diffprior.presets import get_preset

    preset = get_preset(args.preset)
    theta = parse_theta(args.theta, preset)
    mask = parse_mask(args.mask, preset, args.seed)
    _, mask, noise = check_observation(np.zeros(preset.shear_shape, np.float32), mask, noise_std)

    import jax

    from numpyro_diffprior.observations import save_observation, simulate_observation

    obs = simulate_observation(
        jax.random.key(args.seed), preset, theta=theta, mask=mask, noise_std=noise
    )
    path = save_observation(
        args.out,
        obs["shear"],
        preset=preset,
        mask=obs["mask"],
        noise_std=obs["noise_std"],
        theta_true=obs["theta_true"],
        kappa_true=obs["kappa_true"],
    )
    truth = ", ".join(
        f"{n} = {v:.4g}" for n, v in zip(preset.param_names, obs["theta_true"], strict=True)
    )
    masked = 0.0 if mask is None else 1 - float(np.mean(mask))
    print(
        f"wrote {path}: preset {preset.name!r}, shear {obs['shear'].shape}, truth {truth}, "
        f"{masked:.0%} of pixels masked (seed {args.seed})"
    )
    print(f"next: numpyro-diffprior sample --obs {path} --out posterior.nc")
    return 0
