"""The pieces of a user's NumPyro model the samplers evaluate, read with effect handlers
(`seed`, `substitute`, `trace`): its trace with the prior value substituted, the observed sites'
log densities (summed, or per element) and their Gaussian parts, and the split of the model's
arguments into a compiled program's inputs and constants. `infer.model_tracing` checks a model
and builds its likelihood views from them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro import handlers

from numpyro_diffprior.prior import DiffusionPrior

__all__ = [
    "ModelInfo",
    "compiled_on_model",
    "make_log_likelihood",
    "make_site_values",
    "probe_points",
    "split_model_kwargs",
    "trace_model",
]


class ModelInfo(NamedTuple):
    prior_name: str
    prior: DiffusionPrior
    observed: tuple[str, ...]


def trace_model(model, prior_value_fn, model_kwargs):
    """The model's trace with `prior_value_fn(site)` as the DiffusionPrior site's value."""

    def substitute_fn(site):
        if site["type"] == "sample" and isinstance(site.get("fn"), DiffusionPrior):
            return prior_value_fn(site)
        return None

    seeded = handlers.seed(handlers.substitute(model, substitute_fn=substitute_fn), rng_seed=0)
    return handlers.trace(seeded).get_trace(**model_kwargs)


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
        tr = trace_model(model, lambda site: x_phys, model_kwargs)
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
        tr = trace_model(model, lambda site: x_phys, model_kwargs)
        log_lik = {name: _pointwise_log_prob(tr[name]) for name in info.observed}
        det = {n: s["value"] for n, s in tr.items() if s["type"] == "deterministic"}
        return log_lik, det

    return site_values


def split_model_kwargs(model_kwargs):
    """(dynamic, static) model arguments: arrays (and floats, as arrays, so that a new value does
    not recompile) are the inputs of a compiled program, the others its constants, as a sorted
    tuple of (name, value) pairs. ValueError for an argument that is neither an array nor
    hashable."""
    dynamic, static = {}, {}
    for key, value in model_kwargs.items():
        leaves = jax.tree.leaves(value)
        if isinstance(value, float):  # a new float value must not retrace
            dynamic[key] = jnp.asarray(value)
        elif value is not None and leaves and all(hasattr(v, "shape") for v in leaves):
            dynamic[key] = value
        else:
            try:
                hash(value)
            except TypeError as err:
                raise ValueError(
                    f"model argument {key!r} is neither an array nor hashable"
                ) from err
            static[key] = value
    return dynamic, tuple(sorted(static.items()))


def compiled_on_model(fn):
    """`fn(model, names, model_kwargs, *arrays)` as one compiled program per model, site names
    and constant arguments: the model's arguments are split by `split_model_kwargs` into the
    program's inputs and its (static) constants. Run operation by operation, every operation of
    a model and its gradient would compile on its own, which costs seconds at a sampler's start.
    """

    @functools.partial(jax.jit, static_argnums=(0, 1, 2))
    def compiled(model, names, static, dynamic, *arrays):
        return fn(model, names, {**dynamic, **dict(static)}, *arrays)

    @functools.wraps(fn)
    def call(model, names, model_kwargs, *arrays):
        dynamic, static = split_model_kwargs(model_kwargs)
        return compiled(model, tuple(names), static, dynamic, *arrays)

    return call


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


def _linear_gaussian_parts(model, names, model_kwargs, x_phys):
    """Flat (loc, scale, observed, value) of the observed sites with the prior value x_phys."""
    tr = trace_model(model, lambda site: x_phys, model_kwargs)
    out = [_gaussian_parts(tr[n]["fn"], tr[n]["value"]) + (tr[n]["value"],) for n in names]
    return tuple(jnp.concatenate([jnp.ravel(p[i]) for p in out]) for i in range(4))


@jax.jit
def probe_points(prior):
    """(the prior's offset (D,), a tuple of 4 draws (D,) of its normalised N(0, I) in physical
    units): the fixed prior values at which a model's checks evaluate it."""
    z = jax.random.normal(jax.random.PRNGKey(1), (4, prior.dim))
    return prior.offset(), tuple(prior.from_normalized(z_k) for z_k in z)
