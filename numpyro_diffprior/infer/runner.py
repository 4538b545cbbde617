"""Shared machinery of the model-driven samplers: jitted chunks, progress, InferenceData.

Draws are i.i.d.; they are produced in chunks of at most `chunk_size` by one jitted function
(compiled once per sampler and chunk shape: array arguments - and Python floats - are traced,
other model arguments are static), with a tqdm bar over chunks; with `shard=True` the chunk's
batch is split over `jax.devices()`. `num_samples` draws are split into equal chunks
(`chunk_sizes`), so a run never computes more than a few draws it throws away.
With `num_workers > 1` ("auto": one per core on a CPU) the chunks, at least one per worker,
are computed by that many spawned processes with one XLA thread each
(`chain_processes.imap_in_processes`): on a 2-core CPU about 1.4x faster than one process,
whose XLA threads leave the cores partly idle. The sampler, the model and its arguments must
then be picklable (a module-level model; priors from checkpoints are).
"""

from __future__ import annotations

import math
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from numpyro_diffprior.infer.chain_processes import (
    imap_in_processes,
    keys_from_numpy,
    keys_to_numpy,
    resolve_num_workers,
)
from numpyro_diffprior.infer.inference_data import split_into_chains, to_inference_data
from numpyro_diffprior.infer.model_tracing import (
    _trace,
    inspect_model,
    linear_gaussian,
    make_log_likelihood,
)
from numpyro_diffprior.sharding import batch_sharding, make_mesh

__all__ = ["GUIDANCE", "chunk_sizes"]

GUIDANCE = ("annealed", "dps", "mmps")


def _split_kwargs(model_kwargs):
    dynamic, static = {}, {}
    for key, value in model_kwargs.items():
        leaves = jax.tree.leaves(value)
        if isinstance(value, float):  # a new float value must not retrace
            dynamic[key] = jnp.asarray(value)
        elif value is not None and leaves and all(hasattr(v, "shape") for v in leaves):
            dynamic[key] = value
        else:
            try:
                hash(value)
            except TypeError as err:
                raise ValueError(
                    f"model argument {key!r} is neither an array nor hashable"
                ) from err
            static[key] = value
    return dynamic, tuple(sorted(static.items()))


def chunk_sizes(num_samples: int, chunk_size: int, multiple_of: int = 1) -> tuple[int, int]:
    """(number of chunks, draws per chunk) for `num_samples` draws in chunks of at most
    `chunk_size` (rounded up to a multiple of `multiple_of`, the devices of a sharded batch):
    equal chunks, so that the draws computed and thrown away are fewer than the chunks
    (times `multiple_of`), and one compiled shape serves the whole run."""
    n_chunks = math.ceil(num_samples / chunk_size)
    size = math.ceil(num_samples / n_chunks)
    return n_chunks, multiple_of * math.ceil(size / multiple_of)


DIVERGENCE_THRESHOLD = 8.0  # prior standard deviations


def _warn_if_diverged(max_abs_theta_n, method):
    """Warn when draws land far outside the prior (a diverged sampler, not a posterior)."""
    frac = float(np.mean(np.asarray(max_abs_theta_n) > DIVERGENCE_THRESHOLD))
    if frac > 0:
        warnings.warn(
            f"{method}: {frac:.0%} of the draws have a parameter more than "
            f"{DIVERGENCE_THRESHOLD:g} prior standard deviations from the prior mean; the sampler "
            "has diverged for this prior (see docs/sampling.md for settings that work with the "
            "shipped network: the DiffusionPosteriorSampler defaults with num_steps >= 64, or "
            "AnnealedLangevinSampler(sigma_max=1, num_levels=100, num_steps_per_level=5)).",
            RuntimeWarning,
            stacklevel=3,
        )


class _ModelSampler:
    """Shared run/get_samples/to_inference_data machinery for the model-driven samplers."""

    method = "base"

    def __init__(
        self,
        model,
        *,
        guidance,
        chunk_size=256,
        num_chains=4,
        progress_bar=True,
        shard=False,
        num_workers=1,
    ):
        if guidance not in GUIDANCE:
            raise ValueError(f"unknown guidance {guidance!r}; valid: {', '.join(GUIDANCE)}")
        resolve_num_workers(num_workers, 1)  # validates
        if shard and num_workers != 1:
            raise ValueError("shard=True splits chunks over devices; use num_workers=1 with it")
        self.num_workers = num_workers
        self._sharding = None
        if shard and jax.device_count() > 1:
            if chunk_size % jax.device_count():
                raise ValueError(
                    f"chunk_size={chunk_size} must be divisible by {jax.device_count()} devices"
                )
            self._sharding = batch_sharding(make_mesh())
        self.model, self.guidance = model, guidance
        self.chunk_size, self.num_chains, self.progress_bar = chunk_size, num_chains, progress_bar
        self._chunk_jit = jax.jit(self._chunk, static_argnums=(2, 3))
        self._samples = None

    def __getstate__(self):
        # Sent to worker processes without its compiled function and results.
        dropped = ("_chunk_jit", "_samples", "_run")
        return {k: v for k, v in self.__dict__.items() if k not in dropped}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._chunk_jit = jax.jit(self._chunk, static_argnums=(2, 3))
        self._samples = None

    def _draw(self, rng_key, model, info, model_kwargs, num):  # pragma: no cover - abstract
        raise NotImplementedError

    def _chunk(self, rng_key, dynamic, static, size):
        kwargs = {**dynamic, **dict(static)}
        info = inspect_model(self.model, kwargs, validate=False)
        x_n, stats = self._draw(rng_key, self.model, info, kwargs, size)
        x = info.prior.from_normalized(x_n)
        log_lik = make_log_likelihood(self.model, info, kwargs)
        stats["data_log_likelihood"] = jax.vmap(log_lik)(x)
        n_params = info.prior.n_params
        stats["max_abs_theta_normalized"] = jnp.max(jnp.abs(x_n[:, :n_params]), axis=-1)
        return x, stats

    def settings(self) -> dict:
        return {}

    def _initial(self, rng_key, num, dim, scale):
        """scale * N(0, I) (num, dim), split over jax.devices() along the batch with `shard`."""
        x = scale * jax.random.normal(rng_key, (num, dim))
        if self._sharding is not None:
            x = jax.lax.with_sharding_constraint(x, self._sharding)
        return x

    def run(self, rng_key, num_samples: int, **model_kwargs):
        """Draw `num_samples` posterior samples; model_kwargs go to the model (e.g. shear_obs)."""
        if num_samples < self.num_chains:
            raise ValueError(f"num_samples must be >= num_chains={self.num_chains}")
        info = inspect_model(self.model, model_kwargs)
        if self.guidance in ("annealed", "mmps"):
            linear_gaussian(self.model, info, model_kwargs, check=True)
        dynamic, static = _split_kwargs(model_kwargs)
        devices = jax.device_count() if self._sharding is not None else 1
        workers = resolve_num_workers(self.num_workers, num_samples)
        chunk = min(self.chunk_size, math.ceil(num_samples / workers))
        n_chunks, size = chunk_sizes(num_samples, chunk, devices)
        keys = jax.random.split(rng_key, n_chunks)
        start = time.perf_counter()
        xs, stats = [], []
        chunks = self._chunks(keys, dynamic, static, size, min(workers, n_chunks))
        for x, st in tqdm(chunks, desc=self.method, total=n_chunks, disable=not self.progress_bar):
            xs.append(np.asarray(x))
            stats.append(jax.tree.map(np.asarray, st))
        x = np.concatenate(xs)[:num_samples]
        stats = {k: np.concatenate([s[k] for s in stats])[:num_samples] for k in stats[0]}
        prior = info.prior
        _warn_if_diverged(stats["max_abs_theta_normalized"], self.method)
        theta, kappa = prior.unpack(x)
        tr_obs = _observation_for_idata(self.model, info, model_kwargs)
        self._samples = {"theta": np.asarray(theta), "kappa": np.asarray(kappa), info.prior_name: x}
        self._run = dict(
            stats=stats, prior=prior, shear=tr_obs, wall_time=time.perf_counter() - start
        )
        return self

    def _chunks(self, keys, dynamic, static, size, workers):
        """(x, stats) of each chunk key, computed here or, in order, by `workers` processes."""
        if workers == 1:
            return (self._chunk_jit(key, dynamic, static, size) for key in keys)
        key_data, typed = keys_to_numpy(keys)
        task = _ChunkTask(self, dynamic, static, size, typed)
        return imap_in_processes(task, [(k,) for k in key_data], num_workers=workers)

    def get_samples(self) -> dict:
        if self._samples is None:
            raise ValueError("call run() first")
        return self._samples

    def to_inference_data(self, *, truth=None):
        samples = self.get_samples()
        prior = self._run["prior"]
        chains = lambda a: split_into_chains(a, self.num_chains)
        attrs = {
            "preset": prior.preset or "custom",
            "method": self.method,
            "guidance": self.guidance,
            "wall_time_s": float(self._run["wall_time"]),
            "num_draws": int(samples["theta"].shape[0]),
            **self.settings(),
        }
        return to_inference_data(
            chains(samples["theta"]),
            chains(samples["kappa"]),
            param_names=prior.param_names,
            shear_obs=self._run["shear"],
            sample_stats={k: chains(v) for k, v in self._run["stats"].items()},
            attrs=attrs,
            truth=truth,
        )


class _ChunkTask:
    """One chunk of draws of `sampler` from a chunk key's raw data, in a worker process
    (`chain_processes.imap_in_processes`); the sampler compiles once per worker."""

    def __init__(self, sampler, dynamic, static, size, typed):
        self.sampler, self.dynamic, self.static = sampler, dynamic, static
        self.size, self.typed = size, typed

    def __call__(self, key_data):
        key = keys_from_numpy(key_data[None], self.typed)[0]
        out = self.sampler._chunk_jit(key, self.dynamic, self.static, self.size)
        return jax.tree.map(np.asarray, out)


def _observation_for_idata(model, info, model_kwargs):
    """The observed `shear`-shaped site value (C, 2, N, N), if the model has one."""
    tr = _trace(model, lambda site: site["fn"].offset(), model_kwargs)
    n_bins, ny, nx = info.prior.map_shape
    for name in info.observed:
        value = np.asarray(tr[name]["value"])
        if value.shape == (n_bins, 2, ny, nx):
            return value
    return None
