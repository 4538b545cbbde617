"""Compiled initialisation and post-processing of a NumPyro model for MCMC.

NumPyro initialises a single chain eagerly: it traces the model and differentiates its
potential operation by operation, and each operation is compiled on its own (on the field-level
lensing model: about 230 small XLA programs, 25-45 s on a 2-core CPU, repeated in every
worker process). Here the same initialisation (`numpyro.infer.util.initialize_model`: the
init strategy, up to 100 tries for finite potential and gradient) runs inside one `jax.jit`,
and the NUTS kernel is built on the model's potential (`potential_energy`), so nothing of the
model runs eagerly. The deterministic sites of the draws are then computed by one compiled
`lax.map` (`constrained_sites`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import constrain_fn, initialize_model, potential_energy

__all__ = ["initial_params", "model_potential", "constrained_sites"]


def initial_params(rng_key, model, model_kwargs: dict, init_strategy):
    """NumPyro's initial `ParamInfo` (unconstrained z, potential energy, gradient) of `model`,
    computed in one compiled program; a batch of keys (K,) gives a batch of K chains.

    Raises RuntimeError, as NumPyro does, when no valid (finite) initial point is found.
    """

    def one(key):
        return initialize_model(
            key, model, model_kwargs=model_kwargs, init_strategy=init_strategy,
            dynamic_args=False,
        ).param_info  # fmt: skip

    batched = jnp.ndim(jax.random.key_data(rng_key)) > 1
    info = jax.jit(jax.vmap(one) if batched else one)(rng_key)
    grads = jnp.concatenate([jnp.ravel(g) for g in jax.tree.leaves(info.z_grad)])
    if not (np.all(np.isfinite(info.potential_energy)) and np.all(np.isfinite(grads))):
        raise RuntimeError(
            "cannot find valid initial parameters: the model's potential energy or its gradient "
            "is not finite at every initial point tried; check the data and the priors"
        )
    return info


def model_potential(model, model_kwargs: dict):
    """The potential (negative log joint density in unconstrained space) of `model`."""
    return functools.partial(potential_energy, model, (), model_kwargs)


def constrained_sites(model, model_kwargs: dict, samples: dict, names, *, batch_ndims=2):
    """Sites `names` (latent or deterministic) of the unconstrained draws `samples`, whose
    leading `batch_ndims` axes are draws; one compiled `lax.map` over the flattened draws."""
    lead = jax.tree.leaves(samples)[0].shape[:batch_ndims]
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[batch_ndims:]), samples)

    def one(params):
        sites = constrain_fn(model, (), model_kwargs, params, return_deterministic=True)
        return {name: sites[name] for name in names}

    out = jax.jit(lambda p: jax.lax.map(one, p))(flat)
    return {name: np.asarray(v).reshape(lead + v.shape[1:]) for name, v in out.items()}
