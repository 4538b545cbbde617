"""Fitting the 6-parameter `FittedEmulator` to jax-cosmo (design, tabulation, fit).

Seeded designs of parameter vectors (`design_points`), jax-cosmo at each (`tabulate_design`,
resumable: finished points are cached on disk atomically; ~0.25 s per point on a 2-core CPU),
the base spline and first-order tables (`base_grid`) and the optax fit of the MLP ensembles to
the residual (`fit_emulator`). The build recipe that chooses the designs and fit settings of
the shipped emulator is `emulator_recipe.build_fitted_emulator` (also importable from here).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from numpyro_diffprior.cosmology.emulator import atomic_savez as _atomic_savez
from numpyro_diffprior.cosmology.fitted_emulator import (
    _BASE_OFFSET,
    BOX_6_BOUNDS,
    NUISANCE,
    FittedEmulator,
    _feature_range,
    base_log_cl,
    box_features,
    compress_tables,
    mlp,
)
from numpyro_diffprior.cosmology.params import FIDUCIAL, PARAMETER_NAMES, prior_distribution

__all__ = [
    "design_points",
    "tabulate_design",
    "fit_residual_mlp",
    "fit_emulator",
    "BaseGrid",
    "base_grid",
    "resolved_ell",
]


def resolved_ell(preset, ell) -> np.ndarray:
    """Mask of multipoles the map resolves: 2 pi / L <= l <= sqrt(2) pi N / L."""
    ell = np.asarray(ell)
    lo = 2 * np.pi / preset.field_rad
    hi = np.sqrt(2) * np.pi * preset.npix / preset.field_rad
    return (ell >= lo) & (ell <= hi)


def widened_prior(name: str, widen: float):
    """The prior of one parameter with its scale multiplied by `widen` (same truncation)."""
    import numpyro.distributions as dist

    d = prior_distribution(name)
    base = d.base_dist if isinstance(d, dist.TwoSidedTruncatedDistribution) else d
    if hasattr(base, "base_dist"):
        base = base.base_dist
    loc, scale = float(base.loc), float(base.scale) * widen
    if isinstance(d, dist.Normal):
        return dist.Normal(loc, scale)
    low = float(getattr(d, "low", -np.inf))
    high = float(getattr(d, "high", np.inf))
    return dist.TruncatedNormal(loc, scale, low=low, high=high)


def design_points(num: int, bounds, seed: int = 0, widen: float = 1.5) -> np.ndarray:
    """Design (num, 6) in PARAMETER_NAMES order: independent draws from the prior with every
    scale widened by `widen`, restricted to the box (inverse-CDF sampling, numpy RNG `seed`).

    Widening covers the tails of the prior without spending the fit on the box's corners
    (e.g. Omega_c = 0.02 with sigma_8 = 0.27 and n_s = 0.65), which the prior never visits.
    """
    bounds = np.asarray(bounds, np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty((num, 6))
    for p, name in enumerate(PARAMETER_NAMES):
        d = widened_prior(name, widen)
        c_lo, c_hi = (float(d.cdf(b)) for b in bounds[p])
        q = rng.uniform(c_lo, c_hi, num)
        out[:, p] = np.clip(np.asarray(d.icdf(q), np.float64), *bounds[p])
    return out


def tabulate_design(preset, theta, ell, cache=None, progress: bool = True, chunk: int = 50):
    """jax-cosmo log C_l of the upper-triangle pairs at each theta (num, 6): (num, C(C+1)/2, L).

    With `cache` (an .npz path) finished points are saved atomically every `chunk` points and a
    rerun with the same design and multipoles resumes where it stopped; a cache written for
    another design is an error.
    """
    from tqdm.auto import tqdm

    from numpyro_diffprior.cosmology.spectra import angular_cl_reference

    theta, ell = np.asarray(theta, np.float64), np.asarray(ell, np.float64)
    rows, cols = np.triu_indices(preset.n_bins)
    log_cl = np.full((theta.shape[0], rows.size, ell.size), np.nan)
    done = 0
    if cache is not None:
        cache = pathlib.Path(cache)
        if cache.is_file():
            with np.load(cache) as old:
                if not (np.array_equal(old["theta"], theta) and np.array_equal(old["ell"], ell)):
                    raise ValueError(f"cache {cache} was written for another design; remove it")
                done = int(old["done"])
                log_cl[:done] = old["log_cl"][:done]
        cache.parent.mkdir(parents=True, exist_ok=True)
    with jax.enable_x64(True):
        cl_fn = jax.jit(lambda t: angular_cl_reference(t, preset.survey, ell))
        bar = tqdm(total=len(theta), initial=done, desc="jax-cosmo C_l", disable=not progress)
        for i in range(done, len(theta)):
            cl = np.asarray(cl_fn(theta[i]))[rows, cols]
            if not np.all(np.isfinite(cl)) or np.any(cl <= 0):
                raise ValueError(f"jax-cosmo returned non-positive C_l at theta={theta[i]}")
            log_cl[i] = np.log(cl)
            bar.update()
            if cache is not None and ((i + 1) % chunk == 0 or i + 1 == len(theta)):
                _atomic_savez(cache, theta=theta, ell=ell, log_cl=log_cl, done=i + 1)
        bar.close()
    return log_cl


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


@dataclasses.dataclass(frozen=True)
class BaseGrid:
    """Nodes of the base tables: the (omega_c x sigma_8) table at fiducial and, for the
    first-order tables, `anova` = 6 node arrays (Omega_c, Omega_b, sigma_8, h, n_s, w_0; the
    four nuisance axes include the fiducial value as a node)."""

    omega_c: np.ndarray
    sigma_8: np.ndarray
    anova: tuple

    def design(self) -> np.ndarray:
        """All jax-cosmo points of the base tables, (N, 6): the fiducial table, the fiducial
        slice of the first-order grid, then each nuisance parameter's off-fiducial nodes."""
        fid = np.array([FIDUCIAL[n] for n in PARAMETER_NAMES])

        def grid(oc, s8, q=None, value=None):
            pts = np.tile(fid, (len(oc) * len(s8), 1))
            pts[:, 0] = np.repeat(oc, len(s8))
            pts[:, 2] = np.tile(s8, len(oc))
            if q is not None:
                pts[:, q] = value
            return pts

        oc, s8 = self.anova[0], self.anova[2]
        parts = [grid(self.omega_c, self.sigma_8), grid(oc, s8)]
        for q in NUISANCE:
            parts += [grid(oc, s8, q, v) for v in self.anova[q] if v != fid[q]]
        return np.concatenate(parts)

    def assemble(self, log_cl):
        """(base (n_c, n_s, P, L), first-order (4, m_c, m_s, m_p, P, L)) from the design's
        log C_l (N, P, L)."""
        fid = np.array([FIDUCIAL[n] for n in PARAMETER_NAMES])
        n2 = len(self.omega_c) * len(self.sigma_8)
        m_c, m_s = len(self.anova[0]), len(self.anova[2])
        base = log_cl[:n2].reshape(len(self.omega_c), len(self.sigma_8), *log_cl.shape[1:])
        at_fid = log_cl[n2 : n2 + m_c * m_s].reshape(m_c, m_s, *log_cl.shape[1:])
        start, tables = n2 + m_c * m_s, []
        for q in NUISANCE:
            slices = []
            for v in self.anova[q]:
                if v == fid[q]:
                    slices.append(np.zeros_like(at_fid))
                else:
                    block = log_cl[start : start + m_c * m_s].reshape(at_fid.shape)
                    slices.append(block - at_fid)
                    start += m_c * m_s
            tables.append(np.stack(slices, axis=2))
        return base, np.stack(tables)


def _nodes_through(lo, hi, center, num):
    """`num` nodes on [lo, hi], evenly spaced on each side of `center`, which is one of them."""
    left = int(np.clip(round((num - 1) * (center - lo) / (hi - lo)), 1, num - 2))
    right = np.linspace(center, hi, num - left)[1:]
    return np.concatenate([np.linspace(lo, center, left + 1), right])


def base_grid(bounds=None, *, num_omega_c=18, num_sigma_8=13, anova_omega_c=10,
              anova_refine=3, anova_sigma_8=9, anova_param=9) -> BaseGrid:  # fmt: skip
    """Default nodes: log-spaced Omega_c and sigma_8 (for the first-order tables, the lowest
    `anova_refine` Omega_c intervals halved, where the spectra change fastest), and for each
    nuisance parameter `anova_param` nodes through its fiducial value, evenly spaced on either
    side (in log for Omega_b)."""
    bounds = BOX_6_BOUNDS if bounds is None else bounds
    bounds = np.asarray(bounds, np.float64)
    omega_c = np.geomspace(*bounds[0], anova_omega_c)
    halves = np.sqrt(omega_c[:anova_refine] * omega_c[1 : anova_refine + 1])
    omega_c = np.sort(np.r_[omega_c, halves])
    anova = [omega_c, None, np.geomspace(*bounds[2], anova_sigma_8)]
    anova += [None] * 3
    for q in NUISANCE:
        fid = FIDUCIAL[PARAMETER_NAMES[q]]
        if q == 1:
            anova[q] = np.exp(_nodes_through(*np.log(bounds[q]), np.log(fid), anova_param))
            anova[q][np.argmin(np.abs(anova[q] - fid))] = fid  # exactly, despite rounding
        else:
            anova[q] = _nodes_through(*bounds[q], fid, anova_param)
    return BaseGrid(
        omega_c=np.geomspace(*bounds[0], num_omega_c),
        sigma_8=np.geomspace(*bounds[2], num_sigma_8),
        anova=tuple(anova),
    )


def fit_emulator(
    preset, theta, log_cl, ell, grid: BaseGrid, base_tables, *, bounds=None, progress=True,
    low_data=None, low_fit=None, table_tol=1e-4, **fit_kwargs,
):  # fmt: skip
    """A FittedEmulator from a tabulated design theta (N, 6), log_cl (N, C(C+1)/2, L) on
    `ell`, and the base tables `grid.assemble(...)` of jax-cosmo on `grid.design()`.

    With `low_data` = (theta, log_cl) of extra points, a second, small-Omega_c MLP is fitted
    (`fit_residual_mlp(**low_fit)`) on every point, design and extra, with Omega_c <
    LOW_FIT_OMEGA_C_MAX, and blended in below LOW_BLEND[1] (`fitted_emulator.blend_weight`);
    `members` (in `fit_kwargs` or `low_fit`) > 1 fits that many MLPs (seeds `seed`,
    `seed` + 1, ...) and averages them.
    With `table_tol`, the first-order tables are stored on principal components
    (`fitted_emulator.compress_tables`) exact to that tolerance in log C_l.
    """
    from numpyro_diffprior.cosmology.emulator import spline_basis

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


LOW_FIT_OMEGA_C_MAX = 0.1  # the small-Omega_c MLP is fitted on the points below this
LOW_BLEND = (0.06, 0.09)  # Omega_c range where the small-Omega_c fit hands over to the main one


def __getattr__(name):
    """The build recipe moved to `emulator_recipe`; its names stay importable from here."""
    from numpyro_diffprior.cosmology import emulator_recipe

    if name in emulator_recipe.RECIPE_NAMES:
        return getattr(emulator_recipe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
