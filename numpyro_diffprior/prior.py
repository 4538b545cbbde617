"""`DiffusionPrior`: a learned joint prior p(theta, kappa) as a NumPyro distribution.

The distribution lives on the flat PHYSICAL joint vector x = [theta (P,), kappa (C, N, N) raveled]
(support `real_vector`, event shape (D,), D = P + C*N*N). Its denoiser works in normalised
coordinates (`diffusion.normalization`): noise of level sigma is added to the *normalised* vector
x_n = (x - offset) / s, so `score`/`denoise` in physical units are the chain-rule images of the
normalised ones: score_phys(x, sigma) = score_n(x_n, sigma) / s.

- `sample`: reverse diffusion (Karras et al. 2022, Algorithm 2 Heun ODE by default; `sampler="sde"`
  for the Euler-Maruyama reverse SDE).
- `log_prob`: a GENUINE log density from the probability-flow ODE with the instantaneous change of
  variables (Chen et al. 2018; Song et al. 2021, Eq. 39):
  log p_0(x) = log N(x(sigma_max); 0, (sigma_max^2 + 1) I) + int div_x f dsigma,
  f = (x - D(x; sigma)) / sigma, div f = (D - tr dD/dx) / sigma (RK4 on the Karras rho=7
  ladder, run upwards), with the exact trace (D jvps; D <= 512) or a
  Hutchinson estimate with fixed Rademacher probes. Cost: `log_prob_steps` x 4 x (D or
  num_probes) denoiser jvps per point - for evaluation only. Its gradient is refused with a clear
  error, so NUTS/HMC can never run on a model with this prior (use `infer.posterior` or
  `infer.langevin`).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions import constraints

from numpyro_diffprior.denoiser import NetworkDenoiser
from numpyro_diffprior.diffusion.normalization import Normalizer, pack, scale_vector, unpack
from numpyro_diffprior.diffusion.samplers import edm_sampler, euler_maruyama_sampler

__all__ = ["DiffusionPrior", "NetworkDenoiser", "NoGradientError", "load_prior"]


class NoGradientError(ValueError):
    """Raised when something differentiates `DiffusionPrior.log_prob` (e.g. NUTS/HMC)."""


@jax.custom_jvp
def _refuse_gradient(x):
    return x


@_refuse_gradient.defjvp
def _refuse_gradient_jvp(primals, tangents):
    raise NoGradientError(
        "DiffusionPrior.log_prob is an expensive probability-flow-ODE density meant for "
        "evaluation; gradient-based MCMC (NUTS/HMC/MALA) on a DiffusionPrior site is not "
        "supported. Use numpyro_diffprior.infer.DiffusionPosteriorSampler or "
        "AnnealedLangevinSampler."
    )


class DiffusionPrior(dist.Distribution):
    """Joint prior over the flat physical vector [theta, kappa] defined by a denoiser.

    Give either `denoise_fn(x_n (B, D), sigma (B,)) -> x_hat_n` or `apply_fn(params, x_n, sigma)`
    with `params` (a pytree; e.g. an oracle from `numpyro_diffprior.testing`, or network weights).
    """

    support = constraints.real_vector
    pytree_data_fields = ("params", "normalizer")
    pytree_aux_fields = (
        "denoise_fn",
        "apply_fn",
        "n_params",
        "map_shape",
        "param_names",
        "preset",
        "sampler",
        "num_steps",
        "sigma_min",
        "sigma_max",
        "log_prob_steps",
        "num_probes",
    )

    def __init__(
        self,
        denoise_fn=None,
        *,
        normalizer: Normalizer,
        n_params: int,
        map_shape,
        apply_fn=None,
        params=None,
        param_names=None,
        preset: str | None = None,
        sampler: str = "ode",
        num_steps: int = 32,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        log_prob_steps: int = 64,
        num_probes: int | None = None,
        validate_args=None,
    ):
        if (denoise_fn is None) == (apply_fn is None):
            raise ValueError("give exactly one of denoise_fn or apply_fn (with params)")
        if sampler not in ("ode", "sde"):
            raise ValueError(f"sampler must be 'ode' or 'sde', got {sampler!r}")
        map_shape = tuple(int(s) for s in map_shape)
        if len(map_shape) != 3:
            raise ValueError(f"map_shape must be (C, N, N), got {map_shape}")
        if normalizer.theta_mean.shape != (n_params,) or normalizer.kappa_std.shape != (
            map_shape[0],
        ):
            raise ValueError("normalizer shapes do not match n_params / map_shape")
        self.denoise_fn, self.apply_fn, self.params = denoise_fn, apply_fn, params
        self.normalizer = normalizer
        self.n_params, self.map_shape = int(n_params), map_shape
        names = tuple(param_names) if param_names is not None else None
        self.param_names = names or tuple(f"theta_{i}" for i in range(n_params))
        self.preset, self.sampler = preset, sampler
        self.num_steps, self.sigma_min, self.sigma_max = num_steps, sigma_min, sigma_max
        self.log_prob_steps, self.num_probes = log_prob_steps, num_probes
        dim = self.n_params + math.prod(map_shape)
        super().__init__(batch_shape=(), event_shape=(dim,), validate_args=validate_args)

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(cls, checkpoint, **kwargs) -> DiffusionPrior:
        """A prior from a `checkpoints.Checkpoint`; its EMA weights become pytree data."""
        fields = checkpoint_fields(checkpoint)
        return cls(apply_fn=checkpoint.network_denoiser(), **fields, **kwargs)

    @classmethod
    def from_pretrained(cls, preset_name: str = "lsst-y10-coarse", **kwargs) -> DiffusionPrior:
        """The package's pretrained prior for a preset (`checkpoints.load_pretrained`)."""
        from numpyro_diffprior.checkpoints import load_pretrained

        return cls.from_checkpoint(load_pretrained(preset_name), **kwargs)

    @classmethod
    def load(cls, path, **kwargs) -> DiffusionPrior:
        """A prior from a checkpoint written by training (`checkpoints.load_checkpoint`)."""
        from numpyro_diffprior.checkpoints import load_checkpoint

        return cls.from_checkpoint(load_checkpoint(path), **kwargs)

    # -- coordinates --------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self.event_shape[0]

    def unpack(self, x):
        """(..., D) -> (theta (..., P), kappa (..., C, N, N)), physical units."""
        return unpack(x, self.n_params, self.map_shape)

    def pack(self, theta, kappa):
        return pack(theta, kappa)

    def scale(self):
        """s (D,) with x_phys = s * x_n + offset."""
        return scale_vector(self.normalizer, self.map_shape)

    def offset(self):
        zeros = jnp.zeros(self.dim - self.n_params, self.normalizer.theta_mean.dtype)
        return jnp.concatenate([self.normalizer.theta_mean, zeros])

    def to_normalized(self, x):
        return (x - self.offset()) / self.scale()

    def from_normalized(self, x_n):
        return x_n * self.scale() + self.offset()

    # -- denoiser -----------------------------------------------------------------------------
    def denoise_normalized(self, x_n, sigma):
        """D(x_n; sigma) on normalised coordinates; x_n (B, D), sigma (B,)."""
        if self.apply_fn is not None:
            return self.apply_fn(self.params, x_n, sigma)
        return self.denoise_fn(x_n, sigma)

    def score_normalized(self, x_n, sigma):
        """Tweedie: (D(x_n; sigma) - x_n) / sigma^2."""
        return (self.denoise_normalized(x_n, sigma) - x_n) / sigma[:, None] ** 2

    def _batched(self, fn, x, sigma):
        x = jnp.asarray(x)
        batch = x.shape[:-1]
        flat = x.reshape((-1, self.dim))
        sig = jnp.broadcast_to(jnp.asarray(sigma, flat.dtype), batch).reshape(-1)
        return fn(flat, sig).reshape(batch + (self.dim,))

    def denoise(self, x, sigma):
        """Denoised physical vector E[x | x_sigma] (noise sigma added in normalised space)."""
        fn = lambda xf, s: self.from_normalized(self.denoise_normalized(self.to_normalized(xf), s))
        return self._batched(fn, x, sigma)

    def score(self, x, sigma):
        """Score of the noisy prior in physical coordinates: score_n / s."""
        fn = lambda xf, s: self.score_normalized(self.to_normalized(xf), s) / self.scale()
        return self._batched(fn, x, sigma)

    # -- Distribution API ---------------------------------------------------------------------
    def sample(self, key, sample_shape=()):
        num = math.prod(sample_shape) if sample_shape else 1
        kw = dict(num_steps=self.num_steps, sigma_min=self.sigma_min, sigma_max=self.sigma_max)
        run = edm_sampler if self.sampler == "ode" else euler_maruyama_sampler
        x_n = run(key, self.denoise_normalized, num, self.dim, **kw)
        return self.from_normalized(x_n).reshape(tuple(sample_shape) + (self.dim,))

    def log_prob(self, value):
        value = _refuse_gradient(jnp.asarray(value))
        if value.shape[-1:] != (self.dim,):
            raise ValueError(f"value must have shape (..., {self.dim}), got {value.shape}")
        if not isinstance(value, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(value))):
            bad = int(jnp.sum(~jnp.isfinite(value)))
            raise ValueError(
                f"value must be finite, got {bad} NaN or infinite entries of {value.size}: the "
                "log density of a non-finite point is undefined"
            )
        batch = value.shape[:-1]
        x_n = self.to_normalized(value.reshape((-1, self.dim)))
        log_n = jax.vmap(self._log_density_normalized)(x_n)
        return (log_n - jnp.sum(jnp.log(self.scale()))).reshape(batch)

    def _log_density_normalized(self, x):
        """Probability-flow ODE dx/dsigma = (x - D)/sigma from sigma_min to sigma_max (RK4)."""
        dim = self.dim
        d1 = lambda y, s: self.denoise_normalized(y[None], s[None])[0]
        exact = self.num_probes is None and dim <= 512
        if not exact:
            probes = jax.random.rademacher(
                jax.random.PRNGKey(0), (self.num_probes or 16, dim), dtype=x.dtype
            )

        def drift_div(y, s):
            if exact:
                den, jac = d1(y, s), jax.jacfwd(d1)(y, s)
                trace = jnp.trace(jac)
            else:
                den, jz = jax.vmap(lambda z: jax.jvp(lambda v: d1(v, s), (y,), (z,)))(probes)
                den, trace = den[0], jnp.mean(jnp.sum(probes * jz, axis=-1))
            return y - den, dim - trace

        rho = 7.0  # Karras et al. Eq. 5 spacing, run from sigma_min up to sigma_max
        frac = jnp.linspace(0.0, 1.0, self.log_prob_steps)
        lo, hi = self.sigma_min ** (1 / rho), self.sigma_max ** (1 / rho)
        sig = (lo + frac * (hi - lo)) ** rho

        def rhs(y, s):
            f, g = drift_div(y, s)
            return f / s, g / s

        def step(carry, ss):  # classical RK4 on (x, log-density increment)
            y, acc = carry
            s0, s1 = ss
            h, sm = s1 - s0, 0.5 * (s0 + s1)
            k1, g1 = rhs(y, s0)
            k2, g2 = rhs(y + 0.5 * h * k1, sm)
            k3, g3 = rhs(y + 0.5 * h * k2, sm)
            k4, g4 = rhs(y + h * k3, s1)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            return (y, acc + h / 6 * (g1 + 2 * g2 + 2 * g3 + g4)), None

        (y, acc), _ = jax.lax.scan(step, (x, jnp.zeros((), x.dtype)), (sig[:-1], sig[1:]))
        var = self.sigma_max**2 + 1.0
        base = -0.5 * jnp.sum(y**2) / var - 0.5 * dim * jnp.log(2 * jnp.pi * var)
        return base + acc


def checkpoint_fields(checkpoint) -> dict:
    """The prior's fields a checkpoint fixes: EMA weights, normaliser and the preset's shapes."""
    preset = checkpoint.preset
    return dict(
        params=checkpoint.ema_params,
        normalizer=checkpoint.normalizer,
        n_params=preset.n_params,
        map_shape=preset.map_shape,
        param_names=preset.param_names,
        preset=preset.name,
    )


def load_prior(model, *, prior_class=None) -> DiffusionPrior:
    """A DiffusionPrior (or `prior_class`, a subclass) from a checkpoint directory or a
    pretrained preset name."""
    from numpyro_diffprior.presets import PRESETS

    cls = DiffusionPrior if prior_class is None else prior_class
    if os.path.isdir(model):
        return cls.load(model)
    if model in PRESETS:
        return cls.from_pretrained(model)
    raise FileNotFoundError(
        f"model {model!r} is neither a checkpoint directory nor a preset ({', '.join(PRESETS)})"
    )
