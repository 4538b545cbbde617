"""The sampler API: algorithm objects apart from the run, draw counts, InferenceData groups,
defaults in one place, and the deprecated keyword form."""

import inspect
import warnings

import arviz as az
import jax
import numpy as np
import numpyro
import pytest
from infer_cases import NOISE

from numpyro_diffprior.infer import (
    DPS,
    MMPS,
    Annealed,
    AnnealedLangevinSampler,
    DiffusionPosteriorSampler,
    IIDSampler,
    NonCentredHMC,
    ThetaRefresh,
    shear_model,
)
from numpyro_diffprior.infer.algorithms import (
    DIFFUSION_DEFAULTS,
    LANGEVIN_DEFAULTS,
    RUN_DEFAULTS,
    SHIPPED_NETWORK_SETTINGS,
)
from numpyro_diffprior.simulator.shear import kaiser_squires


def _kwargs(case):
    return dict(prior=case["prior"], shear_obs=case["shear"], noise_std=NOISE)


def model_with_s8(prior, shear_obs=None, mask=None, noise_std=None):
    """A user's model with deterministic sites of its own."""
    x = numpyro.sample("theta_kappa", prior)
    theta, kappa = prior.unpack(x)
    numpyro.deterministic("S8", theta[1] * (theta[0] / 0.3) ** 0.5)
    numpyro.deterministic("kappa_mean", kappa.mean(axis=(-2, -1)))
    numpyro.sample(
        "shear",
        numpyro.distributions.Normal(kaiser_squires(kappa), noise_std).to_event(4),
        obs=shear_obs,
    )


@pytest.fixture(scope="module")
def tiny_run(gaussian_case):
    sampler = DiffusionPosteriorSampler(model_with_s8, num_steps=4)
    runner = IIDSampler(sampler, 12, chunk_size=6, progress_bar=False)
    return runner.run(jax.random.key(0), **_kwargs(gaussian_case))


@pytest.mark.parametrize("num, chains", [(5, 1), (6, 3), (8, 4), (9, 3), (10, 2)])
def test_no_draw_is_dropped(gaussian_case, num, chains):
    sampler = DiffusionPosteriorSampler(shear_model, num_steps=4)
    runner = IIDSampler(sampler, num, chunk_size=4, progress_bar=False)
    runner.run(jax.random.key(1), **_kwargs(gaussian_case))
    assert runner.get_samples()["theta"].shape == (num, 2)
    grouped = runner.get_samples(group_by_chain=True)
    assert grouped["theta"].shape == (chains, num // chains, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arviz: more chains than draws
        idata = runner.to_inference_data()
    post = idata.posterior
    assert post["theta"].shape[:2] == (chains, num // chains)
    assert post.attrs["num_draws"] == num == post.sizes["chain"] * post.sizes["draw"]
    np.testing.assert_array_equal(post["theta"].values, grouped["theta"])


def test_log_likelihood_group_and_deterministic_sites(tiny_run, gaussian_case):
    idata = tiny_run.to_inference_data()
    assert idata.log_likelihood["shear"].dims == ("chain", "draw", "zbin", "component", "y", "x")
    assert idata.log_likelihood["shear"].shape == (4, 3, 1, 2, 8, 8)
    total = idata.log_likelihood["shear"].sum(("zbin", "component", "y", "x")).values
    np.testing.assert_allclose(
        total, idata.sample_stats["data_log_likelihood"].values, rtol=1e-4, atol=1e-2
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k of 12 draws
        loo = az.loo(idata)
    assert np.isfinite(loo["elpd_loo"])
    theta = idata.posterior["theta"].values
    s8 = theta[..., 1] * (theta[..., 0] / 0.3) ** 0.5
    np.testing.assert_allclose(idata.posterior["S8"].values, s8, rtol=1e-5)
    assert idata.posterior["kappa_mean"].shape == (4, 3, 1)
    assert tiny_run.get_samples()["S8"].shape == (12,)
    tiny_run.print_summary()


def test_masked_pixels_contribute_zero(gaussian_case):
    mask = np.ones((8, 8), bool)
    mask[:, :3] = False
    sampler = DiffusionPosteriorSampler(shear_model, num_steps=4)
    runner = IIDSampler(sampler, 4, progress_bar=False)
    runner.run(jax.random.key(2), **_kwargs(gaussian_case), mask=mask)
    lik = runner.to_inference_data().log_likelihood["shear"].values
    assert np.all(lik[..., :3] == 0) and np.all(lik[..., 3:] != 0)


def test_settings_that_cannot_apply_raise():
    with pytest.raises(ValueError, match="mmps_covariance does not apply to guidance 'dps'"):
        DiffusionPosteriorSampler(shear_model, guidance="dps", mmps_covariance="kappa")
    with pytest.raises(ValueError, match="guidance_clip does not apply"):
        DiffusionPosteriorSampler(shear_model, guidance="dps", guidance_clip=2.0)
    with pytest.raises(ValueError, match="noncentred_steps > 0"):
        DiffusionPosteriorSampler(shear_model, noncentred_leapfrog=4)
    with pytest.raises(ValueError, match="settings of the guidance"):
        DiffusionPosteriorSampler(shear_model, guidance=MMPS(), cg_maxiter=3)
    with pytest.raises(ValueError, match="covariance"):
        MMPS(covariance="theta")
    with pytest.raises(ValueError, match="clip"):
        Annealed(clip=0.0)
    with pytest.raises(ValueError, match="DPS"):
        AnnealedLangevinSampler(shear_model, guidance=DPS())
    with pytest.raises(ValueError, match="refinements"):
        DiffusionPosteriorSampler(shear_model, refinements=(ThetaRefresh(4), ThetaRefresh(8)))
    with pytest.raises(ValueError, match="whitening"):
        NonCentredHMC(steps=2, whitening="fourier")
    with pytest.raises(TypeError, match="unexpected"):
        DiffusionPosteriorSampler(shear_model, num_step=4)
    with pytest.raises(ValueError, match="guidance"):
        DiffusionPosteriorSampler(shear_model, guidance="magic")


def test_old_keywords_map_onto_the_new_objects_with_a_warning(gaussian_case):
    with pytest.warns(DeprecationWarning) as record:
        old = DiffusionPosteriorSampler(
            shear_model, num_steps=4, mmps_covariance="kappa", cg_maxiter=3, guidance_clip=2.0,
            theta_refresh_steps=2, chunk_size=4, num_chains=2, progress_bar=False,
        )  # fmt: skip
    assert all(r.filename == __file__ for r in record)  # points at the caller
    assert old.guidance == MMPS(covariance="kappa", cg_maxiter=3, clip=2.0)
    assert old.refinements == (ThetaRefresh(2),)
    new = DiffusionPosteriorSampler(
        shear_model, num_steps=4, guidance=old.guidance, refinements=(ThetaRefresh(2),)
    )
    with pytest.warns(DeprecationWarning, match="IIDSampler"):
        old.run(jax.random.key(3), 8, **_kwargs(gaussian_case))
    ref = IIDSampler(new, 8, chunk_size=4, progress_bar=False).run(
        jax.random.key(3), **_kwargs(gaussian_case)
    )
    np.testing.assert_array_equal(
        old.get_samples()["theta_kappa"], ref.get_samples()["theta_kappa"]
    )
    assert old.to_inference_data().posterior.sizes["chain"] == 2  # the old num_chains
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="num_chains"):
        old.run(jax.random.key(3), 7, **_kwargs(gaussian_case))


def test_shipped_network_settings_are_the_old_defaults():
    s = DiffusionPosteriorSampler.for_shipped_network(shear_model)
    assert s.guidance == MMPS(covariance="kappa", cg_maxiter=3, clip=2.0)
    assert (s.sampler, s.num_steps, s.sigma_max) == ("sde", 64, 5.0)
    annealed = DiffusionPosteriorSampler.for_shipped_network(shear_model, guidance="annealed")
    assert annealed.guidance == Annealed(clip=2.0) and annealed.sigma_max == 5.0
    exact = DiffusionPosteriorSampler(shear_model)
    assert exact.guidance == MMPS(covariance="joint", cg_maxiter=10, clip=None)
    assert (exact.sampler, exact.sigma_max) == ("ode", 80.0)
    assert SHIPPED_NETWORK_SETTINGS["guidance"] == s.guidance


def _signature_defaults(fn, names):
    params = inspect.signature(fn).parameters
    return {n: params[n].default for n in names}


def test_defaults_agree_between_the_classes_the_cli_and_the_demo():
    from numpyro_diffprior import cli, demo
    from numpyro_diffprior.commands.sample import sampler_from_args

    assert _signature_defaults(DiffusionPosteriorSampler, DIFFUSION_DEFAULTS) == DIFFUSION_DEFAULTS
    assert _signature_defaults(AnnealedLangevinSampler, LANGEVIN_DEFAULTS) == LANGEVIN_DEFAULTS
    assert _signature_defaults(IIDSampler, RUN_DEFAULTS) == RUN_DEFAULTS
    parser = cli.build_parser()
    base = ["sample", "--obs", "o.npz", "--out", "o.nc", "--num", "1000"]
    args = parser.parse_args(base)
    assert args.chunk_size == RUN_DEFAULTS["chunk_size"]
    assert args.workers == RUN_DEFAULTS["num_workers"]
    sampler, run = sampler_from_args(args)  # diffusion: the shipped network's settings
    shipped = DiffusionPosteriorSampler.for_shipped_network(shear_model)
    assert sampler.settings() == shipped.settings() and sampler.guidance == shipped.guidance
    assert run["chunk_size"] == RUN_DEFAULTS["chunk_size"]
    langevin, _ = sampler_from_args(parser.parse_args(base + ["--method", "langevin"]))
    assert langevin.settings() == AnnealedLangevinSampler(shear_model).settings()
    assert langevin.sigma_max == LANGEVIN_DEFAULTS["sigma_max"] == demo.FULL.langevin_sigma_max
    assert demo.FULL.diffusion_sigma_max == SHIPPED_NETWORK_SETTINGS["sigma_max"]
    assert demo.diffusion_guidance(demo.FULL) == SHIPPED_NETWORK_SETTINGS["guidance"]
    with pytest.raises(ValueError, match="--mmps-covariance does not apply"):
        sampler_from_args(parser.parse_args(base + ["--guidance", "dps", "--mmps-covariance",
                                                    "joint"]))  # fmt: skip
