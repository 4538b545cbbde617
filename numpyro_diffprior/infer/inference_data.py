"""Conversion of posterior draws to ArviZ InferenceData with the package's conventions.

Every sampler (diffusion, annealed Langevin, NUTS) returns InferenceData built here, so
that variable names, dims and coords are identical (docs/design.md §4):
`theta` dims ("param",), `kappa` dims ("zbin", "y", "x"), `shear` dims
("zbin", "component", "y", "x") with component ("g1", "g2").
"""

from __future__ import annotations

import arviz as az
import numpy as np

from numpyro_diffprior.atomic import atomic_write

__all__ = ["to_inference_data", "split_into_chains", "iid_num_chains", "save_inference_data"]


def save_inference_data(idata, path) -> str:
    """Write `idata` to netCDF `path` atomically (`atomic.atomic_write`). Returns the path."""
    return atomic_write(path, idata.to_netcdf)


def iid_num_chains(num_draws: int) -> int:
    """Chains that `num_draws` i.i.d. draws are stored as: the largest of 4, 3, 2 that divides
    `num_draws` (so R-hat is defined and no draw is dropped), else 1 chain of all draws."""
    return next((c for c in (4, 3, 2) if num_draws % c == 0 and num_draws >= c), 1)


def split_into_chains(draws, num_chains: int | None = None):
    """Reshape i.i.d. draws (n, ...) into (num_chains, n // num_chains, ...); `num_chains`
    must divide n (default: `iid_num_chains(n)`), so that no draw is dropped.

    Diffusion draws are independent; storing them as several chains keeps R-hat defined.
    """
    draws = np.asarray(draws)
    n = draws.shape[0]
    num_chains = iid_num_chains(n) if num_chains is None else num_chains
    if num_chains < 1 or n < num_chains or n % num_chains:
        raise ValueError(f"{n} draws do not split into {num_chains} equal chains")
    return draws.reshape((num_chains, n // num_chains) + draws.shape[1:])


def to_inference_data(
    theta,
    kappa,
    *,
    param_names,
    shear_obs=None,
    sample_stats: dict | None = None,
    attrs: dict | None = None,
    truth: dict | None = None,
    log_likelihood: dict | None = None,
    deterministic: dict | None = None,
) -> az.InferenceData:
    """Build InferenceData from draws shaped (chain, draw, P) and (chain, draw, C, N, N).

    sample_stats: arrays shaped (chain, draw, ...) named by what they are (never a fake `lp`).
    truth: optional {"theta": (P,), "kappa": (C, N, N)} stored as constant_data.
    attrs: free-form metadata (preset, method, steps, wall time, ...); values are stringified
    when they are not netCDF-serialisable scalars.
    log_likelihood: pointwise log-likelihoods (chain, draw, ...) of observed sites, e.g.
    `shear` (chain, draw, zbin, component, y, x), stored as the `log_likelihood` group that
    `az.loo` / `az.waic` read.
    deterministic: further posterior variables (chain, draw, ...), e.g. the model's
    `numpyro.deterministic` sites; ArviZ names the dims of those without known dims.
    """
    theta = np.asarray(theta)
    kappa = np.asarray(kappa)
    if theta.ndim != 3 or theta.shape[-1] != len(param_names):
        raise ValueError(
            f"theta must have shape (chain, draw, {len(param_names)}), got {theta.shape}"
        )
    if kappa.ndim != 5 or kappa.shape[:2] != theta.shape[:2]:
        raise ValueError(
            f"kappa must have shape (chain, draw, zbin, y, x) matching theta's (chain, draw) "
            f"{theta.shape[:2]}, got {kappa.shape}"
        )
    n_bins, ny, nx = kappa.shape[2:]
    coords = {
        "param": list(param_names),
        "zbin": np.arange(n_bins),
        "y": np.arange(ny),
        "x": np.arange(nx),
        "component": ["g1", "g2"],
    }
    dims = {
        "theta": ["param"],
        "kappa": ["zbin", "y", "x"],
        "shear": ["zbin", "component", "y", "x"],
        "theta_true": ["param"],
        "kappa_true": ["zbin", "y", "x"],
        "mask": ["zbin", "component", "y", "x"],
    }
    observed = None
    if shear_obs is not None:
        observed = {"shear": np.asarray(shear_obs)}
    constant = None
    if truth:
        constant = {}
        if "theta" in truth:
            constant["theta_true"] = np.asarray(truth["theta"])
        if "kappa" in truth:
            constant["kappa_true"] = np.asarray(truth["kappa"])
        if "mask" in truth and truth["mask"] is not None:
            constant["mask"] = np.asarray(truth["mask"]).astype(np.int8)
    posterior = {"theta": theta, "kappa": kappa}
    for name, value in (deterministic or {}).items():
        posterior.setdefault(name, np.asarray(value))
    lik = {k: np.asarray(v) for k, v in (log_likelihood or {}).items()} or None
    idata = az.from_dict(
        posterior=posterior,
        log_likelihood=lik,
        sample_stats={k: np.asarray(v) for k, v in (sample_stats or {}).items()} or None,
        observed_data=observed,
        constant_data=constant,
        coords=coords,
        dims=dims,
    )
    clean = {}
    for key, value in (attrs or {}).items():
        clean[key] = value if isinstance(value, int | float | str) else str(value)
    for group in idata.groups():
        getattr(idata, group).attrs.update(clean)
    return idata
