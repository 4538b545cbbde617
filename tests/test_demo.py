"""The demo's settings (the end-to-end run is in test_examples.py)."""

import jax
import pytest

from numpyro_diffprior.demo import (
    FULL,
    QUICK,
    amortized_chunk_size,
    amortized_sampler,
    diffusion_chunk_size,
    diffusion_sampler,
)


def test_diffusion_chunk_size_auto_follows_the_backend():
    expected = 5 if jax.default_backend() == "cpu" else 64
    assert diffusion_chunk_size("auto") == expected
    assert diffusion_sampler(FULL, progress_bar=False).chunk_size == expected
    assert diffusion_sampler({**QUICK, "diffusion_chunk_size": 3}).chunk_size == 3


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "five", None])
def test_diffusion_chunk_size_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="diffusion_chunk_size"):
        diffusion_chunk_size(bad)


def test_amortized_chunk_size_auto_follows_the_backend():
    expected = 5 if jax.default_backend() == "cpu" else FULL.amortized_draws
    assert amortized_chunk_size("auto", FULL.amortized_draws) == expected
    assert amortized_sampler(FULL, progress_bar=False).chunk_size == expected
    assert amortized_sampler({**QUICK, "amortized_chunk_size": 3}).chunk_size == 3
    assert amortized_chunk_size(7, 200) == 7


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "five", None])
def test_amortized_chunk_size_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="amortized_chunk_size"):
        amortized_chunk_size(bad, 200)
