"""Fitting the 6-parameter `FittedEmulator` to a tabulated design: the base spline and
first-order tables from `design.BaseGrid`, and the optax fit of the MLP ensembles to the
residual (`fit_residual_mlp`, `fit_emulator`). The build recipe that chooses the designs and
fit settings of the shipped emulator is `recipe.build_fitted_emulator`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology.emulator.design import BaseGrid, resolved_ell
from numpyro_diffprior.cosmology.emulator.fitted import (
    _BASE_OFFSET,
    BOX_6_BOUNDS,
    FittedEmulator,
    _feature_range,
    base_log_cl,
    box_features,
    compress_tables,
    mlp,
)
from numpyro_diffprior.cosmology.emulator.tables import spline_basis

__all__ = ["fit_residual_mlp", "fit_emulator", "LOW_FIT_OMEGA_C_MAX", "LOW_BLEND"]

LOW_FIT_OMEGA_C_MAX = 0.1  # the small-Omega_c MLP is fitted on the points below this
LOW_BLEND = (0.06, 0.09)  # Omega_c range where the small-Omega_c fit hands over to the main one


def fit_residual_mlp(
    features,
    residual,
    weights,
    *,
    num_components: int = 48,
    width: int = 128,
    depth: int = 3,
    steps: int = 20000,
    batch_size: int = 256,
    learning_rate: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
):
    """Fit `residual` (N, M) ~ pca_mean + mlp(features (N, 6)) @ pca_basis by AdamW.

    PCA keeps `num_components` whitened components; the loss is the `weights` (M,)-weighted
    mean square error of the reconstructed residual itself (log C_l units), on minibatches
    drawn with replacement, with a cosine-decayed learning rate.
    Returns (layers, pca_mean, pca_basis).
    """
    import optax
    from tqdm.auto import tqdm

    x = jnp.asarray(features, jnp.float32)
    residual = np.asarray(residual, np.float64)
    n = residual.shape[0]
    pca_mean = residual.mean(0)
    u, s, vt = np.linalg.svd(residual - pca_mean, full_matrices=False)
    k = min(num_components, s.size)
    pca_basis = jnp.asarray((s[:k, None] / np.sqrt(n)) * vt[:k], jnp.float32)
    target = jnp.asarray(residual - pca_mean, jnp.float32)
    w = jnp.asarray(weights, jnp.float32) / jnp.mean(jnp.asarray(weights, jnp.float32))

    sizes = [x.shape[1]] + [width] * depth + [k]
    key = jax.random.key(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        key, sub = jax.random.split(key)
        layers.append((jax.random.normal(sub, (a, b)) / np.sqrt(a), jnp.zeros(b)))
    layers[-1] = (jnp.zeros_like(layers[-1][0]), layers[-1][1])  # start from the linear fit
    # the skip path starts at the least-squares linear fit of the PCA coefficients u sqrt(n)
    design = np.concatenate([np.asarray(x, np.float64), np.ones((n, 1))], axis=1)
    linear, *_ = np.linalg.lstsq(design, u[:, :k] * np.sqrt(n), rcond=None)
    layers.append((jnp.asarray(linear[:-1], jnp.float32), jnp.asarray(linear[-1], jnp.float32)))
    layers = tuple(layers)

    def loss_fn(params, xb, yb):
        err = mlp(params, xb) @ pca_basis - yb
        return jnp.mean(w * err**2)

    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=1e-3)
    opt = optax.adamw(schedule, weight_decay=0.0)
    state = opt.init(layers)

    @jax.jit
    def update(params, state, key):
        idx = jax.random.randint(key, (min(batch_size, n),), 0, n)  # with replacement: fast
        loss, grads = jax.value_and_grad(loss_fn)(params, x[idx], target[idx])
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    bar = tqdm(range(steps), desc="fit MLP residual", disable=not progress, mininterval=1.0)
    for i in bar:
        layers, state, loss = update(layers, state, jax.random.fold_in(key, i))
        if i % 500 == 0:
            bar.set_postfix(loss=f"{float(loss):.2e}")
    return layers, jnp.asarray(pca_mean, jnp.float32), pca_basis


def fit_emulator(
    preset, theta, log_cl, ell, grid: BaseGrid, base_tables, *, bounds=None, progress=True,
    low_data=None, low_fit=None, table_tol=1e-4, **fit_kwargs,
):  # fmt: skip
    """A FittedEmulator from a tabulated design theta (N, 6), log_cl (N, C(C+1)/2, L) on
    `ell`, and the base tables `grid.assemble(...)` of jax-cosmo on `grid.design()`.

    With `low_data` = (theta, log_cl) of extra points, a second, small-Omega_c MLP is fitted
    (`fit_residual_mlp(**low_fit)`) on every point, design and extra, with Omega_c <
    LOW_FIT_OMEGA_C_MAX, and blended in below LOW_BLEND[1] (`fitted.blend_weight`);
    `members` (in `fit_kwargs` or `low_fit`) > 1 fits that many MLPs (seeds `seed`,
    `seed` + 1, ...) and averages them.
    With `table_tol`, the first-order tables are stored on principal components
    (`fitted.compress_tables`) exact to that tolerance in log C_l.
    """
    bounds = BOX_6_BOUNDS if bounds is None else bounds
    bounds = np.asarray(bounds, np.float64)
    base_table, anova_table = base_tables
    base_knots = (np.log(grid.omega_c + _BASE_OFFSET), np.log(grid.sigma_8))
    anova_knots = tuple(
        np.log(nodes + _BASE_OFFSET) if q == 0 else np.log(nodes) if q in (1, 2) else nodes
        for q, nodes in enumerate(grid.anova)
    )
    feature_lo, feature_hi = _feature_range(bounds)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    anova_pcs = None
    if table_tol is not None:
        flat = np.reshape(anova_table, (*np.shape(anova_table)[:4], -1))
        anova_table, anova_pcs = compress_tables(flat, table_tol)
        anova_pcs = f32(anova_pcs)
    partial = FittedEmulator(
        ell=f32(ell),
        bounds=f32(bounds),
        base_knots=tuple(f32(k) for k in base_knots),
        base_basis=tuple(f32(spline_basis(k)) for k in base_knots),
        base_log_cl=f32(base_table),
        anova_knots=tuple(f32(k) for k in anova_knots),
        anova_basis=tuple(f32(spline_basis(k)) for k in anova_knots),
        anova_log_cl=f32(anova_table),
        anova_pcs=anova_pcs,
        layers=(),
        pca_mean=f32(0.0),
        pca_basis=f32(0.0),
        feature_lo=f32(feature_lo),
        feature_hi=f32(feature_hi),
        param_names=tuple(preset.param_names),
        preset_json=preset.to_json(),
    )
    weights = np.tile(np.where(resolved_ell(preset, ell), 1.0, 0.1), np.shape(log_cl)[-2])

    def fit_ensemble(theta, log_cl, feature_lo, feature_hi, fit_kwargs):
        """fit_residual_mlp on log_cl minus the spline part, from box-scaled features, for
        seeds seed, seed + 1, ... (fit_kwargs["members"] of them; the same data give every
        member the same principal components) -> ((layers, pca_mean, pca_basis), more)."""
        fit_kwargs = dict(fit_kwargs)
        members, seed = fit_kwargs.pop("members", 1), fit_kwargs.pop("seed", 0)
        theta = f32(theta)
        base_values = np.asarray(jax.jit(jax.vmap(lambda t: base_log_cl(partial, t)))(theta))
        residual = (np.asarray(log_cl) - base_values).reshape(len(theta), -1)
        features = jax.vmap(lambda t: box_features(t, f32(feature_lo), f32(feature_hi)))(theta)
        fits = [
            fit_residual_mlp(
                features, residual, weights, progress=progress, seed=seed + m, **fit_kwargs
            )  # fmt: skip
            for m in range(members)
        ]
        return fits[0], tuple(f[0] for f in fits[1:])

    (layers, pca_mean, pca_basis), more = fit_ensemble(
        theta, log_cl, feature_lo, feature_hi, fit_kwargs
    )
    fitted = dataclasses.replace(
        partial, layers=layers, pca_mean=pca_mean, pca_basis=pca_basis, members=more
    )
    if low_data is None:
        return fitted
    theta_low = np.concatenate([np.asarray(theta), np.asarray(low_data[0])])
    log_cl_low = np.concatenate([np.asarray(log_cl), np.asarray(low_data[1])])
    keep = theta_low[:, 0] < LOW_FIT_OMEGA_C_MAX
    low_bounds = np.array(bounds, copy=True)
    low_bounds[0] = (bounds[0][0], LOW_FIT_OMEGA_C_MAX)
    low_lo, low_hi = _feature_range(low_bounds)
    (low_layers, low_mean, low_basis), more = fit_ensemble(
        theta_low[keep], log_cl_low[keep], low_lo, low_hi, low_fit or {}
    )
    return dataclasses.replace(
        fitted, low_layers=low_layers, low_pca_mean=low_mean, low_pca_basis=low_basis,
        low_feature_lo=f32(low_lo), low_feature_hi=f32(low_hi), blend=f32(LOW_BLEND),
        low_members=more,
    )  # fmt: skip
