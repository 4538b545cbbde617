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


def prior_distribution(name: str) -> dist.Distribution:
    """The prior of one parameter (DESIGN §2.1)."""
    if name == "Omega_c":
        return dist.TruncatedNormal(0.2664, 0.2, low=0.0)
    if name == "Omega_b":
        return dist.Normal(0.0492, 0.006)
    if name == "sigma_8":
        return dist.Normal(0.831, 0.14)
    if name == "h":
        return dist.Normal(0.6727, 0.063)
    if name == "n_s":
        return dist.Normal(0.9645, 0.08)
    if name == "w_0":
        return dist.TruncatedNormal(-1.0, 0.9, low=-2.0, high=-0.3)
    raise ValueError(f"unknown parameter {name!r}; valid: {list(PARAMETER_NAMES)}")


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
