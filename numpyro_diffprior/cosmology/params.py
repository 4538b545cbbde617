"""Cosmological parameters, their priors and fiducial values (wCDM, sbi_lens / JADE)."""

from __future__ import annotations

import jax.numpy as jnp
import numpyro.distributions as dist

__all__ = [
    "PARAMETER_NAMES",
    "FIDUCIAL",
    "prior_distribution",
    "prior_mean_std",
    "full_parameters",
]

PARAMETER_NAMES: tuple[str, ...] = ("Omega_c", "Omega_b", "sigma_8", "h", "n_s", "w_0")

FIDUCIAL: dict[str, float] = {
    "Omega_c": 0.2664,
    "Omega_b": 0.0492,
    "sigma_8": 0.831,
    "h": 0.6727,
    "n_s": 0.9645,
    "w_0": -1.0,
}


# (loc, scale, low, high) of each (truncated) normal prior, docs/design.md §2.1.
_PRIORS: dict[str, tuple[float, float, float, float]] = {
    "Omega_c": (0.2664, 0.2, 0.0, jnp.inf),
    "Omega_b": (0.0492, 0.006, -jnp.inf, jnp.inf),
    "sigma_8": (0.831, 0.14, -jnp.inf, jnp.inf),
    "h": (0.6727, 0.063, -jnp.inf, jnp.inf),
    "n_s": (0.9645, 0.08, -jnp.inf, jnp.inf),
    "w_0": (-1.0, 0.9, -2.0, -0.3),
}


def prior_distribution(name: str, low=None, high=None) -> dist.Distribution:
    """The prior of one parameter (docs/design.md §2.1); with `low` and `high` (an emulator box's
    edges, may be traced) it is further restricted to [low, high]."""
    if name not in _PRIORS:
        raise ValueError(f"unknown parameter {name!r}; valid: {list(PARAMETER_NAMES)}")
    loc, scale, lo, hi = _PRIORS[name]
    if low is not None or high is not None:
        lo = lo if low is None else jnp.maximum(lo, low)
        hi = hi if high is None else jnp.minimum(hi, high)
        return dist.TruncatedNormal(loc, scale, low=lo, high=hi)
    if lo == -jnp.inf and hi == jnp.inf:
        return dist.Normal(loc, scale)
    return dist.TruncatedNormal(
        loc, scale, low=None if lo == -jnp.inf else lo, high=None if hi == jnp.inf else hi
    )


def prior_mean_std(names) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Exact prior mean and std of each named parameter (used to normalise theta)."""
    dists = [prior_distribution(n) for n in names]
    mean = jnp.array([d.mean for d in dists])
    std = jnp.sqrt(jnp.array([d.variance for d in dists]))
    return mean, std


def full_parameters(theta, names) -> jnp.ndarray:
    """Fill a vector of the sampled parameters `names` to all six (others at fiducial).

    theta: (..., len(names)) -> (..., 6) in PARAMETER_NAMES order.
    """
    theta = jnp.asarray(theta)
    batch = theta.shape[:-1]
    cols = []
    for n in PARAMETER_NAMES:
        if n in names:
            cols.append(theta[..., list(names).index(n)])
        else:
            cols.append(jnp.full(batch, FIDUCIAL[n], dtype=theta.dtype))
    return jnp.stack(cols, axis=-1)
