"""Bad models and bad observations give clear ValueErrors before any sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from infer_cases import NOISE

from numpyro_diffprior.infer import DiffusionPosteriorSampler, IIDSampler, shear_model
from numpyro_diffprior.infer.model_tracing import inspect_model, linear_gaussian


def _run(model, guidance="mmps", **kwargs):
    sampler = DiffusionPosteriorSampler(model, guidance=guidance, num_steps=2)
    return IIDSampler(sampler, 8, progress_bar=False).run(jax.random.PRNGKey(0), **kwargs)


def test_nan_on_observed_pixels(gaussian_case):
    shear = np.array(gaussian_case["shear"])
    shear[0, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _run(shear_model, prior=gaussian_case["prior"], shear_obs=shear, noise_std=NOISE)


def test_nan_in_masked_pixels_is_fine(gaussian_case):
    shear = np.array(gaussian_case["shear"])
    shear[0, :, 3, 3] = np.nan
    mask = np.ones((8, 8), bool)
    mask[3, 3] = False
    info = inspect_model(
        shear_model,
        dict(prior=gaussian_case["prior"], shear_obs=shear, noise_std=NOISE, mask=mask),
    )
    assert info.observed == ("shear",)


def test_wrong_shaped_observation(gaussian_case):
    with pytest.raises(ValueError, match="shape"):
        _run(
            shear_model,
            prior=gaussian_case["prior"],
            shear_obs=gaussian_case["shear"][:, :, :4],
            noise_std=NOISE,
        )

    def model(prior, y):  # y broadcasts silently in NumPyro; we refuse it
        x = numpyro.sample("x", prior)
        numpyro.sample("y", dist.Normal(prior.unpack(x)[1], 1.0).to_event(3), obs=y)

    with pytest.raises(ValueError, match="shape"):
        _run(model, prior=gaussian_case["prior"], y=jnp.zeros((1, 1, 8)))


def test_model_without_prior_site(gaussian_case):
    def model(y):
        z = numpyro.sample("z", dist.Normal(0, 1))
        numpyro.sample("y", dist.Normal(z, 1), obs=y)

    with pytest.raises(ValueError, match="no DiffusionPrior"):
        _run(model, y=1.0)


def test_model_with_two_prior_sites(gaussian_case):
    def model(prior, y):
        a = numpyro.sample("a", prior)
        b = numpyro.sample("b", prior)
        numpyro.sample("y", dist.Normal(a + b, 1).to_event(1), obs=y)

    with pytest.raises(ValueError, match="2 DiffusionPrior sites"):
        _run(model, prior=gaussian_case["prior"], y=jnp.zeros(gaussian_case["prior"].dim))


def test_observed_site_independent_of_prior(gaussian_case):
    def model(prior, shear_obs, y):
        x = numpyro.sample("x", prior)
        numpyro.sample("shear", dist.Normal(prior.unpack(x)[1], 1.0).to_event(3), obs=shear_obs)
        numpyro.sample("other", dist.Normal(0.0, 1.0), obs=y)

    with pytest.raises(ValueError, match="'other' does not depend"):
        _run(model, prior=gaussian_case["prior"], shear_obs=jnp.zeros((1, 8, 8)), y=0.3)


def test_no_observed_site_and_extra_latents(gaussian_case):
    def no_obs(prior):
        numpyro.sample("x", prior)

    with pytest.raises(ValueError, match="no observed"):
        _run(no_obs, prior=gaussian_case["prior"])

    def extra(prior, y):
        x = numpyro.sample("x", prior)
        s = numpyro.sample("s", dist.HalfNormal(1.0))
        numpyro.sample("y", dist.Normal(prior.unpack(x)[1], s).to_event(3), obs=y)

    with pytest.raises(ValueError, match="latent sample sites"):
        _run(extra, prior=gaussian_case["prior"], y=jnp.zeros((1, 8, 8)))


def test_non_gaussian_or_nonlinear_needs_dps(gaussian_case):
    prior = gaussian_case["prior"]

    def laplace(prior, y):
        x = numpyro.sample("x", prior)
        numpyro.sample("y", dist.Laplace(prior.unpack(x)[1], 0.01).to_event(3), obs=y)

    def nonlinear(prior, y):
        x = numpyro.sample("x", prior)
        numpyro.sample("y", dist.Normal(prior.unpack(x)[1] ** 2, 0.01).to_event(3), obs=y)

    y = jnp.zeros((1, 8, 8))
    with pytest.raises(ValueError, match="dps"):
        _run(laplace, prior=prior, y=y)
    with pytest.raises(ValueError, match="affine"):
        _run(nonlinear, prior=prior, y=y, guidance="annealed")
    info = inspect_model(laplace, dict(prior=prior, y=y))
    with pytest.raises(ValueError, match="Normal"):
        linear_gaussian(laplace, info, dict(prior=prior, y=y))
    x = _run(laplace, prior=prior, y=y, guidance="dps").get_samples()["x"]
    assert np.all(np.isfinite(x))


def test_bad_sampler_settings(gaussian_case):
    with pytest.raises(ValueError, match="guidance"):
        DiffusionPosteriorSampler(shear_model, guidance="magic")
    with pytest.raises(ValueError, match="sampler"):
        DiffusionPosteriorSampler(shear_model, sampler="leapfrog")
    sampler = DiffusionPosteriorSampler(shear_model, num_steps=2)
    with pytest.raises(ValueError, match="num_samples"):
        IIDSampler(sampler, 0).run(jax.random.PRNGKey(0), prior=gaussian_case["prior"])


def test_checks_never_run_the_model_operation_by_operation(gaussian_case):
    """Every evaluation of the model by the checks is traced (abstract or compiled): run op by
    op, each of its operations would compile on its own at the sampler's start."""
    from numpyro_diffprior.infer.model_tracing import loc_values, observed_values

    traced = []

    def model(**kwargs):
        traced.append(isinstance(jnp.zeros(()), jax.core.Tracer))
        shear_model(**kwargs)

    kw = dict(prior=gaussian_case["prior"], shear_obs=gaussian_case["shear"], noise_std=NOISE)
    info = inspect_model(model, kw)
    lg = linear_gaussian(model, info, kw, check=True)
    locs = loc_values(model, info, kw, (info.prior.offset(),))
    values = observed_values(model, info, kw)
    assert len(traced) >= 4 and all(traced), traced
    # and they read the same numbers as an eager evaluation
    np.testing.assert_allclose(values["shear"], gaussian_case["shear"])
    traced.clear()
    eager = lg.loc_fn(info.prior.offset())
    assert traced == [False]  # the probe itself can tell eager from traced
    np.testing.assert_allclose(locs[0], eager, atol=1e-7)
