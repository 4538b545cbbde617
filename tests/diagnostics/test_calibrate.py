"""run_calibration with an exact-posterior oracle sampler, and observation files."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from numpyro_diffprior.diagnostics.calibrate import run_calibration
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


class ExactSampler:
    """Exact posterior draws of x = [theta_n, z] (spread != 1 widens/narrows them); picklable,
    so that worker processes can run it."""

    def __init__(self, num_draws, spread=1.0):
        n_pix = int(np.prod(PRESET.map_shape))
        self.g = np.concatenate([PATTERNS.reshape(2, -1).T, Z_SCALE * np.eye(n_pix)], axis=1)
        h = np.concatenate([self.g, -self.g])
        cov = np.linalg.inv(np.eye(self.g.shape[1]) + h.T @ h / NOISE**2)
        self.chol = np.linalg.cholesky(cov)
        self.gain = cov @ h.T / NOISE**2
        self.num_draws, self.spread = num_draws, spread

    def __call__(self, rng_key, obs):
        y = np.concatenate([obs["shear"][:, 0].ravel(), obs["shear"][:, 1].ravel()])
        mean = self.gain @ y
        rng = np.random.default_rng(np.asarray(jax.random.key_data(rng_key)))
        eps = rng.standard_normal((self.num_draws, self.g.shape[1]))
        x = mean + self.spread * eps @ self.chol.T
        theta = PRIOR_MEAN + PRIOR_STD * x[:, :2]
        return theta, (x @ self.g.T).reshape((self.num_draws,) + PRESET.map_shape)


class FailingSampler:
    def __call__(self, rng_key, obs):
        raise RuntimeError("sampler failed in the worker")


@pytest.mark.parametrize("spread", [1.0, 0.3])
def test_run_calibration_with_exact_oracle(spread):
    out = run_calibration(
        jax.random.key(0),
        "tiny",
        ExactSampler(60, spread),
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

    from numpyro_diffprior import testing as oracles
    from numpyro_diffprior.diagnostics.calibration_samplers import diffusion_sampler_fn
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
    exact = ExactSampler(8)

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


def test_progress_is_saved_at_the_interval_and_when_the_run_ends(tmp_path, monkeypatch):
    """save_every_s=0 saves after each of 4 observations; an interval longer than the run saves
    once, at the end (with all 4); a negative interval is refused."""
    from numpyro_diffprior.diagnostics import calibrate

    real, saves = calibrate._save_progress, []

    def counted(path, run_id, fields, wall_time_s):
        saves.append(min(len(f) for f in fields))
        real(path, run_id, fields, wall_time_s)

    monkeypatch.setattr(calibrate, "_save_progress", counted)
    kwargs = dict(model=oracle_model, progress=False, seed=1)
    every = run_calibration(jax.random.key(4), "tiny", ExactSampler(8), 4,
                            progress_file=tmp_path / "a.npz", save_every_s=0, **kwargs)  # fmt: skip
    assert saves == [1, 2, 3, 4]
    saves.clear()
    once = dict(progress_file=tmp_path / "b.npz", save_every_s=float("inf"))
    run_calibration(jax.random.key(4), "tiny", ExactSampler(8), 4, **once, **kwargs)
    assert saves == [4]
    with np.load(tmp_path / "b.npz") as saved:
        np.testing.assert_array_equal(saved["theta_samples"], every["theta_samples"])
    with pytest.raises(ValueError, match="save_every_s"):
        run_calibration(jax.random.key(4), "tiny", ExactSampler(8), 4, save_every_s=-1, **kwargs)


@pytest.mark.processes
def test_run_calibration_in_worker_processes_equals_one_process(tmp_path):
    """5 observations over 2 spawned workers: the same draws, truths and saved progress as
    one process; a worker's exception and an unpicklable sampler_fn reach the caller."""
    kwargs = dict(model=oracle_model, progress=False, seed=1)
    one = run_calibration(jax.random.key(4), "tiny", ExactSampler(8), 5, **kwargs)
    progress = tmp_path / "progress.npz"
    two = run_calibration(jax.random.key(4), "tiny", ExactSampler(8), 5, num_workers=2,
                          progress_file=progress, **kwargs)  # fmt: skip
    for field in ("theta_samples", "kappa_samples", "theta_true", "kappa_true"):
        np.testing.assert_array_equal(two[field], one[field], err_msg=field)
    with np.load(progress) as saved:
        np.testing.assert_array_equal(saved["theta_samples"], one["theta_samples"])
    with pytest.raises(RuntimeError, match="failed in the worker"):
        run_calibration(jax.random.key(4), "tiny", FailingSampler(), 3, num_workers=2, **kwargs)
    exact = ExactSampler(8)
    with pytest.raises(ValueError, match="picklable"):
        run_calibration(jax.random.key(4), "tiny", lambda k, o: exact(k, o), 3, num_workers=2,
                        **kwargs)  # fmt: skip


def test_resolve_num_workers_and_lazy_sampler_fn():
    import os
    import pickle

    from numpyro_diffprior.diagnostics.calibration_samplers import LazySamplerFn
    from numpyro_diffprior.runtime.processes import resolve_num_workers

    cores = (os.cpu_count() or 1) if jax.default_backend() == "cpu" else 1
    assert resolve_num_workers("auto", 1000) == cores
    assert resolve_num_workers("auto", 1) == 1 and resolve_num_workers("3", 2) == 2
    for bad in (0, "many", "1.5"):
        with pytest.raises(ValueError, match="num_workers must be a positive integer"):
            resolve_num_workers(bad, 5)
    lazy = LazySamplerFn(ExactSampler, num_draws=4)
    obs = simulate_observation(jax.random.key(2), "tiny", theta="fiducial", model=oracle_model)
    theta, kappa = lazy(jax.random.key(0), obs)
    assert theta.shape == (4, 2) and isinstance(lazy._fn, ExactSampler)
    built = lazy._fn
    lazy(jax.random.key(1), obs)
    assert lazy._fn is built  # built once per process
    copy = pickle.loads(pickle.dumps(lazy))
    assert copy._fn is None  # a worker builds its own
    np.testing.assert_array_equal(copy(jax.random.key(0), obs)[0], theta)


def test_calibrate_command_writes_report_and_resumes(tmp_path, capsys):
    from numpyro_diffprior.cli import main

    out = tmp_path / "cal"
    argv = ["calibrate", "--method", "langevin", "--num-obs", "2", "--num-draws", "4"]
    argv += ["--num-steps", "2", "--out", str(out), "--no-progress"]
    assert main(argv + ["--workers", "2"]) == 0  # one spawned process per observation
    for name in ("report.md", "tarp.png", "mira.png", "progress.npz"):
        assert (out / name).is_file(), name
    with np.load(out / "progress.npz") as saved:
        assert saved["theta_samples"].shape == (2, 4, 2)
        assert saved["kappa_samples"].shape == (2, 4, 5, 32, 32)
    assert main(argv + ["--workers", "1"]) == 0  # resumes with nothing left: the same report
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
