"""Where the 6-parameter `FittedEmulator` sees jax-cosmo: seeded designs of parameter vectors
(`design_points`), jax-cosmo at each (`tabulate_design`, resumable: finished points are cached
on disk atomically; ~0.25 s per point on a 2-core CPU) and the nodes of the base spline and
first-order tables (`base_grid`, `BaseGrid`).
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import numpy as np

from numpyro_diffprior.atomic import atomic_savez as _atomic_savez
from numpyro_diffprior.cosmology.emulator.fitted import BOX_6_BOUNDS, NUISANCE
from numpyro_diffprior.cosmology.params import FIDUCIAL, PARAMETER_NAMES, prior_distribution

__all__ = [
    "design_points",
    "tabulate_design",
    "BaseGrid",
    "base_grid",
    "resolved_ell",
    "widened_prior",
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
