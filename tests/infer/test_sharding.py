"""Batch sharding over 2 (forced host) devices gives the same draws as one device."""

import os
import pathlib
import subprocess
import sys

SCRIPT = """
import jax, numpy as np
from infer_cases import make_gaussian_case, NOISE
from numpyro_diffprior.infer import (AnnealedLangevinSampler, DiffusionPosteriorSampler,
                                    IIDSampler, shear_model)
assert jax.device_count() == 2
case = make_gaussian_case()
kw = dict(prior=case["prior"], shear_obs=case["shear"], noise_std=NOISE)
for sampler in (
    DiffusionPosteriorSampler(shear_model, num_steps=4),
    AnnealedLangevinSampler(shear_model, num_levels=3, num_steps_per_level=2),
):
    make = lambda s: IIDSampler(sampler, 16, chunk_size=8, shard=s, progress_bar=False)
    a = make(True).run(jax.random.PRNGKey(0), **kw).get_samples()["theta_kappa"]
    b = make(False).run(jax.random.PRNGKey(0), **kw).get_samples()["theta_kappa"]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
print("OK")
"""


def test_sharded_batch_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    here = pathlib.Path(__file__).parent
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout
