"""`numpyro-diffprior observe` writes an observation that `load_observation` (and so every
sampler command) reads, with the truth it was drawn at."""

from __future__ import annotations

import numpy as np

from numpyro_diffprior import cli
from numpyro_diffprior.observations import load_observation, random_holes_mask


def test_observe_writes_a_loadable_observation(tmp_path, capsys):
    out = tmp_path / "sub" / "obs.npz"
    argv = ["observe", "--preset", "tiny", "--theta", "0.3,0.8", "--mask", "random-holes"]
    assert cli.main(argv + ["--noise-std", "0.02,0.03", "--seed", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "next: numpyro-diffprior sample --obs" in printed
    obs = load_observation(out)
    assert obs["preset"] == "tiny" and obs["shear"].shape == (2, 2, 16, 16)
    np.testing.assert_allclose(obs["theta_true"], [0.3, 0.8], rtol=1e-6)
    np.testing.assert_allclose(obs["noise_std"], [0.02, 0.03])
    expected = np.broadcast_to(random_holes_mask(16, 3), (2, 2, 16, 16))
    np.testing.assert_array_equal(obs["mask"], expected)
    assert np.all(obs["shear"][~obs["mask"]] == 0)
    assert [p.name for p in out.parent.iterdir()] == ["obs.npz"]  # no temporary left


def test_random_holes_mask_covers_about_a_tenth():
    mask = random_holes_mask(32, 0)
    assert mask.dtype == bool and 0.1 <= 1 - mask.mean() < 0.25
