"""Every bad input gets a clear error that names it, before any heavy work, and writes nothing.

One table per entry point: the observation API (`check_observation`, `save_observation`,
`load_observation`), the CLI (`cli.main` in process: exit code 2, the message on stderr) and
the dataset writer. Each case asserts the message and that the working directory is unchanged:
no new file, and pre-existing files keep their bytes and mtime. No case samples or simulates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from numpyro_diffprior import cli
from numpyro_diffprior.observations import check_observation, load_observation, save_observation
from numpyro_diffprior.strict_json import dumps_json

PRESET = "tiny"
SHAPE = (2, 2, 16, 16)  # tiny: 2 bins, 16x16 pixels
RNG = np.random.default_rng(0)
SHEAR = (0.01 * RNG.standard_normal(SHAPE)).astype(np.float32)


def snapshot(directory) -> dict:
    """{relative path: (bytes, mtime_ns)} of every file under `directory`."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, directory)] = (fh.read(), os.stat(path).st_mtime_ns)
    return out


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """tmp_path as the working directory, holding a valid observation, a text file, a truncated
    and a corrupted .npz, observations with bad arrays, a train --out folder, a directory."""
    monkeypatch.chdir(tmp_path)
    save_observation("good.npz", SHEAR, preset=PRESET, theta_true=np.array([0.3, 0.8]))
    (tmp_path / "notes.txt").write_text("hello")  # 5 bytes
    data = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    corrupted = bytearray(data)
    start = data.index(b"NUMPY") + 200  # inside the shear array's data: bad CRC
    corrupted[start : start + 16] = b"\xff" * 16
    (tmp_path / "corrupted.npz").write_bytes(bytes(corrupted))
    np.savez("noshear.npz", preset=np.asarray(PRESET))
    np.savez("int_shear.npz", shear=SHEAR.astype(np.int64), preset=np.asarray(PRESET))
    np.savez("bad_preset.npz", shear=SHEAR, preset=np.asarray("lsst-y99"))
    np.savez("nan_shear.npz", shear=np.where(SHEAR > 0.015, np.nan, SHEAR), preset=PRESET)
    np.savez("neg_noise.npz", shear=SHEAR, preset=PRESET, noise_std=np.array([0.01, -0.01]))
    np.savez("empty_mask.npz", shear=SHEAR, preset=PRESET, mask=np.zeros(SHAPE, bool))
    np.save("mask_none_observed.npy", np.zeros((16, 16), bool))
    (tmp_path / "runs" / "tiny" / "checkpoint").mkdir(parents=True)
    (tmp_path / "runs" / "tiny" / "checkpoint" / "config.json").write_text("{}")
    (tmp_path / "adir").mkdir()
    return tmp_path


# --- the observation API ----------------------------------------------------------------------

NOISE = np.full(2, 0.01)
API_CASES = [
    # (id, kwargs of check_observation, message regex)
    ("int-shear", dict(shear=SHEAR.astype(np.int32)), r"shear_obs must be a floating.*int32"),
    ("bool-shear", dict(shear=SHEAR > 0), r"floating-point .*dtype bool"),
    ("shape", dict(shear=SHEAR[0]), r"must have shape \(2, 2, 16, 16\).*got \(2, 16, 16\)"),
    ("nan", dict(shear=np.where(SHEAR > 0.01, np.nan, SHEAR)), r"finite at every observed pixel"),
    ("inf", dict(shear=np.where(SHEAR > 0.01, np.inf, SHEAR)), r"NaN or inf"),
    ("mask-all-false", dict(shear=SHEAR, mask=np.zeros((16, 16), bool)), r"mask is all False"),
    ("mask-shape", dict(shear=SHEAR, mask=np.ones((8, 8), bool)), r"mask must have .*\(8, 8\)"),
    ("mask-float", dict(shear=SHEAR, mask=np.full((16, 16), 0.5)), r"mask must be boolean"),
    ("noise-zero", dict(shear=SHEAR, noise_std=0.0), r"positive and finite, got 0"),
    ("noise-negative", dict(shear=SHEAR, noise_std=-0.01), r"positive and finite, got -0.01"),
    ("noise-nan", dict(shear=SHEAR, noise_std=np.nan), r"positive and finite, got nan"),
    ("noise-inf", dict(shear=SHEAR, noise_std=np.inf), r"positive and finite, got inf"),
    ("noise-bin", dict(shear=SHEAR, noise_std=[0.01, -0.01]), r"noise_std\[1\] = -0.01"),
    ("noise-bin-nan", dict(shear=SHEAR, noise_std=[np.nan, 0.01]), r"noise_std\[0\] = nan"),
    ("noise-shape", dict(shear=SHEAR, noise_std=np.ones(3)), r"noise_std must be a scalar, \(2,\)"),
    ("noise-map-all-inf", dict(shear=SHEAR, noise_std=np.full(SHAPE, np.inf)), r"no pixel"),
    ("no-shear", dict(shear=None), r"shear_obs is required"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, match", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_check_observation_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        check_observation(**kwargs, preset=PRESET)


def test_check_observation_accepts_nan_in_masked_pixels_and_noise_maps():
    mask = np.ones((16, 16), bool)
    mask[:4] = False
    shear = SHEAR.copy()
    shear[:, :, :4] = np.nan
    out, full_mask, std = check_observation(shear, mask, 0.01, PRESET)
    assert out.dtype == np.float32 and full_mask.shape == SHAPE and float(std) == 0.01
    noise_map = np.full(SHAPE, 0.01)
    noise_map[:, :, :4] = np.inf  # +inf = unobserved, allowed per pixel
    check_observation(shear, None, noise_map, PRESET)


SAVE_CASES = [
    ("int-shear", dict(shear=SHEAR.astype(np.int64)), r"floating-point"),
    ("noise-bin", dict(shear=SHEAR, noise_std=[0.01, -0.01]), r"noise_std\[1\]"),
    ("mask-all-false", dict(shear=SHEAR, mask=np.zeros((16, 16), bool)), r"all False"),
    ("theta-shape", dict(shear=SHEAR, theta_true=np.ones(3)), r"theta_true must have shape \(2,\)"),
    ("kappa-nan", dict(shear=SHEAR, kappa_true=np.full((2, 16, 16), np.nan)), "kappa_true must"),
    ("preset", dict(shear=SHEAR, preset="lsst-y99"), r"unknown preset 'lsst-y99'"),
]  # fmt: skip


@pytest.mark.parametrize(
    "kwargs, match", [c[1:] for c in SAVE_CASES], ids=[c[0] for c in SAVE_CASES]
)
@pytest.mark.parametrize("target", ["new.npz", "good.npz"])
def test_save_observation_rejects_and_writes_nothing(workdir, kwargs, match, target):
    before = snapshot(workdir)
    kwargs = {"preset": PRESET, **kwargs}
    with pytest.raises(ValueError, match=match):
        save_observation(target, kwargs.pop("shear"), **kwargs)
    assert snapshot(workdir) == before


def test_save_observation_refuses_a_directory(workdir):
    before = snapshot(workdir)
    with pytest.raises(ValueError, match="'adir' is a directory"):
        save_observation("adir", SHEAR, preset=PRESET)
    assert snapshot(workdir) == before


LOAD_CASES = [
    ("text-file", "notes.txt", ValueError, r"not an .npz archive \(5 bytes"),
    ("truncated", "truncated.npz", ValueError, r"not an .npz archive .*truncated"),
    ("corrupted", "corrupted.npz", ValueError, r"corrupted or truncated"),
    ("missing-key", "noshear.npz", ValueError, r"lacks the key\(s\) \['shear'\]"),
    ("int-shear", "int_shear.npz", ValueError, r"int_shear.npz.*shear must be a floating-point"),
    ("bad-preset", "bad_preset.npz", ValueError, r"'preset' key\): unknown preset 'lsst-y99'"),
    ("nan-shear", "nan_shear.npz", ValueError, r"shear must be finite at every observed pixel"),
    ("neg-noise", "neg_noise.npz", ValueError, r"noise_std\[1\] = -0.01"),
    ("empty-mask", "empty_mask.npz", ValueError, r"mask is all False"),
    ("missing", "nothere.npz", FileNotFoundError, r"observation file not found"),
    ("directory", "adir", ValueError, r"is a directory"),
]


@pytest.mark.parametrize(
    "name, error, match", [c[1:] for c in LOAD_CASES], ids=[c[0] for c in LOAD_CASES]
)
def test_load_observation_rejects(workdir, name, error, match):
    with pytest.raises(error, match=match):
        load_observation(name)


def test_good_observation_round_trips(workdir):
    obs = load_observation("good.npz")
    np.testing.assert_array_equal(obs["shear"], SHEAR)
    assert obs["preset"] == PRESET and obs["mask"] is None


# --- the command line --------------------------------------------------------------------------

SAMPLE = ["sample", "--out", "post.nc"]
CLI_CASES = [
    # (id, argv, message regex on stderr)
    ("sample-text-obs", SAMPLE + ["--obs", "notes.txt"], r"not an .npz archive \(5 bytes"),
    ("sample-truncated", SAMPLE + ["--obs", "truncated.npz"], r"truncated"),
    ("sample-corrupted", SAMPLE + ["--obs", "corrupted.npz"], r"corrupted or truncated"),
    ("sample-int-shear", SAMPLE + ["--obs", "int_shear.npz"], r"floating-point .*int64"),
    ("sample-missing-key", SAMPLE + ["--obs", "noshear.npz"], r"lacks the key"),
    ("sample-neg-noise", SAMPLE + ["--obs", "neg_noise.npz"], r"noise_std\[1\] = -0.01"),
    ("sample-empty-mask", SAMPLE + ["--obs", "empty_mask.npz"], r"mask is all False"),
    ("sample-bad-preset-in-obs", SAMPLE + ["--obs", "bad_preset.npz"],
     r"bad_preset.npz' \(its 'preset' key\): unknown preset"),
    ("sample-train-folder", SAMPLE + ["--obs", "good.npz", "--model", "runs/tiny"],
     r"training folder .*use --model runs/tiny/checkpoint"),
    ("sample-model-missing", SAMPLE + ["--obs", "good.npz", "--model", "runs/nope"],
     r"no such checkpoint directory"),
    ("sample-num", SAMPLE + ["--obs", "good.npz", "--num", "0"], r"--num must be a positive"),
    ("sample-out-dir", ["sample", "--obs", "good.npz", "--out", "adir"], r"'adir' is a directory"),
    ("sample-out-under-file", ["sample", "--obs", "good.npz", "--out", "notes.txt/p.nc"],
     r"is a file, not a directory"),
    ("baseline-corrupted", ["baseline", "--obs", "corrupted.npz", "--out", "n.nc"], r"corrupted"),
    ("baseline-chains", ["baseline", "--obs", "good.npz", "--out", "n.nc", "--chains", "0"],
     r"--chains must be an integer >= 1, got 0"),
    ("simulate-out-text", ["simulate", "--num", "4", "--out", "notes.txt"],
     r"'notes.txt' exists and is not an HDF5 file"),
    ("simulate-out-npz", ["simulate", "--num", "4", "--out", "good.npz"], r"not an HDF5 file"),
    ("simulate-out-dir", ["simulate", "--num", "4", "--out", "adir"], r"is a directory"),
    ("simulate-num", ["simulate", "--num", "0", "--out", "maps.h5"], r"--num must be a positive"),
    ("simulate-chunk", ["simulate", "--num", "4", "--chunk-size", "0", "--out", "maps.h5"],
     r"--chunk-size must be a positive"),
    ("train-steps", ["train", "--steps", "1", "--out", "run"], r"--steps must be >= 2, got 1"),
    ("train-heldout", ["train", "--steps", "3", "--heldout", "-1", "--out", "run"],
     r"--heldout must be >= 0"),
    ("train-batch", ["train", "--steps", "3", "--batch-size", "0", "--out", "run"],
     r"--batch-size must be a finite integer > 0, got 0"),
    ("train-lr", ["train", "--steps", "3", "--lr", "-1", "--out", "run"], r"--lr must be"),
    ("train-mult", ["train", "--steps", "3", "--channel-mult", "1,x", "--out", "run"],
     r"--channel-mult must be comma-separated positive integers"),
    ("train-data", ["train", "--steps", "3", "--data", "maps.h5", "--out", "run"],
     r"--data 'maps.h5': no such dataset file"),
    ("train-data-pool", ["train", "--steps", "3", "--data", "notes.txt", "--pool", "4",
                         "--out", "run"], r"--data and --pool are exclusive"),
    ("train-out-file", ["train", "--steps", "3", "--out", "notes.txt"], r"is a file"),
    ("train-init-from", ["train", "--steps", "3", "--init-from", "nope", "--out", "run"],
     r"--init-from 'nope': no such checkpoint"),
    ("train-final-lr", ["train", "--steps", "3", "--final-lr-ratio", "0", "--out", "run"],
     r"--final-lr-ratio must be in \(0, 1\], got 0.0"),
    ("train-max-seconds", ["train", "--steps", "3", "--max-seconds", "-5", "--out", "run"],
     r"--max-seconds must be a finite number > 0, got -5.0"),
    ("train-max-seconds-hosts", ["train", "--steps", "3", "--max-seconds", "60", "--out", "run",
                                 "--coordinator", "h:1", "--num-processes", "2",
                                 "--process-id", "0"], r"--max-seconds needs one process"),
    ("evaluate-one-file", ["evaluate", "--idata", "a.nc", "--out", "rep"],
     r"--idata needs two or more InferenceData files to compare, got 1"),
    ("evaluate-missing", ["evaluate", "--idata", "a.nc", "b.nc", "--out", "rep"],
     r"InferenceData file not found: a.nc"),
    ("evaluate-names", ["evaluate", "--idata", "a.nc", "b.nc", "--names", "x", "--out", "rep"],
     r"--names has 1 entries for 2 files"),
    ("observe-theta", ["observe", "--preset", "tiny", "--theta", "0.3", "--out", "o.npz"],
     r"--theta needs 2 values \(Omega_c,sigma_8\)"),
    ("observe-theta-nan", ["observe", "--preset", "tiny", "--theta", "nan,0.8", "--out", "o.npz"],
     r"--theta values must be finite"),
    ("observe-noise", ["observe", "--preset", "tiny", "--noise-std", "-1", "--out", "o.npz"],
     r"noise_std must be positive and finite, got -1"),
    ("observe-noise-bin", ["observe", "--preset", "tiny", "--noise-std", "0.01,0", "--out",
                           "o.npz"], r"noise_std\[1\] = 0"),
    ("observe-noise-text", ["observe", "--preset", "tiny", "--noise-std", "low", "--out", "o.npz"],
     r"--noise-std must be comma-separated numbers, got 'low'"),
    ("observe-mask-missing", ["observe", "--preset", "tiny", "--mask", "m.npy", "--out", "o.npz"],
     r"--mask 'm.npy': no such file"),
    ("observe-mask-empty", ["observe", "--preset", "tiny", "--mask", "mask_none_observed.npy",
                            "--out", "o.npz"], r"mask is all False"),
    ("observe-mask-text", ["observe", "--preset", "tiny", "--mask", "notes.txt", "--out", "o.npz"],
     r"--mask 'notes.txt' is not a readable .npy array"),
    ("observe-preset", ["observe", "--preset", "lsst-y99", "--out", "o.npz"], r"unknown preset"),
    ("observe-out-text", ["observe", "--out", "notes.txt"], r"--out must name an .npz file"),
    ("observe-out-not-npz", ["observe", "--out", "o.npz.txt"], r"--out must name an .npz"),
    ("observe-out-dir", ["observe", "--out", "adir"], r"'adir' is a directory"),
]  # fmt: skip


@pytest.mark.parametrize("argv, match", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_rejects_and_writes_nothing(workdir, capsys, argv, match):
    before = snapshot(workdir)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"numpyro-diffprior {argv[0]}: error: "), err
    assert re.search(match, err), err
    assert snapshot(workdir) == before


def test_observe_refuses_to_overwrite_a_non_npz_file(workdir, capsys):
    (workdir / "data.npz").write_text("my notes, not an observation")
    before = snapshot(workdir)
    assert cli.main(["observe", "--preset", "tiny", "--out", "data.npz"]) == 2
    assert "is not an .npz archive; refusing to overwrite" in capsys.readouterr().err
    assert snapshot(workdir) == before


def test_write_dataset_refuses_a_non_hdf5_file(workdir):
    from numpyro_diffprior.simulator.dataset import write_dataset

    before = snapshot(workdir)
    with pytest.raises(ValueError, match="exists and is not an HDF5 file"):
        write_dataset("notes.txt", PRESET, 4, progress=False)
    with pytest.raises(ValueError, match="is a directory"):
        write_dataset("adir", PRESET, 4, progress=False)
    assert snapshot(workdir) == before


def test_simulate_rejects_a_negative_start():
    from numpyro_diffprior.simulator import simulate

    with pytest.raises(ValueError, match="start must be a non-negative integer, got -1"):
        simulate(None, PRESET, 2, start=-1)


# --- fast help, strict JSON, defaults ----------------------------------------------------------

HEAVY = ("jax", "numpyro", "haiku", "arviz", "matplotlib", "optax", "h5py")
# calibrate imports jax at module level (commands/calibrate.py is being moved; see the CHANGELOG).
LIGHT_COMMANDS = [name for name in cli.COMMANDS if name != "calibrate"]


def test_cli_parser_imports_no_heavy_module():
    """Building the parser (what `--help` and argument errors need) imports none of HEAVY."""
    code = (
        "import sys\n"
        "from numpyro_diffprior import cli\n"
        "cli.build_parser(lazy=True)\n"
        f"for name in {LIGHT_COMMANDS!r}:\n"
        "    cli.build_parser(name, lazy=True)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert all(name in text for name in cli.COMMANDS)


def test_train_help_defaults_are_the_config_defaults():
    """`train` reads its defaults from the dataclasses' source; they must equal the real ones."""
    from numpyro_diffprior.nets import NetworkConfig
    from numpyro_diffprior.training import TrainingConfig

    args = cli.build_parser("train", lazy=True).parse_args(["train", "--steps", "5", "--out", "x"])
    net, tr = NetworkConfig(), TrainingConfig()
    assert (args.batch_size, args.lr, args.warmup) == (
        tr.batch_size,
        tr.learning_rate,
        tr.warmup_steps,
    )
    assert (args.ema_halflife, args.theta_weight, args.P_mean, args.P_std) == (
        tr.ema_halflife,
        tr.theta_weight,
        tr.P_mean,
        tr.P_std,
    )
    assert (args.width, args.num_blocks, args.emb_dim) == (
        net.channels,
        net.num_blocks,
        net.emb_dim,
    )
    assert args.channel_mult == ",".join(map(str, net.channel_mult))
    assert args.heldout is None  # resolved in run: 0 below train.HELDOUT_MIN_STEPS steps
    assert args.final_lr_ratio == tr.final_lr_ratio and args.max_seconds is None


def test_json_output_is_strict():
    text = dumps_json({"a": np.float32("nan"), "b": [1.0, np.inf], "c": np.int64(3)})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": 3}


def test_truncated_npz_is_not_a_zip(workdir):
    assert zipfile.is_zipfile(workdir / "good.npz")
    assert not zipfile.is_zipfile(workdir / "truncated.npz")


# --- the samplers' run, NUTS and the prior's log density ---------------------------------------

SAMPLER_CASES = [
    # (id, overrides of the shear_model inputs, message regex)
    ("int-shear", dict(shear_obs="int"), r"shear_obs must be a floating"),
    ("mask-all-false", dict(mask=np.zeros((8, 8), bool)), r"mask is all False"),
    ("noise-zero", dict(noise_std=0.0), r"noise_std"),
    ("noise-negative-bin", dict(noise_std=np.array([-0.01])), r"noise_std\[0\]"),
    ("noise-nan", dict(noise_std=np.nan), r"noise_std"),
]


def _oracle_inputs():
    """A Gaussian-oracle prior (1 bin, 8x8) and a valid observation for it."""
    import jax

    from numpyro_diffprior import testing
    from numpyro_diffprior.simulator.shear import kaiser_squires

    prior, _, _ = testing.gaussian_oracle_prior((1, 8, 8), param_names=("Omega_c", "sigma_8"))
    kappa = prior.unpack(prior.sample(jax.random.PRNGKey(0)))[1]
    return prior, np.asarray(kaiser_squires(kappa), np.float32)


@pytest.mark.parametrize(
    "overrides, match", [c[1:] for c in SAMPLER_CASES], ids=[c[0] for c in SAMPLER_CASES]
)
@pytest.mark.parametrize("method", ["diffusion", "langevin"])
def test_sampler_run_names_the_bad_input(method, overrides, match):
    """The runner checks shear_model's inputs before tracing the model (no 'does not depend on
    the DiffusionPrior site' for a bad mask or noise)."""
    import jax

    from numpyro_diffprior.infer import (
        AnnealedLangevinSampler,
        DiffusionPosteriorSampler,
        IIDSampler,
        shear_model,
    )

    prior, shear = _oracle_inputs()
    kwargs = {**dict(prior=prior, shear_obs=shear, noise_std=0.01), **overrides}
    if isinstance(kwargs["shear_obs"], str):
        kwargs["shear_obs"] = shear.astype(np.int32)
    cls = DiffusionPosteriorSampler if method == "diffusion" else AnnealedLangevinSampler
    runner = IIDSampler(cls(shear_model), 2, progress_bar=False)
    with pytest.raises(ValueError, match=match):
        runner.run(jax.random.key(0), **kwargs)


def test_nuts_baseline_names_the_bad_input():
    import jax

    from numpyro_diffprior.infer.nuts import nuts_baseline

    for kwargs, match in [
        (dict(shear_obs=SHEAR.astype(np.int64)), r"shear_obs must be a floating"),
        (dict(shear_obs=SHEAR, mask=np.zeros((16, 16), bool)), r"mask is all False"),
        (dict(shear_obs=SHEAR, noise_std=np.array([0.01, -0.01])), r"noise_std\[1\]"),
    ]:
        with pytest.raises(ValueError, match=match):
            nuts_baseline(jax.random.key(0), preset=PRESET, progress_bar=False, **kwargs)


def test_prior_log_prob_refuses_non_finite_values():
    prior, _ = _oracle_inputs()
    value = np.zeros(prior.dim, np.float32)
    value[3] = np.nan
    with pytest.raises(ValueError, match=r"value must be finite, got 1 NaN"):
        prior.log_prob(value)
