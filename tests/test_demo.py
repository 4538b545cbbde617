"""The demo's settings (the end-to-end run is in test_examples.py)."""

import jax
import pytest

from numpyro_diffprior.demo import FULL, QUICK, diffusion_chunk_size, diffusion_sampler


def test_diffusion_chunk_size_auto_follows_the_backend():
    expected = 5 if jax.default_backend() == "cpu" else 64
    assert diffusion_chunk_size("auto") == expected
    assert diffusion_sampler(FULL, progress_bar=False).chunk_size == expected
    assert diffusion_sampler({**QUICK, "diffusion_chunk_size": 3}).chunk_size == 3


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "five", None])
def test_diffusion_chunk_size_rejects_bad_settings(bad):
    with pytest.raises(ValueError, match="diffusion_chunk_size"):
        diffusion_chunk_size(bad)
