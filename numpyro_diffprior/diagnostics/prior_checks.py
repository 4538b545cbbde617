"""Quality of a trained joint prior (docs/design.md §2.8; targets in docs/training.md).

From `num` joint draws of the model (EDM Heun sampler, optionally with stochastic churn):
- theta marginals vs the prior: mean error in prior sigmas, std ratio; also against the prior
  restricted to the emulator box, which is what the simulator draws and the model learns
  (Omega_c >= 0.02 removes 2 % of the prior mass: +0.033 sigma in the mean, -2.1 % in the std);
- auto power of the generated kappa per bin vs theory at each draw's own generated theta
  (the exact expected power of the log-normal simulator, `lognormal_theory_power`, binned like
  `power_spectrum`), as the ratio of sample-averaged spectra averaged over the l bins;
- cross-correlation coefficients r_ij = C_ij / sqrt(C_ii C_jj) vs theory (max |error| over l);
- one-point PDF per bin: Wasserstein-1 between generated pixels and simulator maps at the
  same theta, relative to the simulator pixel std, with a simulator-vs-simulator reference;
  pixel skewness of the generated maps against the simulator's at the same theta;
- the worst auto or cross power / theory over every l bin (`power_max_abs_error`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import wasserstein_distance

__all__ = ["evaluate_prior", "format_prior_report"]


def evaluate_prior(
    checkpoint,
    *,
    num=512,
    seed=0,
    num_steps=32,
    batch_size=128,
    emulator=None,
    n_ell_bins=None,
    S_churn=0.0,
):
    """Quality numbers of a Checkpoint's prior -> dict (see module docstring).

    `num_steps` and `S_churn` configure `edm_sampler` (Karras et al. 2022, Alg. 2).
    """
    from numpyro_diffprior.cosmology.emulator import emulate_cl, load_emulator
    from numpyro_diffprior.cosmology.params import prior_mean_std
    from numpyro_diffprior.cosmology.shifts import preset_shift
    from numpyro_diffprior.diagnostics.power import binned_theory, ell_bin_edges, power_spectrum
    from numpyro_diffprior.diffusion.normalization import denormalize
    from numpyro_diffprior.diffusion.samplers import edm_sampler
    from numpyro_diffprior.simulator.lognormal import lognormal_theory_power, simulate_kappa

    preset = checkpoint.preset
    emulator = load_emulator(preset) if emulator is None else emulator
    denoise = checkpoint.denoise_fn()
    dim = checkpoint.dim
    sample = jax.jit(
        lambda k: edm_sampler(k, denoise, batch_size, dim, num_steps=num_steps, S_churn=S_churn)
    )
    key = jax.random.key(seed)
    xs = [sample(jax.random.fold_in(key, i)) for i in range(-(-num // batch_size))]
    x = jnp.concatenate(xs)[:num]
    theta, kappa = denormalize(checkpoint.normalizer, x, preset.map_shape)
    bounds = jnp.asarray(emulator.bounds)
    theta_c = jnp.clip(theta, bounds[:, 0], bounds[:, 1])

    mean, std = prior_mean_std(preset.param_names)
    box_mean, box_std = _box_prior_moments(preset.param_names, bounds)
    out = {
        "num": num,
        "step": checkpoint.step,
        "sampler": {"num_steps": num_steps, "S_churn": S_churn},
        "param_names": list(preset.param_names),
        "theta_mean_error_sigma": np.asarray((jnp.mean(theta, 0) - mean) / std),
        "theta_std_ratio": np.asarray(jnp.std(theta, 0) / std),
        "theta_mean_error_sigma_box": np.asarray((jnp.mean(theta, 0) - box_mean) / std),
        "theta_std_ratio_box": np.asarray(jnp.std(theta, 0) / box_std),
        "theta_outside_emulator_box": float(jnp.mean(jnp.any(theta != theta_c, axis=-1))),
    }

    edges = ell_bin_edges(preset.npix, preset.field_rad, n_ell_bins)
    field_rad, npix = preset.field_rad, preset.npix

    @jax.jit
    def theory_and_sim(t, z):
        cl, shift = emulate_cl(emulator, t), preset_shift(preset, t)
        grid = lognormal_theory_power(cl, emulator.ell, shift, npix=npix, field_rad=field_rad)
        return grid, simulate_kappa(t, z, emulator, preset)

    theory, sims, sims2 = [], [], []
    for i in range(num):
        kz = jax.random.split(jax.random.fold_in(key, 10**6 + i))
        grid, s1 = theory_and_sim(theta_c[i], jax.random.normal(kz[0], preset.map_shape))
        _, s2 = theory_and_sim(theta_c[i], jax.random.normal(kz[1], preset.map_shape))
        theory.append(np.asarray(binned_theory(grid, npix, field_rad, edges)))
        sims.append(np.asarray(s1))
        sims2.append(np.asarray(s2))
    theory = np.mean(theory, axis=0)  # (C, C, B)
    ell, cl = power_spectrum(np.asarray(kappa), field_rad, edges)
    cl = np.mean(np.asarray(cl), axis=0)
    auto_t = np.einsum("iib->ib", theory)
    auto_g = np.einsum("iib->ib", cl)
    out["ell"] = np.asarray(ell)
    out["auto_power_ratio"] = np.mean(auto_g / auto_t, axis=-1)  # (C,)
    out["auto_power_ratio_per_ell"] = auto_g / auto_t  # (C, B)
    # worst |ratio - 1| over every l bin of every auto and cross spectrum with non-zero theory
    ratio = np.where(np.abs(theory) > 0, cl / np.where(theory != 0, theory, 1.0), 1.0)
    out["power_max_abs_error"] = float(np.max(np.abs(ratio - 1.0)))
    r_t = theory / np.sqrt(auto_t[:, None] * auto_t[None, :])
    r_g = cl / np.sqrt(auto_g[:, None] * auto_g[None, :])
    iu = np.triu_indices(preset.n_bins, 1)
    out["cross_r_max_error"] = float(np.max(np.abs(r_g - r_t)[iu])) if len(iu[0]) else 0.0
    out["cross_r_mean_abs_error"] = float(np.mean(np.abs(r_g - r_t)[iu])) if len(iu[0]) else 0.0

    sims, sims2, gen = np.stack(sims), np.stack(sims2), np.asarray(kappa)
    w1, w1_ref, pix_std = [], [], []
    for b in range(preset.n_bins):
        s = sims[:, b].ravel()
        pix_std.append(float(np.std(s)))
        w1.append(wasserstein_distance(gen[:, b].ravel(), s) / pix_std[-1])
        w1_ref.append(wasserstein_distance(sims2[:, b].ravel(), s) / pix_std[-1])
    out["pixel_std_ratio"] = np.std(gen, axis=(0, 2, 3)) / np.asarray(pix_std)
    out["skewness"] = _pixel_skewness(gen)
    out["skewness_simulator"] = _pixel_skewness(sims)
    out["skewness_ratio"] = out["skewness"] / out["skewness_simulator"]
    out["w1_over_std"] = np.asarray(w1)
    out["w1_over_std_sim_reference"] = np.asarray(w1_ref)
    return out


def _pixel_skewness(maps):
    """Pixel skewness per bin of maps (M, C, N, N), pooled over maps and pixels."""
    x = np.moveaxis(np.asarray(maps, np.float64), 1, 0).reshape(maps.shape[1], -1)
    d = x - x.mean(axis=1, keepdims=True)
    return (d**3).mean(axis=1) / d.std(axis=1) ** 3


def _box_prior_moments(param_names, bounds, num=200_000, seed=5):
    """Mean and std of the prior restricted to the box (Monte Carlo, s.e. ~0.002 sigma)."""
    from numpyro_diffprior.simulator import sample_prior_in_box

    keys = jax.random.split(jax.random.key(seed), num)
    draws = jax.jit(jax.vmap(lambda k: sample_prior_in_box(k, param_names, bounds)))(keys)
    return jnp.mean(draws, 0), jnp.std(draws, 0)


def format_prior_report(r) -> str:
    """Markdown tables of `evaluate_prior` results (the targets are in docs/training.md)."""
    lines = [
        f"Prior quality: {r['num']} joint draws (checkpoint step {r['step']})",
        "",
        "| parameter | mean error (prior sigma) | std ratio "
        "| mean error vs box prior | std ratio vs box prior |",
        "|---|---|---|---|---|",
    ]
    for n, m, s, mb, sb in zip(
        r["param_names"],
        r["theta_mean_error_sigma"],
        r["theta_std_ratio"],
        r["theta_mean_error_sigma_box"],
        r["theta_std_ratio_box"],
        strict=True,
    ):
        lines.append(f"| {n} | {m:+.3f} | {s:.3f} | {mb:+.3f} | {sb:.3f} |")
    lines += [
        "",
        "| z bin | auto power / theory | pixel std ratio | W1 / pixel std "
        "| W1 sim-vs-sim reference | skewness: model / simulator |",
        "|---|---|---|---|---|---|",
    ]
    for b, (a, p, w, wr) in enumerate(
        zip(
            r["auto_power_ratio"],
            r["pixel_std_ratio"],
            r["w1_over_std"],
            r["w1_over_std_sim_reference"],
            strict=True,
        )
    ):
        skew = ""
        if "skewness" in r:
            skew = f" {r['skewness'][b]:.3f} / {r['skewness_simulator'][b]:.3f} |"
        lines.append(f"| {b + 1} | {a:.3f} | {p:.3f} | {w:.3f} | {wr:.3f} |{skew}")
    lines += [
        "",
        f"Cross-correlation coefficient r_ij(l): max |error| {r['cross_r_max_error']:.3f}, "
        f"mean |error| {r['cross_r_mean_abs_error']:.3f}. Worst auto or cross power / theory "
        f"over all l bins: {r.get('power_max_abs_error', float('nan')):.3f} off 1. "
        f"Draws outside the emulator box (theory clipped): "
        f"{100 * r['theta_outside_emulator_box']:.1f}%.",
    ]
    return "\n".join(lines)
