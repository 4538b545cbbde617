"""run_amortized_calibration with the exact conditional oracle (`testing.conditional`) on a
1 x 8 x 8 map: observation k's result does not depend on the batch size, an interrupted run
resumes to the uninterrupted result, masks and noise levels are drawn from the training range
(and vary), and with exact conditional draws the calibration is good.

Calibration tolerance (`test_exact_oracle_is_calibrated`, seed 11, 40 observations x 64
draws): the z-score of each true parameter against its draws, (truth - mean) / sd, has mean
within 0.5 of 0 (3.2 standard errors, SE 1/sqrt(40) = 0.16) and sd within 0.67-1.4 (3 SE of
an sd over 40 values, 0.11, plus the 1/sqrt(64) excess of a 64-draw sd); a sampler 0.5x too
narrow gives sd ~2 and fails.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

from numpyro_diffprior.amortized import ObservationRange
from numpyro_diffprior.diagnostics.calibrate_amortized import run_amortized_calibration
from numpyro_diffprior.testing.conditional import gaussian_amortized_prior

MAP_SHAPE = (1, 8, 8)
NOISE = 0.01  # reference shear noise per component (kappa_std = 0.02)
RANGE = ObservationRange(reference_noise=(NOISE,), noise_factor=(0.5, 2.0),
                         max_masked_fraction=0.4)  # fmt: skip
NAMES = ("Omega_c", "sigma_8")
FIELDS = ("theta_samples", "kappa_samples", "theta_true", "kappa_true", "mask", "noise_std")
FAST = dict(num_draws=16, num_steps=8, progress=False)


@pytest.fixture(scope="module")
def oracle():
    prior, gauss, _ = gaussian_amortized_prior(MAP_SHAPE, param_names=NAMES,
                                               observation_range=RANGE)  # fmt: skip
    root = gauss.eigvecs * jnp.sqrt(jnp.clip(gauss.eigvals, 0.0, None))

    def truth_model(preset=None, shear_obs=None, mask=None, noise_std=None, emulator=None):
        """Exact draws of the oracle's Gaussian joint prior (the calibration truths)."""
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand((prior.dim,)).to_event(1))
        theta, kappa = prior.unpack(prior.from_normalized(gauss.mean + root @ z))
        numpyro.deterministic("theta", theta)
        numpyro.deterministic("kappa", kappa)

    return prior, truth_model


def _run(oracle, key, num_obs, **kwargs):
    prior, truth_model = oracle
    return run_amortized_calibration(jax.random.key(key), prior, num_obs, model=truth_model,
                                     **{**FAST, **kwargs})  # fmt: skip


def _assert_same(a, b):
    for field in FIELDS:
        np.testing.assert_allclose(a[field], b[field], rtol=1e-4, atol=1e-6, err_msg=field)


def test_results_do_not_depend_on_the_batch_size(oracle):
    one = _run(oracle, 3, 5, obs_per_batch=1)
    three = _run(oracle, 3, 5, obs_per_batch=3)  # batches of 3 and 2 (padded to 3)
    assert three["theta_samples"].shape == (5, 16, 2)
    assert three["kappa_samples"].shape == (5, 16) + MAP_SHAPE
    _assert_same(one, three)
    assert not np.allclose(three["theta_samples"][0], three["theta_samples"][1])


def test_results_do_not_depend_on_the_chunks(oracle):
    """Draws computed 3 at a time by 2 threads equal one vmapped program per batch."""
    chunked = _run(oracle, 3, 5, obs_per_batch=2, chunk_size=3, num_threads=2)
    whole = _run(oracle, 3, 5, obs_per_batch=2, chunk_size=None)
    _assert_same(chunked, whole)
    with pytest.raises(ValueError, match="chunk_size must be"):
        _run(oracle, 3, 5, chunk_size=0)
    with pytest.raises(ValueError, match="num_workers must be"):
        _run(oracle, 3, 5, num_threads="many")


def test_an_interrupted_run_resumes_to_the_same_result(oracle, tmp_path, monkeypatch):
    from numpyro_diffprior.infer import amortized_chunks as amortized

    progress = tmp_path / "progress.npz"
    calls, real = [], amortized.sample_with_keys_chunked

    def crashing(*args, **kwargs):
        if len(calls) == 1:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(amortized, "sample_with_keys_chunked", crashing)
    with pytest.raises(KeyboardInterrupt):
        _run(oracle, 4, 7, obs_per_batch=3, progress_file=progress)
    with np.load(progress) as saved:  # one finished batch
        assert saved["theta_samples"].shape == (3, 16, 2) and saved["mask"].shape == (3, 8, 8)
    monkeypatch.setattr(amortized, "sample_with_keys_chunked", real)
    resumed = _run(oracle, 4, 7, obs_per_batch=2, progress_file=progress)  # another batch size
    whole = _run(oracle, 4, 7, obs_per_batch=3)
    _assert_same(resumed, whole)
    with pytest.raises(ValueError, match="another amortised calibration run .*num_draws"):
        _run(oracle, 4, 7, progress_file=progress, num_draws=8)
    with pytest.raises(ValueError, match="another amortised calibration run .*settings"):
        _run(oracle, 4, 7, progress_file=progress, num_steps=4)


def test_progress_is_saved_at_the_interval_and_when_the_run_ends(oracle, tmp_path, monkeypatch):
    """Batches of 3 of 7 observations: save_every_s=0 saves after each batch; an interval
    longer than the run saves once, at the end; a negative interval is refused."""
    from numpyro_diffprior.diagnostics import calibrate_amortized

    real, saves = calibrate_amortized._save_progress, []

    def counted(path, run_id, rows, wall_time_s):
        saves.append(len(rows))
        real(path, run_id, rows, wall_time_s)

    monkeypatch.setattr(calibrate_amortized, "_save_progress", counted)
    _run(oracle, 4, 7, obs_per_batch=3, progress_file=tmp_path / "a.npz", save_every_s=0)
    assert saves == [3, 6, 7]
    saves.clear()
    _run(oracle, 4, 7, obs_per_batch=3, progress_file=tmp_path / "b.npz",
         save_every_s=float("inf"))  # fmt: skip
    assert saves == [7]
    with pytest.raises(ValueError, match="save_every_s"):
        _run(oracle, 4, 7, save_every_s=-1.0)


def test_masks_and_noise_vary_inside_the_training_range(oracle):
    out = _run(oracle, 5, 24, obs_per_batch=8)
    frac, factor = out["masked_fraction"], out["noise_factor"]
    assert np.all(frac <= RANGE.max_masked_fraction + 1e-6) and np.all(frac < 1)
    assert np.all(factor >= 0.5 * (1 - 1e-5)) and np.all(factor <= 2.0 * (1 + 1e-5))
    assert np.ptp(factor) > 0.5 and np.ptp(frac) > 0.1
    assert (frac == 0).any() and (frac > 0).sum() >= 8  # "none" masks and others
    assert len({m.tobytes() for m in out["mask"]}) >= 8  # masks differ between observations
    np.testing.assert_allclose(out["noise_std"][:, 0], NOISE * factor, rtol=1e-6)


def test_exact_oracle_is_calibrated(oracle):
    out = _run(oracle, 11, 40, num_draws=64, num_steps=32, obs_per_batch=8)
    draws, truth = out["theta_samples"], out["theta_true"]
    z = (truth - draws.mean(1)) / draws.std(1, ddof=1)  # (40, 2)
    report = dict(mean=z.mean(0), sd=z.std(0, ddof=1))
    assert np.all(np.abs(z.mean(0)) < 0.5), report
    assert np.all((z.std(0, ddof=1) > 0.67) & (z.std(0, ddof=1) < 1.4)), report
    mira = out["summary"]["theta"]["mira"]
    assert abs(mira.score - mira.expected) < 3.5 * mira.error
    # the same check fails for draws 0.5x too narrow around their mean
    narrow = draws.mean(1, keepdims=True) + 0.5 * (draws - draws.mean(1, keepdims=True))
    z_narrow = (truth - narrow.mean(1)) / narrow.std(1, ddof=1)
    assert np.all(z_narrow.std(0, ddof=1) > 1.4)


def test_refusals(oracle):
    prior, truth_model = oracle
    bare = gaussian_amortized_prior(MAP_SHAPE, param_names=NAMES)[0]  # no observation_range
    with pytest.raises(ValueError, match="records no observation_range"):
        run_amortized_calibration(jax.random.key(0), bare, 4, model=truth_model, **FAST)
    with pytest.raises(ValueError, match="AmortizedPrior"):
        run_amortized_calibration(jax.random.key(0), object(), 4, model=truth_model, **FAST)
    with pytest.raises(ValueError, match="unknown sampler settings"):
        _run(oracle, 0, 4, guidance="mmps")
    with pytest.raises(ValueError, match="names no preset"):
        run_amortized_calibration(jax.random.key(0), prior, 4, **FAST)


def test_calibrate_command_amortized(tmp_path, monkeypatch, capsys):
    """`calibrate --method amortized` end to end: the tiny preset's simulator for the truths,
    the exact oracle standing in for a trained conditional model."""
    from numpyro_diffprior.amortized import AmortizedPrior
    from numpyro_diffprior.cli import main
    from numpyro_diffprior.presets import get_preset

    tiny = get_preset("tiny")
    prior = gaussian_amortized_prior(
        tiny.map_shape, kappa_std=0.006, param_names=tiny.param_names, preset="tiny",
        observation_range=ObservationRange.for_preset(tiny),
    )[0]  # fmt: skip
    monkeypatch.setattr(AmortizedPrior, "from_pretrained", classmethod(lambda cls, name: prior))
    out = tmp_path / "cal"
    argv = ["calibrate", "--method", "amortized", "--model", "tiny", "--num-obs", "3",
            "--num-draws", "4", "--num-steps", "2", "--obs-per-batch", "2", "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "drawn from the model's training family" in capsys.readouterr().out
    for name in ("report.md", "tarp.png", "mira.png", "progress.npz"):
        assert (out / name).is_file(), name
    with np.load(out / "progress.npz") as saved:
        assert saved["kappa_samples"].shape == (3, 4) + tiny.map_shape
        assert saved["mask"].shape == (3, 16, 16) and saved["noise_std"].shape == (3, 2)
    assert "masks and noise from the training family" in (out / "report.md").read_text()
    again = list(argv)
    again[again.index("--obs-per-batch") + 1] = "3"
    assert main(again) == 0  # another batch size: resumes, with nothing left to sample
    assert main(argv + ["--workers", "2"]) == 2
    assert "--workers does not apply to --method amortized" in capsys.readouterr().err
