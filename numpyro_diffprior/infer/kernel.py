"""What the model-driven posterior kernels share: one compiled chunk of draws of a user's model
with the model's deterministic sites and pointwise log-likelihood; and, for one release, the
deprecated run shortcut (`kernel.run(key, n, ...)`, now `IIDSampler(kernel, n).run(key, ...)`).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from numpyro_diffprior.infer.algorithms import as_guidance
from numpyro_diffprior.infer.model_tracing import (
    inspect_model,
    make_log_likelihood,
    make_site_values,
)
from numpyro_diffprior.infer.runner import IIDSampler
from numpyro_diffprior.sharding import batch_sharding, make_mesh

RUN_OPTIONS = ("chunk_size", "num_chains", "progress_bar", "shard", "num_workers")


def warn_deprecated(old: str, new: str, stacklevel: int = 3) -> None:
    warnings.warn(
        f"{old} is deprecated and will be removed in the next release; {new}",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


class StepProgress:
    """Host-side step counter of a compiled chunk (called through `jax.debug.callback`): moves
    `bar` (a tqdm bar set by the runner for the run, else None) by one step. Worker processes
    get it without a bar."""

    def __init__(self):
        self.bar = None

    def __call__(self, i):
        if self.bar is not None:
            self.bar.update(1)

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self.bar = None


class _ModelKernel:
    """Base of the posterior kernels: `method`, `guidance`, `settings()` and
    `_draw(rng_key, model, info, model_kwargs, num, place) -> (x_n (num, D), stats)`, where
    `place(x)` puts a batch on the run's devices."""

    method = "base"

    def __init__(self, model, guidance, run_options: dict | None = None):
        self.model, self.guidance = model, as_guidance(guidance)
        self._run_options = dict(run_options or {})
        if self._run_options:
            options = {k: v for k, v in self._run_options.items() if k != "num_chains"}
            IIDSampler(self, 1, **options)  # validates now, as the old constructor did
        self._jitted = {}
        self._legacy = None
        self._progress = StepProgress()

    def __getstate__(self):
        # Sent to worker processes without its compiled functions and results.
        return {k: v for k, v in self.__dict__.items() if k not in ("_jitted", "_legacy")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._jitted, self._legacy = {}, None

    def settings(self) -> dict:
        return {}

    @property
    def progress_steps(self) -> int:
        """Progress-bar steps of one chunk (reverse-diffusion steps or Langevin levels)."""
        return 1

    def _draw(self, rng_key, model, info, model_kwargs, num, place):  # pragma: no cover
        raise NotImplementedError

    def _compiled(self, sharded: bool):
        """The jitted chunk function (rng_key, dynamic, static, size), compiled once per
        kernel, chunk shape and placement."""
        if sharded not in self._jitted:
            sharding = batch_sharding(make_mesh()) if sharded else None
            place = (lambda x: jax.lax.with_sharding_constraint(x, sharding)) if sharded else None

            def chunk(rng_key, dynamic, static, size):
                return self._chunk(rng_key, dynamic, static, size, place or (lambda x: x))

            self._jitted[sharded] = jax.jit(chunk, static_argnums=(2, 3))
        return self._jitted[sharded]

    def _chunk(self, rng_key, dynamic, static, size, place):
        kwargs = {**dynamic, **dict(static)}
        info = inspect_model(self.model, kwargs, validate=False)
        x_n, stats = self._draw(rng_key, self.model, info, kwargs, size, place)
        x = info.prior.from_normalized(x_n)
        stats["data_log_likelihood"] = jax.vmap(make_log_likelihood(self.model, info, kwargs))(x)
        n_params = info.prior.n_params
        stats["max_abs_theta_normalized"] = jnp.max(jnp.abs(x_n[:, :n_params]), axis=-1)
        log_lik, det = jax.vmap(make_site_values(self.model, info, kwargs))(x)
        return x, stats, log_lik, det

    # Deprecated run shortcut (one release): the run options were constructor arguments.
    def run(self, rng_key, num_samples: int, **model_kwargs):
        """Deprecated: use ``IIDSampler(kernel, num_samples, ...).run(rng_key, **model_kwargs)``."""
        name = type(self).__name__
        warn_deprecated(
            f"{name}.run(rng_key, num_samples, ...)",
            f"use IIDSampler({name}(...), num_samples, chunk_size=..., num_workers=...)"
            ".run(rng_key, **model_kwargs)",
        )
        options = dict(self._run_options)
        num_chains = options.pop("num_chains", None)
        self._legacy = IIDSampler(self, num_samples, **options)
        self._legacy._num_chains = num_chains
        self._legacy.run(rng_key, **model_kwargs)
        return self

    def _legacy_runner(self):
        if self._legacy is None:
            raise ValueError("call run() first")
        return self._legacy

    def get_samples(self, group_by_chain: bool = False) -> dict:
        """Deprecated with `run`: `IIDSampler.get_samples`."""
        return self._legacy_runner().get_samples(group_by_chain)

    def to_inference_data(self, *, truth=None):
        """Deprecated with `run`: `IIDSampler.to_inference_data`."""
        return self._legacy_runner().to_inference_data(truth=truth)
