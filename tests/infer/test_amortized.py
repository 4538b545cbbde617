"""The amortised sampler against the exact conditional oracle of the Gaussian joint
(`testing.conditional`, docs/design.md §6): plain reverse diffusion with the exact conditional
denoiser must reproduce the exact posterior (`testing.gaussian_posterior`), with and without a
mask; `sample_many` equals separate runs; inputs outside the training range are refused.

Tolerances (1024 draws, seeds fixed below): theta mean within 0.1 posterior sd (3 Monte-Carlo
standard errors, SE = 1/sqrt(1024) = 0.031) and spread within 10 % (SE 2.2 %); every kappa
pixel's mean within 0.15 sd (about 5 SE: the largest of 64); median pixel spread within 5 %.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from infer_cases import MAP_SHAPE, NOISE, make_gaussian_case

from numpyro_diffprior.amortized import ObservationRange, ShearObservation
from numpyro_diffprior.infer import IIDSampler, shear_model
from numpyro_diffprior.infer.algorithms import AMORTIZED_FAST_SETTINGS
from numpyro_diffprior.infer.amortized import AmortizedPosteriorSampler, sample_many, sample_one
from numpyro_diffprior.simulator.shear import kaiser_squires
from numpyro_diffprior.testing.conditional import gaussian_amortized_prior
from numpyro_diffprior.validation import random_holes_mask

NUM = 1024
NAMES = ("Omega_c", "sigma_8")
RANGE = ObservationRange(reference_noise=(NOISE,), noise_factor=(0.5, 2.0),
                         max_masked_fraction=0.4)  # fmt: skip


@pytest.fixture(scope="module")
def amortized_prior():
    return gaussian_amortized_prior(MAP_SHAPE, param_names=NAMES)[0]


def _check(x, exact, mean_tol=0.1, std_tol=0.1):
    mean, sd = exact.mean, np.sqrt(np.diag(exact.cov))
    x = np.asarray(x)
    theta_bias = np.abs(x[:, :2].mean(0) - mean[:2]) / sd[:2]
    theta_ratio = x[:, :2].std(0) / sd[:2]
    kappa_z = np.abs(x[:, 2:].mean(0) - mean[2:]) / sd[2:]
    kappa_ratio = np.median(x[:, 2:].std(0) / sd[2:])
    report = dict(theta_bias=theta_bias, theta_ratio=theta_ratio, kappa_z=kappa_z.max(),
                  kappa_ratio=kappa_ratio)  # fmt: skip
    assert np.all(theta_bias < mean_tol), report
    assert np.all(np.abs(theta_ratio - 1) < std_tol), report
    assert kappa_z.max() < 1.5 * mean_tol, report
    assert abs(kappa_ratio - 1) < 0.05, report


def _run(prior, case, *, seed=0, **model_kwargs):
    runner = IIDSampler(AmortizedPosteriorSampler(shear_model), NUM, chunk_size=NUM // 2,
                        progress_bar=False)  # fmt: skip
    runner.run(jax.random.PRNGKey(seed), prior=prior, shear_obs=case["shear"], noise_std=NOISE,
               **model_kwargs)  # fmt: skip
    return runner


def test_amortized_sampler_is_exact_on_the_conditional_oracle(amortized_prior):
    case = make_gaussian_case(seed=5)
    runner = _run(amortized_prior, case)
    _check(runner.get_samples()["theta_kappa"], case["exact"])
    # the InferenceData layout of the other samplers
    idata = runner.to_inference_data(truth={"theta": case["truth"][:2]})
    post = idata.posterior
    assert post["kappa"].dims == ("chain", "draw", "zbin", "y", "x")
    assert list(post["theta"].coords["param"].values) == list(NAMES)
    assert idata.log_likelihood["shear"].shape == (4, NUM // 4, 1, 2, 8, 8)
    assert idata.observed_data["shear"].dims == ("zbin", "component", "y", "x")
    assert post.attrs["method"] == "amortized" and post.attrs["guidance"] == "none"
    # the default reverse process: DPM-Solver++(2M), 20 log-uniform steps, one call each
    assert post.attrs["sampler"] == "dpmpp-2m" and post.attrs["denoiser_calls_per_draw"] == 20
    assert post.attrs["rho"] == float("inf") and post.attrs["num_steps"] == 20
    assert runner.num_diverged == 0


@pytest.mark.parametrize("kind", ["half", "holes"])
def test_amortized_sampler_is_exact_with_a_mask(amortized_prior, kind):
    if kind == "half":
        mask = np.zeros((8, 8), bool)
        mask[:, :4] = True
    else:
        mask = random_holes_mask(8, seed=2, fraction=0.3)
    case = make_gaussian_case(mask=mask, seed=1)
    runner = _run(amortized_prior, case, seed=3, mask=mask)
    _check(runner.get_samples()["theta_kappa"], case["exact"])


def test_sde_sampler_on_the_conditional_oracle(amortized_prior):
    """Euler-Maruyama with 256 steps: measured 0.03 sd bias, spread within 3 %."""
    case = make_gaussian_case(seed=5)
    runner = IIDSampler(AmortizedPosteriorSampler(shear_model, sampler="sde", num_steps=256),
                        NUM, chunk_size=NUM, progress_bar=False)  # fmt: skip
    runner.run(jax.random.PRNGKey(4), prior=amortized_prior, shear_obs=case["shear"],
               noise_std=NOISE)  # fmt: skip
    _check(runner.get_samples()["theta_kappa"], case["exact"], std_tol=0.1)


@pytest.mark.parametrize("masked", [False, True])
def test_dpmpp_2m_sampler_on_the_conditional_oracle(amortized_prior, masked):
    """DPM-Solver++(2M) at the default 20 log-uniform steps (20 denoiser calls per draw):
    exact within the same tolerances, with and without a mask; and from the same initial noise,
    draw by draw, as close to the converged flow (Heun, 128 steps) as 32 steps of 2M on the
    rho = 7 ladder (median error 0.011 against 0.010 posterior sd; allowed: 1.2x). Measured
    here with 4096 draws: spread +1.7 % (rho = 7, 32 steps: +1.9 %, 16 steps: +8.5 %)."""
    mask = random_holes_mask(8, seed=2, fraction=0.3) if masked else None
    case = make_gaussian_case(mask=mask, seed=1 if masked else 5)
    kwargs = {} if mask is None else {"mask": mask}
    draws = {}
    runs = {"default": {}, "rho7": dict(num_steps=32, rho=7.0),
            "3m16": dict(sampler="dpmpp-3m", num_steps=16), "fast": AMORTIZED_FAST_SETTINGS,
            "converged": dict(sampler="ode", num_steps=128)}  # fmt: skip
    for name, settings in runs.items():
        kernel = AmortizedPosteriorSampler(shear_model, **settings)
        runner = IIDSampler(kernel, NUM, chunk_size=NUM // 2, progress_bar=False)
        runner.run(jax.random.PRNGKey(3 if masked else 0), prior=amortized_prior,
                   shear_obs=case["shear"], noise_std=NOISE, **kwargs)  # fmt: skip
        draws[name] = np.asarray(runner.get_samples()["theta_kappa"])
    assert AmortizedPosteriorSampler(shear_model).settings()["denoiser_calls_per_draw"] == 20
    assert AmortizedPosteriorSampler(shear_model, sampler="ode").settings()[
        "denoiser_calls_per_draw"] == 39  # fmt: skip
    _check(draws["default"], case["exact"])
    sd = np.sqrt(np.diag(case["exact"].cov))
    err = {k: np.abs(draws[k] - draws["converged"]) / sd for k in ("default", "rho7", "3m16")}
    spread = draws["default"].std(0) / draws["converged"].std(0) - 1
    report = {k: (np.median(v), v.max()) for k, v in err.items()} | {"spread": spread.max()}
    assert np.median(err["default"]) <= 1.2 * np.median(err["rho7"]), report
    assert err["default"].max() < 0.15 and np.all(np.abs(spread) < 0.03), report
    # DPM-Solver++(3M): 16 calls closer to the converged flow than the default's 20 (median
    # 0.008 against 0.011 posterior sd)
    _check(draws["3m16"], case["exact"])
    assert np.median(err["3m16"]) < np.median(err["default"]), report
    # AMORTIZED_FAST_SETTINGS (3M, 12 calls): within the oracle's tolerances, its spreads at
    # most 4 % wider than the converged flow's (measured with 4096 draws: +3.0 %)
    fast = AmortizedPosteriorSampler(shear_model, **AMORTIZED_FAST_SETTINGS).settings()
    assert fast["denoiser_calls_per_draw"] == 12
    _check(draws["fast"], case["exact"])
    fast_spread = draws["fast"].std(0) / draws["converged"].std(0) - 1
    assert np.all(np.abs(fast_spread) < 0.04), fast_spread.max()
    solvers = "'ode', 'dpmpp-2m', 'dpmpp-3m', 'sde'"
    with pytest.raises(ValueError, match=f"sampler must be one of {solvers}"):
        AmortizedPosteriorSampler(shear_model, sampler="dpm")


def _observations(seeds, masks):
    shears, stds, exact = [], [], []
    for seed, mask in zip(seeds, masks, strict=True):
        case = make_gaussian_case(mask=mask, seed=seed)
        full = np.ones((1, 2, 8, 8), bool) if mask is None else np.broadcast_to(mask, (1, 2, 8, 8))
        shears.append(np.where(full, np.nan_to_num(case["shear"]), 0.0))
        stds.append(np.where(full, NOISE, np.inf))
        exact.append(case["exact"])
    obs = ShearObservation(jnp.asarray(np.stack(shears), jnp.float32),
                           jnp.asarray(np.stack(stds), jnp.float32))  # fmt: skip
    return obs, exact


def test_sample_many_equals_separate_runs_and_is_exact(amortized_prior):
    masks = [None, random_holes_mask(8, seed=1, fraction=0.2), None]
    obs, exact = _observations([2, 3, 4], masks)
    key = jax.random.PRNGKey(7)
    many = np.asarray(sample_many(key, amortized_prior, obs, 512))
    assert many.shape == (3, 512, amortized_prior.dim)
    keys = jax.random.split(key, 3)
    for k in range(3):
        one = sample_one(keys[k], amortized_prior, jax.tree.map(lambda a: a[k], obs), 512)
        np.testing.assert_allclose(np.asarray(one), many[k], rtol=1e-4, atol=1e-6)
        # 512 draws: SE 0.044 sd for the means, 3.1 % for the spreads
        _check(many[k], exact[k], mean_tol=0.15, std_tol=0.12)
    assert not np.allclose(many[0].mean(0), many[2].mean(0))  # each its own posterior


# -- refusals -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ranged_prior():
    return gaussian_amortized_prior(MAP_SHAPE, param_names=NAMES, observation_range=RANGE)[0]


def _refused(prior, match, model=shear_model, **kwargs):
    case = make_gaussian_case(seed=5)
    runner = IIDSampler(AmortizedPosteriorSampler(model), 8, progress_bar=False)
    kwargs = {"shear_obs": case["shear"], "noise_std": NOISE, **kwargs}
    with pytest.raises(ValueError, match=match):
        runner.run(jax.random.PRNGKey(0), prior=prior, **kwargs)


def test_refuses_a_prior_without_a_conditional_model():
    case = make_gaussian_case(seed=5)
    _refused(case["prior"], "needs an AmortizedPrior .* train --conditional")


def test_refuses_noise_and_masks_outside_the_training_range(ranged_prior):
    _refused(ranged_prior, "noise level outside the training range", noise_std=3 * NOISE)
    _refused(ranged_prior, "noise level outside the training range", noise_std=0.3 * NOISE)
    big = np.ones((8, 8), bool)
    big[:, :4] = False
    _refused(ranged_prior, r"hides 50.0% .* at most 40%", mask=big)
    per_component = np.ones((1, 2, 8, 8), bool)
    per_component[:, 0, :2] = False
    _refused(ranged_prior, "differs between tomographic bins or shear components",
             mask=per_component)  # fmt: skip
    # inside the range: runs (noise 1.5x, 20 % masked)
    small = random_holes_mask(8, seed=1, fraction=0.2)
    case = make_gaussian_case(seed=5)
    runner = IIDSampler(AmortizedPosteriorSampler(shear_model, num_steps=4), 8,
                        progress_bar=False)  # fmt: skip
    runner.run(jax.random.PRNGKey(0), prior=ranged_prior, shear_obs=case["shear"],
               noise_std=1.5 * NOISE, mask=small)  # fmt: skip


def _rotated_model(prior, shear_obs=None, noise_std=NOISE):
    """A forward model other than Kaiser-Squires: the shear components swapped."""
    x = numpyro.sample("theta_kappa", prior)
    g = kaiser_squires(prior.unpack(x)[1])[:, ::-1]
    numpyro.sample("shear", dist.Normal(g, noise_std).to_event(4), obs=shear_obs)


def _student_model(prior, shear_obs=None, noise_std=NOISE):
    x = numpyro.sample("theta_kappa", prior)
    g = kaiser_squires(prior.unpack(x)[1])
    numpyro.sample("shear", dist.StudentT(4.0, g, noise_std).to_event(4), obs=shear_obs)


def test_refuses_other_forward_models(ranged_prior):
    _refused(ranged_prior, "not the forward model .* differs from kaiser_squires",
             model=_rotated_model)  # fmt: skip
    _refused(ranged_prior, "trained for Kaiser-Squires shear with Gaussian noise",
             model=_student_model)  # fmt: skip


def test_sample_many_refuses_another_preset_and_out_of_range(ranged_prior):
    obs, _ = _observations([2], [None])
    wrong = ShearObservation(jnp.zeros((1, 2, 2, 16, 16)), jnp.full((1, 2, 2, 16, 16), NOISE))
    with pytest.raises(ValueError, match="trained for preset"):
        sample_many(jax.random.PRNGKey(0), ranged_prior, wrong, 4)
    loud = ShearObservation(obs.shear, 5 * obs.noise_std)
    with pytest.raises(ValueError, match="observation 0|noise level"):
        sample_many(jax.random.PRNGKey(0), ranged_prior, loud, 4)
