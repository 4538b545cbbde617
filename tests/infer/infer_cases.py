"""Oracle set-ups shared by the sampler tests: tiny maps, Kaiser-Squires observations.

A module of its own, not conftest: `from conftest import` can resolve to another test
directory's conftest."""

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior import testing as oracles
from numpyro_diffprior.prior import DiffusionPrior
from numpyro_diffprior.simulator.shear import kaiser_squires

MAP_SHAPE = (1, 8, 8)
NOISE = 0.01  # shear noise per component (kappa_std = 0.02)


def make_gaussian_case(mask=None, seed=5):
    prior, oracle, normalizer = oracles.gaussian_oracle_prior(
        MAP_SHAPE, param_names=("Omega_c", "sigma_8")
    )
    truth = prior.sample(jax.random.PRNGKey(seed))
    kappa = prior.unpack(truth)[1]
    shear = kaiser_squires(kappa) + NOISE * jax.random.normal(
        jax.random.PRNGKey(seed + 1), (1, 2, 8, 8)
    )
    full_mask = None if mask is None else np.broadcast_to(mask, (1, 2, 8, 8))
    if full_mask is not None:
        shear = jnp.where(full_mask, shear, jnp.nan)  # garbage in masked pixels is allowed
    operator = oracles.linear_operator_matrix(kaiser_squires, MAP_SHAPE)
    exact = oracles.gaussian_posterior(
        oracle, normalizer, MAP_SHAPE, operator, np.nan_to_num(shear), NOISE, full_mask
    )
    return dict(prior=prior, oracle=oracle, shear=shear, exact=exact, truth=truth, mask=mask)


def make_amplitude_case(seed=3):
    oracle, normalizer = oracles.amplitude_oracle(MAP_SHAPE)
    prior = DiffusionPrior(
        apply_fn=oracles.amplitude_denoise,
        params=oracle,
        normalizer=normalizer,
        n_params=1,
        map_shape=MAP_SHAPE,
        param_names=("amplitude",),
    )
    truth = prior.sample(jax.random.PRNGKey(seed))
    kappa = prior.unpack(truth)[1]
    shear = kaiser_squires(kappa) + NOISE * jax.random.normal(
        jax.random.PRNGKey(seed + 1), (1, 2, 8, 8)
    )
    operator = oracles.linear_operator_matrix(kaiser_squires, MAP_SHAPE)
    exact = oracles.amplitude_posterior(oracle, normalizer, MAP_SHAPE, operator, shear, NOISE)
    return dict(prior=prior, oracle=oracle, shear=shear, exact=exact, truth=truth)
