"""Non-centred HMC refinement: exact whitenings, and the shrinkage fix on the amplitude oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from infer_cases import NOISE

from numpyro_diffprior import testing as oracles
from numpyro_diffprior.infer import (
    DiffusionPosteriorSampler,
    IIDSampler,
    NonCentredHMC,
    shear_model,
)
from numpyro_diffprior.infer.noncentred import identity_whitening, spectral_whitening
from numpyro_diffprior.prior import DiffusionPrior
from numpyro_diffprior.simulator.shear import kaiser_squires


def _tiny_prior():
    from numpyro_diffprior.diffusion.normalization import Normalizer
    from numpyro_diffprior.presets import get_preset

    preset = get_preset("tiny")
    normalizer = Normalizer(
        jnp.asarray([0.26, 0.8]), jnp.asarray([0.05, 0.1]), jnp.asarray([0.01, 0.02])
    )
    return DiffusionPrior(
        lambda x, s: x, normalizer=normalizer, n_params=2, map_shape=preset.map_shape,
        preset="tiny",
    )  # fmt: skip


def _check_whitening(whitening, theta_n, dim, key):
    w = jax.random.normal(key, (dim,))
    kappa, log_det = whitening.to_map(theta_n, w)
    np.testing.assert_allclose(whitening.to_latent(theta_n, kappa), w, atol=2e-4)
    jac = jax.jacfwd(lambda v: whitening.to_map(theta_n, v)[0])(w)
    sign, logdet = np.linalg.slogdet(np.asarray(jac, np.float64))
    assert sign != 0
    np.testing.assert_allclose(float(log_det), logdet, rtol=1e-4, atol=1e-2)


def test_spectral_whitening_inverts_and_log_det_is_the_jacobian():
    prior = _tiny_prior()
    whitening = spectral_whitening(prior)
    for k, theta_n in enumerate(([0.0, 0.0], [1.5, -1.0])):
        _check_whitening(whitening, jnp.asarray(theta_n), prior.dim - 2, jax.random.PRNGKey(k))
    # the colouring follows theta: more sigma_8, more map power
    w = jax.random.normal(jax.random.PRNGKey(3), (prior.dim - 2,))
    low, high = (whitening.to_map(jnp.asarray([0.0, t]), w)[0] for t in (-1.0, 1.0))
    assert float(jnp.std(high)) > 1.3 * float(jnp.std(low))


def test_amplitude_whitening_is_exact():
    oracle, _ = oracles.amplitude_oracle((1, 8, 8))
    whitening = oracles.amplitude_whitening(oracle)
    _check_whitening(whitening, jnp.asarray([0.7]), 64, jax.random.PRNGKey(0))
    # under the prior, w = T_A^{-1}(kappa) is white whatever A
    prior = DiffusionPrior(
        apply_fn=oracles.amplitude_denoise, params=oracle, normalizer=_, n_params=1,
        map_shape=(1, 8, 8),
    )  # fmt: skip
    x = prior.to_normalized(prior.sample(jax.random.PRNGKey(1), (400,)))
    w = jax.vmap(whitening.to_latent)(x[:, :1], x[:, 1:])
    assert abs(float(jnp.std(w)) - 1.0) < 0.02  # 25,600 values: sd of the sd ~ 0.005
    assert abs(float(jnp.corrcoef(x[:, 0], jnp.std(w, axis=1))[0, 1])) < 0.15


def _far_observation():
    """The benchmark's far case: 16 x 16, noise 0.03, posterior 0.95 prior sd below the mean."""
    shape = (1, 16, 16)
    oracle, normalizer = oracles.amplitude_oracle(shape)
    prior = DiffusionPrior(
        apply_fn=oracles.amplitude_denoise, params=oracle, normalizer=normalizer, n_params=1,
        map_shape=shape, param_names=("amplitude",),
    )  # fmt: skip
    truth = prior.sample(jax.random.PRNGKey(2))
    eps = jax.random.normal(jax.random.PRNGKey(3), (1, 2, 16, 16))
    shear = kaiser_squires(prior.unpack(truth)[1]) + 0.03 * eps
    operator = oracles.linear_operator_matrix(kaiser_squires, shape)
    exact = oracles.amplitude_posterior(
        oracle, normalizer, shape, operator, np.asarray(shear, np.float64), 0.03
    )
    return prior, oracle, shear, exact


@pytest.mark.slow
def test_noncentred_hmc_removes_mmps_shrinkage_on_the_amplitude_oracle():
    prior, oracle, shear, exact = _far_observation()
    draws = {}
    for steps in (0, 40):
        # MMPS with the shipped network's settings, whose shrinkage the refinement removes
        whitening = oracles.amplitude_whitening(oracle)
        refinements = (NonCentredHMC(steps, step_size=0.05, whitening=whitening),) if steps else ()
        sampler = DiffusionPosteriorSampler.for_shipped_network(
            shear_model, refinements=refinements
        )
        runner = IIDSampler(sampler, 128, chunk_size=128, progress_bar=False)
        runner.run(jax.random.PRNGKey(0), prior=prior, shear_obs=shear, noise_std=0.03)
        draws[steps] = np.asarray(runner.get_samples()["theta"])[:, 0]
    bias = {k: (a.mean() - exact.mean) / exact.std for k, a in draws.items()}
    ratio = {k: a.std() / exact.std for k, a in draws.items()}
    # 128 draws: the sd of the mean is 0.09 posterior sd; MMPS alone is +1.5 sd off
    assert bias[0] > 1.0
    assert abs(bias[40]) < 0.35, bias
    assert 0.8 < ratio[40] < 1.2, ratio


def test_noncentred_hmc_keeps_the_gaussian_posterior(gaussian_case):
    """Centred (identity) HMC from the exact MMPS draws stays on the exact posterior."""
    exact = gaussian_case["exact"]
    refine = NonCentredHMC(10, leapfrog=8, step_size=0.02, sigma=0.01,
                           whitening=identity_whitening())  # fmt: skip
    sampler = DiffusionPosteriorSampler.for_shipped_network(shear_model, refinements=(refine,))
    sampler = IIDSampler(sampler, 256, chunk_size=256, progress_bar=False)
    sampler.run(jax.random.PRNGKey(4), prior=gaussian_case["prior"],
                shear_obs=gaussian_case["shear"], noise_std=NOISE)  # fmt: skip
    theta = np.asarray(sampler.get_samples()["theta"])
    sd = np.sqrt(np.diag(exact.cov)[:2])
    z = (theta.mean(0) - exact.mean[:2]) / sd
    assert np.all(np.abs(z) < 0.35), z  # 256 draws: sd of the mean 0.06 sd
    assert np.all(np.abs(theta.std(0) / sd - 1) < 0.2), theta.std(0) / sd


def test_noncentred_settings_are_validated():
    with pytest.raises(ValueError, match="steps and leapfrog must be >= 1"):
        NonCentredHMC(steps=0)
    with pytest.raises(ValueError, match="step_size and sigma"):
        NonCentredHMC(steps=2, sigma=0.0)
    with pytest.raises(ValueError, match="whitening"):
        NonCentredHMC(steps=2, whitening="fourier")
    s = DiffusionPosteriorSampler(
        shear_model, sampler="sde", refinements=(NonCentredHMC(3, leapfrog=4),)
    )
    assert s.settings()["denoiser_calls_per_draw"] == 64 + 12


def test_gaussian_log_likelihood_matches_the_model(gaussian_case):
    from numpyro_diffprior.infer.guidance import normalised_observation
    from numpyro_diffprior.infer.model_tracing import (
        inspect_model,
        linear_gaussian,
        make_log_likelihood,
    )
    from numpyro_diffprior.infer.noncentred import gaussian_log_likelihood

    prior = gaussian_case["prior"]
    kwargs = dict(prior=prior, shear_obs=gaussian_case["shear"], noise_std=NOISE)
    info = inspect_model(shear_model, kwargs)
    obs = normalised_observation(prior, linear_gaussian(shear_model, info, kwargs))
    ours, model = gaussian_log_likelihood(obs), make_log_likelihood(shear_model, info, kwargs)
    xs = jax.random.normal(jax.random.PRNGKey(0), (2, prior.dim))
    diffs = [float(ours(x) - model(prior.from_normalized(x))) for x in xs]
    assert abs(float(ours(xs[0]) - ours(xs[1]))) > 1.0  # the check is not vacuous
    np.testing.assert_allclose(diffs[0], diffs[1], rtol=0, atol=1e-3 * abs(diffs[0]) + 1e-2)
