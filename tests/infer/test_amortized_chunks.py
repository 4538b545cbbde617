"""`sample_with_keys_chunked` against `sample_with_keys` on the exact conditional oracle
(`testing.conditional`): the same draws, up to float rounding, whatever the chunk size (with a
padded last chunk), the threads and the solver (float32 rounding, which the solver's steps
carry along, within 0.002 posterior sd); the stochastic sampler and `chunk_size=None`
run the vmapped program itself; bad chunk sizes, threads and key counts are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from infer_cases import MAP_SHAPE, NOISE, make_gaussian_case

from numpyro_diffprior.amortized import ShearObservation
from numpyro_diffprior.infer.amortized import sample_with_keys
from numpyro_diffprior.infer.amortized_chunks import (
    CPU_CHUNK_SIZE,
    resolve_chunk_size,
    sample_with_keys_chunked,
)
from numpyro_diffprior.testing.conditional import gaussian_amortized_prior
from numpyro_diffprior.validation import random_holes_mask

NUM = 12  # draws per observation: chunks of 5 leave a padded last chunk


@pytest.fixture(scope="module")
def prior():
    return gaussian_amortized_prior(MAP_SHAPE, param_names=("Omega_c", "sigma_8"))[0]


@pytest.fixture(scope="module")
def observations():
    """Three observations, the second with 20 % of its pixels masked."""
    shears, stds = [], []
    for seed, mask in ((2, None), (3, random_holes_mask(8, seed=1, fraction=0.2)), (4, None)):
        case = make_gaussian_case(mask=mask, seed=seed)
        seen = np.ones((1, 2, 8, 8), bool) if mask is None else np.broadcast_to(mask, (1, 2, 8, 8))
        shears.append(np.where(seen, np.nan_to_num(case["shear"]), 0.0))
        stds.append(np.where(seen, NOISE, np.inf))
    return ShearObservation(jnp.asarray(np.stack(shears), jnp.float32),
                            jnp.asarray(np.stack(stds), jnp.float32))  # fmt: skip


KEYS = jax.random.split(jax.random.key(9), 3)


@pytest.mark.parametrize(
    "sampler, chunk_size, threads",
    [("dpmpp-2m", 5, 2), ("dpmpp-2m", 1, 1), ("dpmpp-3m", 7, 2), ("ode", 36, 1)],
)
def test_chunked_draws_equal_the_vmapped_draws(prior, observations, sampler, chunk_size, threads):
    settings = dict(sampler=sampler, num_steps=6)
    want = np.asarray(sample_with_keys(KEYS, prior, observations, NUM, **settings))
    got = sample_with_keys_chunked(KEYS, prior, observations, NUM, chunk_size=chunk_size,
                                   num_threads=threads, **settings)  # fmt: skip
    assert got.shape == (3, NUM, prior.dim)
    rounding = np.abs(got - want) / want.std(1, keepdims=True)  # in posterior sd
    assert rounding.max() < 2e-3, rounding.max()
    assert not np.allclose(got[0].mean(0), got[2].mean(0))  # each observation its own draws


@pytest.mark.parametrize("sampler, chunk_size", [("sde", 5), ("dpmpp-2m", None)])
def test_sde_and_no_chunks_run_the_vmapped_program(prior, observations, sampler, chunk_size):
    settings = dict(sampler=sampler, num_steps=6)
    want = np.asarray(sample_with_keys(KEYS, prior, observations, NUM, **settings))
    got = sample_with_keys_chunked(KEYS, prior, observations, NUM, chunk_size=chunk_size,
                                   **settings)  # fmt: skip
    np.testing.assert_array_equal(got, want)


def test_resolve_chunk_size():
    cpu = jax.default_backend() == "cpu"
    assert resolve_chunk_size("auto") == (CPU_CHUNK_SIZE if cpu else None)
    assert resolve_chunk_size(3) == 3 and resolve_chunk_size("4") == 4
    assert resolve_chunk_size(None) is None
    for bad in (0, -2, 2.5, True, "many"):
        with pytest.raises(ValueError, match="chunk_size must be a positive int, 'auto' or None"):
            resolve_chunk_size(bad)


def test_refuses_bad_threads_and_key_counts(prior, observations):
    with pytest.raises(ValueError, match="num_workers must be a positive integer"):
        sample_with_keys_chunked(KEYS, prior, observations, NUM, chunk_size=5, num_threads=0)
    with pytest.raises(ValueError, match="got 2 keys for 3 observations"):
        sample_with_keys_chunked(KEYS[:2], prior, observations, NUM, chunk_size=5)
