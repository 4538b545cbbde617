"""evaluate_prior: box-prior moments against the exact truncated normal, and a smoke run on a
tiny random network (keys, shapes, the report)."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import integrate, stats

from numpyro_diffprior.checkpoints import load_checkpoint, save_checkpoint
from numpyro_diffprior.diagnostics.prior_checks import (
    _box_prior_moments,
    evaluate_prior,
    format_prior_report,
)
from numpyro_diffprior.diffusion.normalization import Normalizer
from numpyro_diffprior.nets import NetworkConfig, make_network
from numpyro_diffprior.presets import get_preset
from numpyro_diffprior.training import TrainingConfig, make_trainer


def test_box_prior_moments_match_the_truncated_normal():
    """Omega_c ~ TruncatedNormal(0.2664, 0.2, low=0) restricted to [0.02, 1.0] (quadrature);
    200k draws: s.e. 4e-4 on the mean, tolerance 2e-3 (5 s.e.)."""
    d = stats.truncnorm(-0.2664 / 0.2, np.inf, loc=0.2664, scale=0.2)
    z = d.cdf(1.0) - d.cdf(0.02)
    mean = integrate.quad(lambda x: x * d.pdf(x), 0.02, 1.0)[0] / z
    std = np.sqrt(integrate.quad(lambda x: (x - mean) ** 2 * d.pdf(x), 0.02, 1.0)[0] / z)
    bounds = jnp.array([[0.02, 1.0], [0.1, 1.6]])
    m, s = _box_prior_moments(("Omega_c", "sigma_8"), bounds)
    np.testing.assert_allclose(np.asarray(m), [mean, 0.831], atol=2e-3)
    np.testing.assert_allclose(np.asarray(s), [std, 0.14], rtol=1e-2)
    assert mean - 0.3026 > 0.005  # the cut at 0.02 moves the mean up (0.3082 vs 0.3026)


def test_evaluate_prior_smoke_with_churn(tmp_path):
    preset = get_preset("tiny")
    net = NetworkConfig(channels=8, channel_mult=(1, 2), emb_dim=16, theta_hidden=16, num_groups=4)
    norm = Normalizer(jnp.array([0.3, 0.8]), jnp.array([0.17, 0.14]), jnp.array([0.01, 0.02]))
    cfg = TrainingConfig(batch_size=4, warmup_steps=1, total_steps=10)
    trainer = make_trainer(*make_network(net, preset), norm, preset, cfg)
    state = jax.jit(trainer.init)(jax.random.key(0))
    path = save_checkpoint(
        tmp_path / "ckpt", state, preset=preset, normalizer=norm, network_config=net,
        training_config=cfg,
    )  # fmt: skip
    ckpt = load_checkpoint(path, preset="tiny")
    r = evaluate_prior(ckpt, num=8, batch_size=8, num_steps=4, S_churn=2.0)
    assert r["sampler"] == {"num_steps": 4, "S_churn": 2.0}
    for key in ["theta_mean_error_sigma", "theta_std_ratio", "theta_mean_error_sigma_box",
                "theta_std_ratio_box", "auto_power_ratio", "w1_over_std"]:  # fmt: skip
        assert np.all(np.isfinite(r[key])), key
    assert r["theta_std_ratio_box"].shape == (2,) and r["auto_power_ratio"].shape == (2,)
    assert r["skewness"].shape == r["skewness_simulator"].shape == (2,)
    np.testing.assert_allclose(r["skewness_ratio"], r["skewness"] / r["skewness_simulator"])
    assert r["auto_power_ratio_per_ell"].shape[0] == 2 and r["power_max_abs_error"] >= 0
    report = format_prior_report(r)
    assert "std ratio vs box prior" in report and "| Omega_c |" in report
    assert "skewness: model / simulator" in report
