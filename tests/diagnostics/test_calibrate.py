"""run_calibration with an exact-posterior oracle sampler, and observation files."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from numpyro_diffprior.commands.calibrate import run_calibration
from numpyro_diffprior.observations import (
    load_observation,
    save_observation,
    simulate_observation,
)
from numpyro_diffprior.presets import get_preset

PRESET = get_preset("tiny")  # C=2, N=16, P=2
PRIOR_MEAN, PRIOR_STD = np.array([0.3, 0.8]), np.array([0.1, 0.15])
Z_SCALE, NOISE = 0.5, 0.5
_Y, _X = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
PATTERNS = 0.06 * np.stack(
    [
        np.stack([np.cos(2 * np.pi * _X / 16)] * 2),
        np.stack([np.sin(2 * np.pi * (_X + _Y) / 16)] * 2),
    ]
)  # (P, C, N, N)


def oracle_model(preset="tiny", shear_obs=None, mask=None, noise_std=None, emulator=None):
    """Linear-Gaussian model with lensing_model's sites: kappa = patterns.theta_n + s z."""
    values = [
        numpyro.sample(n, dist.Normal(PRIOR_MEAN[i], PRIOR_STD[i]))
        for i, n in enumerate(PRESET.param_names)
    ]
    theta = numpyro.deterministic("theta", jnp.stack(values))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand(PRESET.map_shape).to_event(3))
    kappa = jnp.einsum("p,pcyx->cyx", (theta - PRIOR_MEAN) / PRIOR_STD, PATTERNS) + Z_SCALE * z
    kappa = numpyro.deterministic("kappa", kappa)
    numpyro.sample(
        "shear", dist.Normal(jnp.stack([kappa, -kappa], 1), NOISE).to_event(4), obs=shear_obs
    )


def _exact_sampler(num_draws, spread=1.0):
    """Exact posterior draws of x = [theta_n, z] (spread != 1 widens/narrows them)."""
    n_pix = int(np.prod(PRESET.map_shape))
    g = np.concatenate([PATTERNS.reshape(2, -1).T, Z_SCALE * np.eye(n_pix)], axis=1)
    h = np.concatenate([g, -g])
    cov = np.linalg.inv(np.eye(g.shape[1]) + h.T @ h / NOISE**2)
    chol = np.linalg.cholesky(cov)
    gain = cov @ h.T / NOISE**2

    def sampler_fn(rng_key, obs):
        y = np.concatenate([obs["shear"][:, 0].ravel(), obs["shear"][:, 1].ravel()])
        mean = gain @ y
        rng = np.random.default_rng(np.asarray(jax.random.key_data(rng_key)))
        eps = rng.standard_normal((num_draws, g.shape[1]))
        x = mean + spread * eps @ chol.T
        theta = PRIOR_MEAN + PRIOR_STD * x[:, :2]
        return theta, (x @ g.T).reshape((num_draws,) + PRESET.map_shape)

    return sampler_fn


@pytest.mark.parametrize("spread", [1.0, 0.3])
def test_run_calibration_with_exact_oracle(spread):
    out = run_calibration(
        jax.random.key(0),
        "tiny",
        _exact_sampler(60, spread),
        200,
        model=oracle_model,
        progress=False,
        seed=1,
    )
    assert out["theta_samples"].shape == (200, 60, 2)
    assert out["kappa_samples"].shape == (200, 60) + PRESET.map_shape
    for block in ("theta", "kappa", "joint"):
        mira, tarp = out["summary"][block]["mira"], out["summary"][block]["tarp"]
        if spread == 1.0:  # exact posterior: MIRA within 3.5 bootstrap sd of its exact mean
            assert abs(mira.score - mira.expected) < 3.5 * mira.error, block
            assert tarp.ks_pvalue > 1e-3, block
        else:  # draws 0.3x too narrow: over-confident
            assert mira.score < mira.expected - 3 * mira.error, block
            assert tarp.ks_pvalue < 1e-3, block


def test_run_calibration_checks_sampler_output():
    bad = lambda key, obs: (np.zeros((10, 3)), np.zeros((10,) + PRESET.map_shape))
    with pytest.raises(ValueError, match="theta of shape"):
        run_calibration(jax.random.key(0), "tiny", bad, 3, model=oracle_model, progress=False)


def test_observation_round_trip(tmp_path):
    mask = np.ones((16, 16), bool)
    mask[:4] = False
    obs = simulate_observation(
        jax.random.key(2), "tiny", theta="fiducial", mask=mask, model=oracle_model
    )
    np.testing.assert_allclose(obs["theta_true"], [0.2664, 0.831], rtol=1e-6)
    assert obs["shear"].shape == PRESET.shear_shape and np.all(obs["shear"][:, :, :4] == 0)
    path = save_observation(
        tmp_path / "obs.npz",
        obs["shear"],
        preset="tiny",
        mask=mask,
        theta_true=obs["theta_true"],
        kappa_true=obs["kappa_true"],
    )
    back = load_observation(path)
    assert back["preset"] == "tiny" and back["noise_std"] is None
    np.testing.assert_array_equal(back["shear"], obs["shear"])
    np.testing.assert_array_equal(back["mask"], obs["mask"])
    np.testing.assert_allclose(back["kappa_true"], obs["kappa_true"])
    with pytest.raises(ValueError, match="shear must have shape"):
        save_observation(tmp_path / "bad.npz", np.zeros((2, 2, 8, 8)), preset="tiny")
    with pytest.raises(ValueError, match="theta must be"):
        simulate_observation(jax.random.key(0), "tiny", theta="prior", model=oracle_model)
    with pytest.raises(FileNotFoundError):
        load_observation(tmp_path / "missing.npz")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["diffusion", "langevin"])
def test_diffusion_sampler_fn_shapes(method):
    """The built-in sampler_fn runs the package's samplers on a Gaussian-oracle prior."""
    import jax.numpy as jnp

    from numpyro_diffprior import oracles
    from numpyro_diffprior.commands.calibrate import diffusion_sampler_fn
    from numpyro_diffprior.diffusion.normalization import Normalizer
    from numpyro_diffprior.prior import DiffusionPrior

    map_shape = (2, 8, 8)
    prior = DiffusionPrior(
        apply_fn=oracles.gaussian_denoise,
        params=oracles.gaussian_joint_oracle(2, map_shape, seed=0),
        normalizer=Normalizer(jnp.array([0.3, 0.8]), jnp.array([0.1, 0.2]), jnp.ones(2) * 0.02),
        n_params=2,
        map_shape=map_shape,
    )
    kwargs = {"num_steps": 8} if method == "diffusion" else {"num_levels": 8}
    fn = diffusion_sampler_fn(prior, num_draws=8, method=method, chunk_size=8, **kwargs)
    obs = {"shear": np.zeros((2, 2, 8, 8)), "mask": None, "noise_std": np.array([0.01, 0.02])}
    theta, kappa = fn(jax.random.key(0), obs)
    assert np.shape(theta) == (8, 2) and np.shape(kappa) == (8,) + map_shape
    assert np.all(np.isfinite(theta)) and np.all(np.isfinite(kappa))
    with pytest.raises(ValueError, match="method"):
        diffusion_sampler_fn(prior, num_draws=8, method="hmc")


def test_run_calibration_resumes_after_a_crash(tmp_path):
    progress = tmp_path / "progress.npz"
    calls = []
    exact = _exact_sampler(8)

    def crashing(rng_key, obs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return exact(rng_key, obs)

    kwargs = dict(model=oracle_model, progress=False, seed=1, run_label="exact")
    with pytest.raises(KeyboardInterrupt):
        run_calibration(jax.random.key(4), "tiny", crashing, 6, progress_file=progress, **kwargs)
    with np.load(progress) as saved:
        assert saved["theta_samples"].shape == (3, 8, 2)
    counted = []

    def counting(rng_key, obs):
        counted.append(1)
        return exact(rng_key, obs)

    resumed = run_calibration(
        jax.random.key(4), "tiny", counting, 6, progress_file=progress, **kwargs
    )
    assert len(counted) == 3  # only the unfinished observations were sampled again
    whole = run_calibration(jax.random.key(4), "tiny", exact, 6, **kwargs)
    for field in ("theta_samples", "kappa_samples", "theta_true", "kappa_true"):
        np.testing.assert_allclose(resumed[field], whole[field], rtol=1e-6, err_msg=field)
    with pytest.raises(ValueError, match="another calibration run"):
        run_calibration(jax.random.key(4), "tiny", exact, 7, progress_file=progress, **kwargs)
    other = dict(kwargs, run_label="wider")
    with pytest.raises(ValueError, match="another calibration run"):
        run_calibration(jax.random.key(4), "tiny", exact, 6, progress_file=progress, **other)


def test_calibrate_command_writes_report_and_resumes(tmp_path, capsys):
    from numpyro_diffprior.cli import main

    out = tmp_path / "cal"
    argv = ["calibrate", "--method", "langevin", "--num-obs", "2", "--num-draws", "4"]
    argv += ["--num-steps", "2", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    for name in ("report.md", "tarp.png", "mira.png", "progress.npz"):
        assert (out / name).is_file(), name
    with np.load(out / "progress.npz") as saved:
        assert saved["theta_samples"].shape == (2, 4, 2)
        assert saved["kappa_samples"].shape == (2, 4, 5, 32, 32)
    assert main(argv) == 0  # resumes with nothing left to sample: the same report
    other = argv[:-4] + ["3", "--out", str(out), "--no-progress"]  # --num-steps 3
    assert main(other) == 2
    assert "another calibration run" in capsys.readouterr().err


def test_run_calibration_draws_truths_inside_the_emulator_box():
    """The prior puts 2 % of Omega_c below the tables' 0.02: 200 truths would hit it ~4 times."""
    from numpyro_diffprior.cosmology.emulator import load_emulator

    emulator = load_emulator("tiny")
    fake = lambda key, obs: (np.tile(obs["theta_true"], (3, 1)), np.zeros((3, 2, 16, 16)))
    out = run_calibration(jax.random.key(3), "tiny", fake, 200, progress=False)
    bounds = np.asarray(emulator.bounds)
    assert np.all(out["theta_true"] >= bounds[:, 0]) and np.all(out["theta_true"] <= bounds[:, 1])
    assert out["theta_true"][:, 0].std() > 0.1  # still the prior, not a point
