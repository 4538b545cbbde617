"""Diverged samplers are reported, never silently returned as a posterior; chunks of draws
computed in worker processes equal those computed in one."""

import warnings

import jax
import numpy as np
import pytest
from infer_cases import NOISE

from numpyro_diffprior.infer.langevin import AnnealedLangevinSampler
from numpyro_diffprior.infer.models import shear_model
from numpyro_diffprior.infer.posterior import DiffusionPosteriorSampler
from numpyro_diffprior.infer.runner import DIVERGENCE_THRESHOLD, IIDSampler, _warn_if_diverged


def test_warns_when_draws_leave_the_prior():
    with pytest.warns(RuntimeWarning, match="50% of the draws"):
        _warn_if_diverged(np.array([0.5, DIVERGENCE_THRESHOLD + 1.0]), "diffusion")


def test_silent_for_draws_inside_the_prior():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_diverged(np.array([0.1, 2.0, DIVERGENCE_THRESHOLD - 0.1]), "langevin")


def _case_and_kernel(gaussian_case, sampler_cls):
    """The Gaussian case's model arguments and a cheap kernel of `sampler_cls`."""
    kwargs = dict(prior=gaussian_case["prior"], shear_obs=gaussian_case["shear"], noise_std=NOISE)
    if sampler_cls == "diffusion":
        return kwargs, DiffusionPosteriorSampler(shear_model, num_steps=4)
    langevin = AnnealedLangevinSampler(shear_model, sigma_max=1.0, num_levels=4,
                                       num_steps_per_level=2)  # fmt: skip
    return kwargs, langevin


@pytest.mark.processes
@pytest.mark.parametrize("sampler_cls", ["diffusion", "langevin"])
def test_workers_give_the_draws_of_one_process(gaussian_case, sampler_cls):
    # 2 worker processes compute the 2 chunks of 4 draws; one process computing the same
    # chunks (chunk_size=4, the same chunk keys) is the reference.
    kwargs, sampler = _case_and_kernel(gaussian_case, sampler_cls)
    make = lambda **options: IIDSampler(sampler, 8, progress_bar=False, **options)  # noqa: E731
    serial = make(chunk_size=4).run(jax.random.key(0), **kwargs).get_samples()
    parallel = make(chunk_size=64, num_workers=2)
    parallel.run(jax.random.key(0), **kwargs)
    for name in ("theta", "kappa"):
        np.testing.assert_allclose(
            parallel.get_samples()[name], serial[name], rtol=1e-4, atol=1e-6 * 0.02
        )
    idata = parallel.to_inference_data()
    assert idata.posterior["theta"].shape[:2] == (4, 2)


@pytest.mark.parametrize("sampler_cls", ["diffusion", "langevin"])
def test_threads_give_the_draws_of_one_thread(gaussian_case, sampler_cls):
    # 2 threads compute the 2 chunks of 6 draws (12 draws, laid out as for 2 workers); one
    # thread computing the same chunks (chunk_size=6) is the reference. 3 threads make 3
    # chunks of 4: other draws, in the same shapes, and every draw is kept.
    kwargs, sampler = _case_and_kernel(gaussian_case, sampler_cls)
    make = lambda **options: IIDSampler(sampler, 12, progress_bar=True, **options)  # noqa: E731
    serial = make(chunk_size=6).run(jax.random.key(0), **kwargs).get_samples()
    threaded = make(chunk_size=64, num_threads=2).run(jax.random.key(0), **kwargs).get_samples()
    for name in ("theta", "kappa"):
        np.testing.assert_allclose(threaded[name], serial[name], rtol=1e-5, atol=1e-7)
    three = make(chunk_size=64, num_threads=3).run(jax.random.key(0), **kwargs).get_samples()
    assert three["kappa"].shape == serial["kappa"].shape
    assert not np.allclose(three["theta"], serial["theta"])
    assert len(np.unique(three["theta"][:, 0])) == 12


@pytest.mark.processes
def test_workers_need_a_picklable_model(gaussian_case):
    local_model = lambda **kw: shear_model(**kw)  # noqa: E731 - a lambda does not pickle
    sampler = AnnealedLangevinSampler(local_model, num_levels=2, num_steps_per_level=1)
    runner = IIDSampler(sampler, 8, num_workers=2, progress_bar=False)
    kwargs = dict(prior=gaussian_case["prior"], shear_obs=gaussian_case["shear"], noise_std=NOISE)
    with pytest.raises(ValueError, match="picklable"):
        runner.run(jax.random.key(0), **kwargs)


def test_bad_worker_settings_raise():
    sampler = AnnealedLangevinSampler(shear_model)
    with pytest.raises(ValueError, match="num_workers"):
        IIDSampler(sampler, 8, num_workers=0)
    with pytest.raises(ValueError, match="shard"):
        IIDSampler(sampler, 8, num_workers=2, shard=True)
    with pytest.raises(ValueError, match="num_threads must be a positive integer"):
        IIDSampler(sampler, 8, num_threads=0)
    with pytest.raises(ValueError, match="num_threads > 1 computes the chunks in this process"):
        IIDSampler(sampler, 8, num_threads=2, num_workers=2)
    with pytest.raises(ValueError, match="num_threads > 1"):
        IIDSampler(sampler, 8, num_threads=2, scheduler="local")
    with pytest.raises(ValueError, match="num_samples"):
        IIDSampler(sampler, 0)
