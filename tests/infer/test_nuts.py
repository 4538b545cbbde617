"""NUTS baseline: exact posterior of a linear-Gaussian oracle with the lensing model's sites."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.diagnostics import effective_sample_size

from numpyro_diffprior.infer.inference_data import to_inference_data
from numpyro_diffprior.infer.nuts import nuts_baseline
from numpyro_diffprior.presets import get_preset

PRESET = get_preset("tiny")  # C=2, N=16, P=2
PRIOR_MEAN = np.array([0.3, 0.8])
PRIOR_STD = np.array([0.1, 0.15])
Z_SCALE = 0.5
NOISE = 0.5


def _patterns():
    """Smooth fixed maps (P, C, N, N) through which theta enters kappa."""
    n = PRESET.npix
    y, x = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    base = np.stack([np.cos(2 * np.pi * x / n), np.sin(2 * np.pi * (x + y) / n)])
    return 0.06 * np.stack([base, base[::-1] * np.array([1.0, -1.0])[:, None, None]], axis=1)


PATTERNS = _patterns()


def oracle_model(preset="tiny", shear_obs=None, mask=None, noise_std=None, emulator=None):
    """theta_n ~ N(0, I), z ~ N(0, I), kappa = patterns . theta_n + s z, shear = (kappa, -kappa)."""
    p = get_preset(preset)
    values = [
        numpyro.sample(name, dist.Normal(PRIOR_MEAN[i], PRIOR_STD[i]))
        for i, name in enumerate(p.param_names)
    ]
    theta = numpyro.deterministic("theta", jnp.stack(values))
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand(p.map_shape).to_event(3))
    theta_n = (theta - PRIOR_MEAN) / PRIOR_STD
    kappa = numpyro.deterministic(
        "kappa", jnp.einsum("p,pcyx->cyx", theta_n, PATTERNS) + Z_SCALE * z
    )
    mean = jnp.stack([kappa, -kappa], axis=1)
    numpyro.sample("shear", dist.Normal(mean, NOISE).to_event(4), obs=shear_obs)


def _exact_posterior(shear):
    """Closed-form Gaussian posterior of x = [theta_n, z]: precision I + H^T H / noise^2."""
    n_pix = int(np.prod(PRESET.map_shape))
    g = np.concatenate([PATTERNS.reshape(2, -1).T, Z_SCALE * np.eye(n_pix)], axis=1)  # kappa = G x
    h = np.concatenate([g, -g], axis=0)
    y = np.concatenate([shear[:, 0].ravel(), shear[:, 1].ravel()])
    cov = np.linalg.inv(np.eye(g.shape[1]) + h.T @ h / NOISE**2)
    mean = cov @ h.T @ y / NOISE**2
    theta_mean = PRIOR_MEAN + PRIOR_STD * mean[:2]
    theta_std = PRIOR_STD * np.sqrt(np.diag(cov)[:2])
    kappa_mean = (g @ mean).reshape(PRESET.map_shape)
    kappa_std = np.sqrt(np.einsum("ij,jk,ik->i", g, cov, g)).reshape(PRESET.map_shape)
    return theta_mean, theta_std, kappa_mean, kappa_std


def _observation(seed=0):
    tr = numpyro.handlers.trace(numpyro.handlers.seed(oracle_model, seed)).get_trace()
    return (
        np.asarray(tr["shear"]["value"]),
        np.asarray(tr["theta"]["value"]),
        np.asarray(tr["kappa"]["value"]),
    )


@pytest.fixture(scope="module")
def oracle_run():
    shear, theta_true, kappa_true = _observation(0)
    idata = nuts_baseline(
        jax.random.key(1),
        preset="tiny",
        shear_obs=shear,
        num_warmup=300,
        num_samples=500,
        num_chains=2,
        max_tree_depth=6,
        progress_bar=False,
        model=oracle_model,
        truth={"theta": theta_true, "kappa": kappa_true},
    )
    return shear, idata


def test_nuts_recovers_exact_gaussian_posterior(oracle_run):
    shear, idata = oracle_run
    theta_mean, theta_std, kappa_mean, kappa_std = _exact_posterior(shear)
    theta = idata.posterior["theta"].values  # (chain, draw, P)
    kappa = idata.posterior["kappa"].values
    ess = effective_sample_size(theta.astype(np.float64))
    # Monte-Carlo error: SE(mean) = sigma / sqrt(ESS); SE(std)/std ~ 1/sqrt(2 ESS). Tolerance 4 SE.
    err_mean = np.abs(theta.mean(axis=(0, 1)) - theta_mean) / (theta_std / np.sqrt(ess))
    assert np.all(err_mean < 4.0), err_mean
    ratio = theta.std(axis=(0, 1)) / theta_std
    assert np.all(np.abs(ratio - 1.0) < 4.0 / np.sqrt(2 * ess)), (ratio, ess)
    kflat = kappa.reshape(kappa.shape[:2] + (-1,)).astype(np.float64)
    kess = effective_sample_size(kflat)
    z = (kflat.mean(axis=(0, 1)) - kappa_mean.ravel()) / (kappa_std.ravel() / np.sqrt(kess))
    assert np.max(np.abs(z)) < 5.0  # 512 pixels: a 5-sigma excursion has probability ~3e-4
    assert np.mean(z**2) == pytest.approx(1.0, abs=0.35)
    assert idata.posterior.attrs["rhat_max"] < 1.05


def test_nuts_inference_data_matches_convention(oracle_run):
    shear, idata = oracle_run
    theta = idata.posterior["theta"].values
    kappa = idata.posterior["kappa"].values
    ref = to_inference_data(
        theta,
        kappa,
        param_names=PRESET.param_names,
        shear_obs=shear,
        truth={"theta": np.zeros(2), "kappa": np.zeros(PRESET.map_shape)},
    )
    for group in ("posterior", "observed_data", "constant_data"):
        a, b = getattr(idata, group), getattr(ref, group)
        assert set(a.data_vars) == set(b.data_vars)
        for name in a.data_vars:
            assert a[name].dims == b[name].dims
            for dim in a[name].dims:
                np.testing.assert_array_equal(a[name][dim].values, b[name][dim].values)
    stats = idata.sample_stats
    for name in ("lp", "acceptance_rate", "step_size", "n_steps", "tree_depth", "diverging"):
        assert stats[name].shape == theta.shape[:2]
    assert np.all(np.isfinite(stats["lp"].values))
    assert 0.5 < float(stats["acceptance_rate"].mean()) <= 1.0
    attrs = idata.posterior.attrs
    assert attrs["method"] == "nuts" and attrs["preset"] == "tiny"
    assert attrs["num_samples"] == 500 and attrs["ess_min"] > 50


def test_nuts_rejects_bad_observation():
    with pytest.raises(ValueError, match="shear_obs must have shape"):
        nuts_baseline(
            jax.random.key(0), preset="tiny", shear_obs=np.zeros((2, 2, 8, 8)), model=oracle_model
        )
    with pytest.raises(ValueError, match="shear_obs is required"):
        nuts_baseline(jax.random.key(0), preset="tiny", shear_obs=None, model=oracle_model)


def _tiny_emulator():
    from numpyro_diffprior.cosmology.emulator import load_emulator

    try:
        return load_emulator("tiny")
    except FileNotFoundError as err:  # the table is package data shipped by the emulator issue
        pytest.skip(f"no shipped emulator table for 'tiny': {err}")


@pytest.mark.slow
def test_nuts_smoke_on_lensing_model_tiny():
    from numpyro_diffprior.observations import simulate_observation

    emulator = _tiny_emulator()
    obs = simulate_observation(jax.random.key(3), "tiny", theta="fiducial", emulator=emulator)
    idata = nuts_baseline(
        jax.random.key(4),
        preset="tiny",
        shear_obs=obs["shear"],
        num_warmup=20,
        num_samples=10,
        num_chains=2,
        max_tree_depth=4,
        progress_bar=False,
        emulator=emulator,
        truth={"theta": obs["theta_true"], "kappa": obs["kappa_true"]},
    )
    assert idata.posterior["theta"].shape == (2, 10, 2)
    assert idata.posterior["kappa"].shape == (2, 10) + PRESET.map_shape
    assert np.all(np.isfinite(idata.posterior["kappa"].values))
    assert np.all(np.isfinite(idata.sample_stats["lp"].values))


@pytest.mark.slow
def test_nuts_blackjax_recovers_exact_gaussian_posterior():
    from numpyro_diffprior.infer.nuts_blackjax import nuts_blackjax

    shear, _, _ = _observation(0)
    theta_mean, theta_std, _, _ = _exact_posterior(shear)
    idata = nuts_blackjax(
        jax.random.key(2),
        preset="tiny",
        shear_obs=shear,
        num_warmup=300,
        num_samples=400,
        num_chains=2,
        max_num_doublings=6,
        model=oracle_model,
    )
    theta = idata.posterior["theta"].values
    ess = effective_sample_size(theta.astype(np.float64))
    err_mean = np.abs(theta.mean(axis=(0, 1)) - theta_mean) / (theta_std / np.sqrt(ess))
    assert np.all(err_mean < 4.0), err_mean
    ratio = theta.std(axis=(0, 1)) / theta_std
    assert np.all(np.abs(ratio - 1.0) < 4.0 / np.sqrt(2 * ess)), (ratio, ess)
    assert idata.posterior.attrs["method"] == "nuts_blackjax"
    assert set(idata.sample_stats.data_vars) >= {"lp", "acceptance_rate", "n_steps", "diverging"}


def test_baseline_command_writes_inference_data(tmp_path):
    """`numpyro-diffprior baseline` end to end on the tiny preset (a smoke run: 2 x (10 + 10))."""
    import arviz as az

    from numpyro_diffprior import cli
    from numpyro_diffprior.observations import save_observation

    preset = get_preset("tiny")
    obs, out = tmp_path / "obs.npz", tmp_path / "sub" / "nuts.nc"
    shear = 0.01 * np.random.default_rng(0).standard_normal(preset.shear_shape)
    save_observation(obs, shear, preset="tiny", theta_true=np.array([0.3, 0.8]))
    argv = ["baseline", "--obs", str(obs), "--out", str(out), "--warmup", "10", "--samples",
            "10", "--chains", "2", "--max-tree-depth", "3", "--no-progress"]  # fmt: skip
    assert cli.main(argv) == 0
    idata = az.from_netcdf(out)
    assert idata.posterior["theta"].shape == (2, 10, 2)
    assert idata.posterior["kappa"].shape == (2, 10) + preset.map_shape
    assert {"lp", "diverging", "step_size", "n_steps"} <= set(idata.sample_stats.data_vars)
    assert [p.name for p in out.parent.iterdir()] == ["nuts.nc"]  # no temporary left behind


@pytest.mark.processes
def test_chains_in_processes_equal_sequential_chains():
    """num_workers=2 (3 chains over 2 spawned workers, one running two chains) gives exactly
    the draws of NumPyro's sequential chains from the same key."""
    shear, _, _ = _observation(1)
    kwargs = dict(
        preset="tiny", shear_obs=shear, num_warmup=30, num_samples=10, num_chains=3,
        max_tree_depth=4, progress_bar=False, model=oracle_model,
    )  # fmt: skip
    seq = nuts_baseline(jax.random.key(5), chain_method="sequential", **kwargs)
    proc = nuts_baseline(jax.random.key(5), num_workers=2, **kwargs)
    for name in ("theta", "kappa"):
        np.testing.assert_allclose(
            proc.posterior[name].values, seq.posterior[name].values, rtol=1e-5, atol=1e-6
        )
    np.testing.assert_array_equal(proc.sample_stats["n_steps"], seq.sample_stats["n_steps"])
    assert proc.posterior.attrs["chain_method"] == "processes"
    assert proc.posterior.attrs["num_workers"] == 2
    assert proc.posterior.attrs["sampling_time_s"] > 0 and proc.posterior.attrs["warmup_time_s"] > 0


@pytest.mark.processes
def test_chains_in_processes_refuse_unpicklable_model_and_bad_method():
    def local_model(**kwargs):  # a closure cannot be sent to a worker process
        return oracle_model(**kwargs)

    shear, _, _ = _observation(1)
    with pytest.raises(ValueError, match="must be picklable"):
        nuts_baseline(jax.random.key(0), preset="tiny", shear_obs=shear, model=local_model,
                      num_workers=2, num_chains=2)  # fmt: skip
    with pytest.raises(ValueError, match="chain_method must be one of"):
        nuts_baseline(jax.random.key(0), preset="tiny", shear_obs=shear, model=oracle_model,
                      chain_method="threads")  # fmt: skip


def test_split_chains_spreads_evenly():
    from numpyro_diffprior.runtime.processes import split_chains

    assert split_chains(4, 2) == [2, 2]
    assert split_chains(5, 2) == [3, 2]
    assert split_chains(2, 8) == [1, 1]
    assert split_chains(1, 1) == [1]
    with pytest.raises(ValueError):
        split_chains(0, 2)


def test_auto_chain_method_uses_processes_on_a_multicore_cpu():
    import os

    from numpyro_diffprior.infer.nuts import resolve_chain_method

    multicore_cpu = jax.default_backend() == "cpu" and (os.cpu_count() or 1) > 1
    assert resolve_chain_method("auto", 4) == ("processes" if multicore_cpu else "vectorized")
    assert resolve_chain_method("auto", 1) == "vectorized"  # one chain: nothing to spread
    assert resolve_chain_method("sequential", 4) == "sequential"
    with pytest.raises(ValueError, match="chain_method must be one of"):
        resolve_chain_method("threads", 2)


def test_where_chains_run_has_the_diffusion_samplers_vocabulary():
    import os

    from numpyro_diffprior.infer.nuts import where_chains_run

    cores = (os.cpu_count() or 1) if jax.default_backend() == "cpu" else 1
    assert where_chains_run("vectorized", 1, 4) == ("vectorized", 1)
    assert where_chains_run("sequential", None, 4) == ("sequential", 1)
    assert where_chains_run("vectorized", 2, 4) == ("processes", 2)
    assert where_chains_run("vectorized", 8, 3) == ("processes", 3)  # never more than chains
    auto = min(cores, 4)
    assert where_chains_run("vectorized", "auto", 4) == (
        ("processes", auto) if auto > 1 else ("vectorized", 1)
    )
    with pytest.warns(DeprecationWarning, match="num_workers"):
        assert where_chains_run("processes", 2, 4) == ("processes", 2)
    with pytest.warns(DeprecationWarning, match="num_workers"):
        assert where_chains_run("auto", None, 4) == where_chains_run("vectorized", "auto", 4)
    with pytest.raises(ValueError, match="num_workers"):
        where_chains_run("vectorized", 0, 4)


def test_convergence_summary_needs_four_draws_per_chain():
    from numpyro_diffprior.infer.nuts import convergence_summary

    draws = np.random.default_rng(0).standard_normal((2, 3, 2))
    assert np.isnan(list(convergence_summary(draws).values())).all()  # was an AssertionError
    summary = convergence_summary(np.random.default_rng(0).standard_normal((4, 200, 2)))
    assert summary["rhat_max"] == pytest.approx(1.0, abs=0.03) and summary["ess_min"] > 300
