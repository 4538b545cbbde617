"""DiffusionPrior on the Gaussian oracle: sampling, genuine log density, coordinates, pytree."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from numpyro.infer import MCMC, NUTS, Predictive

from numpyro_diffprior import testing as oracles
from numpyro_diffprior.diffusion.normalization import Normalizer
from numpyro_diffprior.infer.models import shear_model
from numpyro_diffprior.prior import DiffusionPrior, NoGradientError

MAP_SHAPE = (1, 6, 6)


@pytest.fixture(scope="module")
def setup():
    return oracles.gaussian_oracle_prior(
        MAP_SHAPE,
        seed=3,
        num_steps=6,  # sampling accuracy is tested separately
    )


@pytest.mark.parametrize("sampler", ["ode", "sde"])
def test_sample_moments_match_oracle(setup, sampler):
    _, oracle, normalizer = setup
    prior = DiffusionPrior(
        apply_fn=oracles.gaussian_denoise,
        params=oracle,
        normalizer=normalizer,
        n_params=2,
        map_shape=MAP_SHAPE,
        sampler=sampler,
        num_steps=32 if sampler == "ode" else 128,
    )
    n = 4000
    x = np.asarray(jax.jit(lambda k: prior.sample(k, (n,)))(jax.random.PRNGKey(0)))
    mean, cov = oracles.gaussian_prior_moments(oracle, normalizer, MAP_SHAPE)
    sd = np.sqrt(np.diag(cov))
    assert x.shape == (n, 2 + 36)
    assert np.max(np.abs(x.mean(0) - mean) / sd) < 5 / np.sqrt(n)
    assert np.max(np.abs(x.std(0) / sd - 1)) < 0.07


def test_log_prob_is_the_exact_density(setup):
    prior, oracle, normalizer = setup
    x = prior.sample(jax.random.PRNGKey(1), (4,))
    x = jnp.concatenate([x, x[:1] + 0.05])  # also a point off the sample
    exact = oracles.gaussian_log_density(oracle, normalizer, MAP_SHAPE, np.asarray(x))
    got = np.asarray(jax.jit(prior.log_prob)(x))
    np.testing.assert_allclose(got, exact, atol=0.02)
    assert got.shape == (5,)


def test_log_prob_hutchinson_runs(setup):
    prior, *_ = setup
    hutch = DiffusionPrior(
        apply_fn=prior.apply_fn,
        params=prior.params,
        normalizer=prior.normalizer,
        n_params=2,
        map_shape=MAP_SHAPE,
        num_probes=64,
        log_prob_steps=16,
    )
    x = prior.sample(jax.random.PRNGKey(2), (2,))
    exact = oracles.gaussian_log_density(prior.params, prior.normalizer, MAP_SHAPE, np.asarray(x))
    assert np.all(np.abs(np.asarray(hutch.log_prob(x)) - exact) < 5.0)


def test_gradient_of_log_prob_and_nuts_are_refused(setup):
    prior, *_ = setup
    x = prior.sample(jax.random.PRNGKey(3))
    with pytest.raises(NoGradientError, match="not supported"):
        jax.grad(prior.log_prob)(x)

    def model():
        numpyro.sample("theta_kappa", prior)

    with pytest.raises(NoGradientError):
        MCMC(NUTS(model), num_warmup=2, num_samples=2, progress_bar=False).run(
            jax.random.PRNGKey(0)
        )


def test_score_and_denoise_are_physical_chain_rule_images(setup):
    prior, oracle, normalizer = setup
    mean, cov = oracles.gaussian_prior_moments(oracle, normalizer, MAP_SHAPE)
    s = np.asarray(prior.scale(), np.float64)
    x = np.asarray(prior.sample(jax.random.PRNGKey(4), (2,)), np.float64)
    sigma = 0.4  # noise added in normalised space: physical covariance + sigma^2 diag(s^2)
    noisy_cov = cov + sigma**2 * np.diag(s**2)
    expected = -np.linalg.solve(noisy_cov, (x - mean).T).T
    got = np.asarray(prior.score(jnp.asarray(x, jnp.float32), sigma))
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())
    den = np.asarray(prior.denoise(jnp.asarray(x, jnp.float32), sigma))
    np.testing.assert_allclose(den, x + sigma**2 * s**2 * expected, atol=1e-4)


def test_pack_unpack_and_pytree(setup):
    prior, *_ = setup
    x = prior.sample(jax.random.PRNGKey(5), (3,))
    theta, kappa = prior.unpack(x)
    assert theta.shape == (3, 2) and kappa.shape == (3,) + MAP_SHAPE
    np.testing.assert_array_equal(prior.pack(theta, kappa), x)
    leaves, treedef = jax.tree.flatten(prior)
    again = jax.tree.unflatten(treedef, leaves)
    np.testing.assert_array_equal(
        again.sample(jax.random.PRNGKey(0)), prior.sample(jax.random.PRNGKey(0))
    )
    jitted = jax.jit(lambda d, k: d.sample(k, (2,)))(prior, jax.random.PRNGKey(0))
    assert jitted.shape == (2, prior.dim)
    vmapped = jax.vmap(lambda k: prior.sample(k))(jax.random.split(jax.random.PRNGKey(0), 3))
    assert vmapped.shape == (3, prior.dim)
    scores = jax.jit(lambda d, v: d.score(v, 0.5))(prior, x)
    assert scores.shape == x.shape and bool(jnp.all(jnp.isfinite(scores)))


def test_predictive_gives_prior_predictive_shear(setup):
    prior, *_ = setup
    noise = 0.003
    pred = Predictive(shear_model, num_samples=100)(jax.random.PRNGKey(6), prior, noise_std=noise)
    assert pred["shear"].shape == (100, 1, 2, 6, 6)
    from numpyro_diffprior.simulator.shear import kaiser_squires

    resid = pred["shear"] - kaiser_squires(pred["kappa"])
    assert abs(float(jnp.std(resid)) / noise - 1) < 0.06
    np.testing.assert_allclose(pred["theta"], pred["theta_kappa"][:, :2])


def test_constructor_errors(setup):
    prior, oracle, normalizer = setup
    with pytest.raises(ValueError, match="exactly one"):
        DiffusionPrior(normalizer=normalizer, n_params=2, map_shape=MAP_SHAPE)
    with pytest.raises(ValueError, match="sampler"):
        DiffusionPrior(
            lambda x, s: x, normalizer=normalizer, n_params=2, map_shape=MAP_SHAPE, sampler="x"
        )
    with pytest.raises(ValueError, match="normalizer"):
        DiffusionPrior(lambda x, s: x, normalizer=normalizer, n_params=3, map_shape=MAP_SHAPE)
    with pytest.raises(ValueError, match="shape"):
        prior.log_prob(jnp.zeros(5))


@pytest.mark.slow
def test_load_from_checkpoint(tmp_path):
    from numpyro_diffprior.checkpoints import load_checkpoint, save_checkpoint
    from numpyro_diffprior.nets import NetworkConfig, make_network
    from numpyro_diffprior.presets import get_preset
    from numpyro_diffprior.training import TrainingConfig, make_trainer

    small = NetworkConfig(
        channels=8, channel_mult=(1, 2), emb_dim=16, theta_hidden=16, num_groups=4
    )
    preset = get_preset("tiny")
    norm = Normalizer(jnp.array([0.3, 0.8]), jnp.array([0.2, 0.14]), jnp.array([0.01, 0.02]))
    init_fn, apply_fn = make_network(small, preset)
    cfg = TrainingConfig(batch_size=4, warmup_steps=1, total_steps=10)
    state = make_trainer(init_fn, apply_fn, norm, preset, cfg).init(jax.random.key(3))
    path = save_checkpoint(
        tmp_path / "ck",
        state,
        preset=preset,
        normalizer=norm,
        network_config=small,
        training_config=cfg,
    )
    prior = DiffusionPrior.load(path, num_steps=2)
    assert prior.preset == "tiny" and prior.param_names == preset.param_names
    x = jax.random.normal(jax.random.key(0), (2, prior.dim))
    sigma = jnp.array([0.5, 2.0])
    expected = load_checkpoint(path).denoise_fn()(x, sigma)
    np.testing.assert_allclose(prior.denoise_normalized(x, sigma), expected, rtol=1e-5, atol=1e-6)
    draws = jax.jit(lambda d, k: d.sample(k, (2,)))(prior, jax.random.key(1))
    assert draws.shape == (2, prior.dim) and bool(jnp.all(jnp.isfinite(draws)))


def test_prior_from_checkpoint_pickles_and_shares_programs():
    # Worker processes receive priors by pickle; the network travels as its configuration.
    import pickle

    prior = DiffusionPrior.from_pretrained("lsst-y10-coarse")
    copy = pickle.loads(pickle.dumps(prior))
    assert copy.apply_fn == prior.apply_fn  # equal networks: one compiled program for both
    x = jax.random.normal(jax.random.key(0), (2, prior.dim))
    sigma = jnp.array([0.1, 3.0])
    np.testing.assert_array_equal(
        copy.denoise_normalized(x, sigma), prior.denoise_normalized(x, sigma)
    )
