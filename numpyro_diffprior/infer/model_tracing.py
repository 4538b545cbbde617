"""Reading a user's NumPyro model with effect handlers (`seed`, `substitute`, `trace`).

A model usable by the diffusion samplers has exactly one `DiffusionPrior` sample site, no other
latent sample sites, and at least one observed site whose log-density depends on the prior value.
From it we build

- `log_likelihood(x_phys)`: the sum of the observed sites' log densities with the prior value
  substituted, a differentiable function of x (any differentiable likelihood works);
- `linear_gaussian(...)`: for observed sites that are (masked) Normals with a loc affine in x and a
  scale independent of x, the flat pieces (loc function, y, precision) used by the annealed and
  covariance-aware guidance methods. Masked pixels get precision 0 (never NaN arithmetic).

The checks evaluate the model abstractly (`jax.eval_shape`) or in one compiled program each:
run operation by operation, every operation of the model and its gradient compiles on its own,
which cost seconds at each sampler's start. The pieces they evaluate are in
`infer.model_sites`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from numpyro_diffprior.infer.model_sites import (
    ModelInfo,
    _gaussian_parts,
    _linear_gaussian_parts,
    _site_log_prob,
    compiled_on_model,
    make_log_likelihood,
    make_site_values,
    probe_points,
    split_model_kwargs,
    trace_model,
)
from numpyro_diffprior.prior import DiffusionPrior

__all__ = [
    "ModelInfo",
    "LinearGaussian",
    "inspect_model",
    "make_log_likelihood",
    "linear_gaussian",
    "make_site_values",
    "split_model_kwargs",
    "loc_values",
    "observed_values",
]


class LinearGaussian(NamedTuple):
    """y = loc_fn(x_phys) + noise on the flat concatenation of the observed sites."""

    loc_fn: object  # callable x_phys (D,) -> (M,)
    y: jnp.ndarray  # (M,), 0 where unobserved
    precision: jnp.ndarray  # (M,), 1/scale^2 where observed, else 0


def inspect_model(model, model_kwargs, *, validate=True) -> ModelInfo:
    """Find the single DiffusionPrior site and the observed sites; raise ValueError otherwise."""
    sites = _sample_sites(model, model_kwargs)
    priors, observed, latent = ([n for n, s in sites.items() if s[0] == k] for k in _KINDS)
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
    info = ModelInfo(priors[0], sites[priors[0]][1], tuple(observed))
    if validate:
        _validate(model, info, sites, model_kwargs)
    return info


_KINDS = ("prior", "observed", "latent")


def _sample_sites(model, model_kwargs):
    """{name: (kind, the DiffusionPrior or None, value shape, distribution shape)} of the model's
    sample sites, kind one of `_KINDS`. Outside a trace the model is evaluated abstractly
    (`jax.eval_shape`: nothing computed, nothing compiled); if its prior is then not a concrete
    object (built from the model's own computations), eagerly."""
    table = {}

    def read():
        table.clear()
        tr = trace_model(model, lambda site: site["fn"].offset(), model_kwargs)
        for name, site in tr.items():
            if site["type"] != "sample":
                continue
            fn = site.get("fn")
            kind = "prior" if isinstance(fn, DiffusionPrior) else None
            kind = kind or ("observed" if site["is_observed"] else "latent")
            shape = tuple(fn.batch_shape) + tuple(fn.event_shape)
            table[name] = (kind, fn if kind == "prior" else None, jnp.shape(site["value"]), shape)

    if _has_tracer(model_kwargs):
        read()
        return table
    jax.eval_shape(read)
    if any(_has_tracer(s[1]) for s in table.values()):
        read()
    return table


def _has_tracer(tree):
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


def _validate(model, info, sites, model_kwargs):
    prior = info.prior
    for name in info.observed:
        _, _, shape, expected = sites[name]
        if tuple(shape) != expected:
            raise ValueError(
                f"observed site {name!r} has shape {tuple(shape)}, but its "
                f"distribution has shape {expected}"
            )
    x0, draws = probe_points(prior)
    results = _site_checks(model, info.observed, model_kwargs, x0, draws[0])
    for name, (bad, finite, depends) in zip(info.observed, results, strict=True):
        if bool(bad):
            raise ValueError(f"observed site {name!r} has NaN/inf values on observed pixels")
        if not bool(finite):
            raise ValueError(f"log-likelihood of observed site {name!r} is not finite")
        if not bool(depends):
            raise ValueError(
                f"observed site {name!r} does not depend on the DiffusionPrior site "
                f"{info.prior_name!r}"
            )


@compiled_on_model
def _site_checks(model, names, kwargs, x0, x1):
    """Per observed site: (a non-finite value on an observed pixel, a finite log-likelihood at
    x0, a nonzero gradient at x0 or x1)."""
    log_lik = lambda x, name: _site_log_prob(trace_model(model, lambda site: x, kwargs)[name])
    tr = trace_model(model, lambda site: x0, kwargs)
    out = []
    for name in names:
        value, fn = tr[name]["value"], tr[name]["fn"]
        try:
            _, _, observed = _gaussian_parts(fn, value)
            bad = observed & ~jnp.isfinite(value)
        except ValueError:
            bad = ~jnp.isfinite(value)
        grads = [jax.grad(log_lik)(x, name) for x in (x0, x1)]
        depends = jnp.any(grads[0] != 0) | jnp.any(grads[1] != 0)
        out.append((jnp.any(bad), jnp.isfinite(log_lik(x0, name)), depends))
    return out


def linear_gaussian(model, info: ModelInfo, model_kwargs, *, check=True) -> LinearGaussian:
    """Flat linear-Gaussian view of the observed sites (ValueError if they are not).

    With `check` (eager only) the loc is tested to be affine in x and the scale constant.
    """
    prior, names = info.prior, info.observed
    loc_fn = lambda x_phys: _linear_gaussian_parts(model, names, model_kwargs, x_phys)[0]
    if not check:
        parts = _linear_gaussian_parts(model, names, model_kwargs, prior.offset())
        _, scale, observed, value = parts
        return LinearGaussian(loc_fn, *_data_and_precision(value, scale, observed))
    x0, draws = probe_points(prior)
    y, precision, affine, same_scale = _linear_gaussian_checks(
        model, names, model_kwargs, x0, draws[1], draws[2]
    )
    if not bool(affine) or not bool(same_scale):
        raise ValueError(
            "observed Normal sites must have a loc affine in the prior value and a scale "
            "independent of it for guidance 'annealed'/'mmps'; use guidance='dps'"
        )
    return LinearGaussian(loc_fn, y, precision)


def _data_and_precision(value, scale, observed):
    y = jnp.where(observed, value, 0.0)
    precision = jnp.where(observed, 1.0 / jnp.where(observed, scale, 1.0) ** 2, 0.0)
    return y, precision


@compiled_on_model
def _linear_gaussian_checks(model, names, kwargs, x0, xa, xb):
    """(y, precision, loc affine in x, scale independent of x) from the prior values x0, xa,
    xb."""
    parts = lambda x: _linear_gaussian_parts(model, names, kwargs, x)
    l0, scale, observed, value = parts(x0)
    la, scale_a = parts(xa)[:2]
    lb, lab = parts(xb)[0], parts(xa + xb - x0)[0]
    tol = 1e-3 * (jnp.max(jnp.abs(la - l0)) + jnp.max(jnp.abs(lb - l0))) + 1e-12
    safe = jnp.where(observed, scale, 1.0)
    same_scale = jnp.all(jnp.where(observed, jnp.abs(scale_a - scale) <= 1e-6 * safe, True))
    affine = jnp.max(jnp.abs(lab - la - lb + l0)) <= tol
    return (*_data_and_precision(value, scale, observed), affine, same_scale)


def loc_values(model, info: ModelInfo, model_kwargs, xs):
    """(K, M) flat loc of the observed (Gaussian) sites at each of the K prior values xs, as one
    compiled program."""
    return _locs(model, info.observed, model_kwargs, tuple(xs))


@compiled_on_model
def _locs(model, names, kwargs, xs):
    return jnp.stack([_linear_gaussian_parts(model, names, kwargs, x)[0] for x in xs])


def observed_values(model, info: ModelInfo, model_kwargs) -> dict:
    """{observed site: its value}, read by one compiled program."""
    return _observed(model, info.observed, model_kwargs, probe_points(info.prior)[0])


@compiled_on_model
def _observed(model, names, kwargs, x0):
    tr = trace_model(model, lambda site: x0, kwargs)
    return {name: tr[name]["value"] for name in names}
