"""Reading a user's NumPyro model with effect handlers (`seed`, `substitute`, `trace`).

A model usable by the diffusion samplers has exactly one `DiffusionPrior` sample site, no other
latent sample sites, and at least one observed site whose log-density depends on the prior value.
From it we build

- `log_likelihood(x_phys)`: the sum of the observed sites' log densities with the prior value
  substituted, a differentiable function of x (any differentiable likelihood works);
- `linear_gaussian(...)`: for observed sites that are (masked) Normals with a loc affine in x and a
  scale independent of x, the flat pieces (loc function, y, precision) used by the annealed and
  covariance-aware guidance methods. Masked pixels get precision 0 (never NaN arithmetic).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro import handlers

from numpyro_diffprior.prior import DiffusionPrior

__all__ = [
    "ModelInfo",
    "LinearGaussian",
    "inspect_model",
    "make_log_likelihood",
    "linear_gaussian",
    "make_site_values",
]


class ModelInfo(NamedTuple):
    prior_name: str
    prior: DiffusionPrior
    observed: tuple[str, ...]


class LinearGaussian(NamedTuple):
    """y = loc_fn(x_phys) + noise on the flat concatenation of the observed sites."""

    loc_fn: object  # callable x_phys (D,) -> (M,)
    y: jnp.ndarray  # (M,), 0 where unobserved
    precision: jnp.ndarray  # (M,), 1/scale^2 where observed, else 0


def _trace(model, prior_value_fn, model_kwargs):
    def substitute_fn(site):
        if site["type"] == "sample" and isinstance(site.get("fn"), DiffusionPrior):
            return prior_value_fn(site)
        return None

    seeded = handlers.seed(handlers.substitute(model, substitute_fn=substitute_fn), rng_seed=0)
    return handlers.trace(seeded).get_trace(**model_kwargs)


def inspect_model(model, model_kwargs, *, validate=True) -> ModelInfo:
    """Find the single DiffusionPrior site and the observed sites; raise ValueError otherwise."""
    tr = _trace(model, lambda site: site["fn"].offset(), model_kwargs)
    priors, observed, latent = [], [], []
    for name, site in tr.items():
        if site["type"] != "sample":
            continue
        if site["type"] == "sample" and isinstance(site.get("fn"), DiffusionPrior):
            priors.append(name)
        elif site["is_observed"]:
            observed.append(name)
        else:
            latent.append(name)
    if not priors:
        raise ValueError("the model has no DiffusionPrior sample site")
    if len(priors) > 1:
        raise ValueError(f"the model has {len(priors)} DiffusionPrior sites {priors}; need one")
    if latent:
        raise ValueError(
            f"latent sample sites {latent} besides the DiffusionPrior site are not supported"
        )
    if not observed:
        raise ValueError("the model has no observed sample site (pass the observation, obs=...)")
    info = ModelInfo(priors[0], tr[priors[0]]["fn"], tuple(observed))
    if validate:
        _validate(model, info, tr, model_kwargs)
    return info


def _site_log_prob(site):
    lp = site["fn"].log_prob(site["value"])
    if site.get("mask") is not None:
        lp = jnp.where(site["mask"], lp, 0.0)
    if site.get("scale") is not None:
        lp = site["scale"] * lp
    return jnp.sum(lp)


def make_log_likelihood(model, info: ModelInfo, model_kwargs, *, sites=None):
    """x_phys (D,) -> sum of the observed sites' log densities (or only `sites`)."""
    names = info.observed if sites is None else tuple(sites)

    def log_likelihood(x_phys):
        tr = _trace(model, lambda site: x_phys, model_kwargs)
        return sum(_site_log_prob(tr[name]) for name in names)

    return log_likelihood


def _pointwise_log_prob(site):
    """Per-element log density of an observed site, shaped like its value where the
    distribution allows (Normals, masked or not, `MaskedShearNormal`); unobserved (masked)
    elements contribute 0."""
    value, fn = site["value"], site["fn"]
    try:
        loc, scale, observed = _gaussian_parts(fn, value)
        safe = jnp.where(observed, scale, 1.0)
        lp = dist.Normal(loc, safe).log_prob(jnp.where(observed, value, loc))
        lp = jnp.where(observed, lp, 0.0)
    except ValueError:
        while isinstance(fn, dist.Independent):
            fn = fn.base_dist
        lp = fn.log_prob(value)
    if site.get("mask") is not None:
        lp = jnp.where(site["mask"], lp, 0.0)
    if site.get("scale") is not None:
        lp = site["scale"] * lp
    return lp


def make_site_values(model, info: ModelInfo, model_kwargs):
    """x_phys (D,) -> (pointwise log-likelihood {observed site: per-element array},
    {deterministic site: value}) of the model with the prior value substituted."""

    def site_values(x_phys):
        tr = _trace(model, lambda site: x_phys, model_kwargs)
        log_lik = {name: _pointwise_log_prob(tr[name]) for name in info.observed}
        det = {n: s["value"] for n, s in tr.items() if s["type"] == "deterministic"}
        return log_lik, det

    return site_values


def _validate(model, info, tr, model_kwargs):
    prior = info.prior
    for name in info.observed:
        site = tr[name]
        value, fn = site["value"], site["fn"]
        expected = tuple(fn.batch_shape) + tuple(fn.event_shape)
        if tuple(jnp.shape(value)) != expected:
            raise ValueError(
                f"observed site {name!r} has shape {tuple(jnp.shape(value))}, but its "
                f"distribution has shape {expected}"
            )
        try:
            _, _, observed = _gaussian_parts(fn, value)
            bad = observed & ~jnp.isfinite(value)
        except ValueError:
            bad = ~jnp.isfinite(value)
        if bool(jnp.any(bad)):
            raise ValueError(f"observed site {name!r} has NaN/inf values on observed pixels")
        log_lik = make_log_likelihood(model, info, model_kwargs, sites=[name])
        x0 = prior.offset()
        x1 = prior.from_normalized(jax.random.normal(jax.random.PRNGKey(1), (prior.dim,)))
        if not bool(jnp.isfinite(log_lik(x0))):
            raise ValueError(f"log-likelihood of observed site {name!r} is not finite")
        grads = [jax.grad(log_lik)(x) for x in (x0, x1)]
        if all(not bool(jnp.any(g != 0)) for g in grads):
            raise ValueError(
                f"observed site {name!r} does not depend on the DiffusionPrior site "
                f"{info.prior_name!r}"
            )


def _gaussian_parts(fn, value):
    """(loc, scale, observed) broadcast to value's shape, for (masked/independent) Normals."""
    observed = jnp.ones(jnp.shape(value), bool)
    while True:
        if isinstance(fn, dist.Independent | dist.ExpandedDistribution):
            fn = fn.base_dist
        elif isinstance(fn, dist.MaskedDistribution):
            observed = observed & jnp.asarray(fn._mask, bool)
            fn = fn.base_dist
        else:
            break
    if isinstance(fn, dist.Normal):
        loc, scale = fn.loc, fn.scale
    elif hasattr(fn, "observed") and hasattr(fn, "loc") and hasattr(fn, "scale"):
        loc, scale = fn.loc, fn.scale  # simulator.model.MaskedShearNormal
        observed = observed & fn.observed
    else:
        raise ValueError(
            f"observed distribution {type(fn).__name__} is not a (masked) Normal; guidance "
            "'annealed' and 'mmps' need linear Gaussian observations - use guidance='dps'"
        )
    shape = jnp.shape(value)
    loc, scale = jnp.broadcast_to(loc, shape), jnp.broadcast_to(scale, shape)
    observed = jnp.broadcast_to(observed, shape) & jnp.isfinite(scale) & (scale > 0)
    return loc, scale, observed


def linear_gaussian(model, info: ModelInfo, model_kwargs, *, check=True) -> LinearGaussian:
    """Flat linear-Gaussian view of the observed sites (ValueError if they are not).

    With `check` (eager only) the loc is tested to be affine in x and the scale constant.
    """

    def parts(x_phys):
        tr = _trace(model, lambda site: x_phys, model_kwargs)
        out = [_gaussian_parts(tr[n]["fn"], tr[n]["value"]) for n in info.observed]
        values = [jnp.ravel(tr[n]["value"]) for n in info.observed]
        locs, scales, obs = ([jnp.ravel(p[i]) for p in out] for i in range(3))
        return jnp.concatenate(locs), jnp.concatenate(scales), jnp.concatenate(obs), values

    prior = info.prior
    x0 = prior.offset()
    _, scale, observed, values = parts(x0)
    y = jnp.where(observed, jnp.concatenate(values), 0.0)
    safe = jnp.where(observed, scale, 1.0)
    precision = jnp.where(observed, 1.0 / safe**2, 0.0)
    loc_fn = lambda x_phys: parts(x_phys)[0]
    if check:
        keys = jax.random.split(jax.random.PRNGKey(2), 2)
        xa, xb = (prior.from_normalized(jax.random.normal(k, (prior.dim,))) for k in keys)
        la, lb, l0 = loc_fn(xa), loc_fn(xb), loc_fn(x0)
        lab = loc_fn(xa + xb - x0)
        tol = 1e-3 * (jnp.max(jnp.abs(la - l0)) + jnp.max(jnp.abs(lb - l0))) + 1e-12
        scale_a = parts(xa)[1]
        same_scale = jnp.all(jnp.where(observed, jnp.abs(scale_a - scale) <= 1e-6 * safe, True))
        if not bool(jnp.max(jnp.abs(lab - la - lb + l0)) <= tol) or not bool(same_scale):
            raise ValueError(
                "observed Normal sites must have a loc affine in the prior value and a scale "
                "independent of it for guidance 'annealed'/'mmps'; use guidance='dps'"
            )
    return LinearGaussian(loc_fn, y, precision)
