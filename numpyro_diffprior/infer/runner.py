"""Running a posterior algorithm: `IIDSampler(kernel, num_samples, ...)`, as NumPyro's
`MCMC(kernel, ...)` runs `NUTS(model)`.

The kernel (`DiffusionPosteriorSampler`, `AnnealedLangevinSampler`) holds the algorithm; the
runner holds how the draws are computed, none of which changes the algorithm. Draws are
i.i.d.; they are produced in chunks of at most `chunk_size` by one jitted function (compiled
once per kernel and chunk shape: array arguments - and Python floats - are traced, other model
arguments are static), with a tqdm bar over the reverse-diffusion steps (over chunks when
worker processes compute them); with `shard=True` the chunk's batch is split over
`jax.devices()`. `num_samples` draws are split into equal chunks (`chunk_sizes`), so a run
never computes more than a few draws it throws away.
With `num_workers > 1` ("auto": one per core on a CPU) the chunks, at least one per worker,
are computed by that many spawned processes with one XLA thread each
(`runtime.processes.imap_in_processes`): on a 2-core CPU about 1.4x faster than one process,
whose XLA threads leave the cores partly idle. The kernel, the model and its arguments must
then be picklable (a module-level model; priors from checkpoints are). With `scheduler` the
chunks are computed on a Dask cluster instead (`runtime.executors`; "local" or an address).

The draws are stored as `inference_data.iid_num_chains(num_samples)` chains (the largest of 4,
3, 2 that divides num_samples, else one chain): every draw is kept, in `get_samples` and in
the InferenceData alike.

Over 300 lines: the run (chunk layout, where the chunks are computed: here, the process pool
or Dask), its input checks and its results (samples, summary, InferenceData) are one object.
"""

from __future__ import annotations

import math
import time
import warnings

import jax
import numpy as np
from tqdm.auto import tqdm

from numpyro_diffprior.infer.algorithms import RUN_DEFAULTS
from numpyro_diffprior.infer.inference_data import (
    iid_num_chains,
    split_into_chains,
    to_inference_data,
)
from numpyro_diffprior.infer.model_sites import split_model_kwargs
from numpyro_diffprior.infer.model_tracing import inspect_model, linear_gaussian, observed_values
from numpyro_diffprior.runtime.executors import check_scheduler, resolve_executor
from numpyro_diffprior.runtime.processes import keys_from_numpy, keys_to_numpy, resolve_num_workers
from numpyro_diffprior.runtime.threads import imap_in_threads

__all__ = ["IIDSampler", "chunk_sizes", "DIVERGENCE_THRESHOLD"]

_R = RUN_DEFAULTS


def _observation_for_idata(model, info, model_kwargs):
    """The observed `shear`-shaped site value (C, 2, N, N), if the model has one."""
    values = observed_values(model, info, model_kwargs)
    n_bins, ny, nx = info.prior.map_shape
    for name in info.observed:
        value = np.asarray(values[name])
        if value.shape == (n_bins, 2, ny, nx):
            return value
    return None


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
            "shipped network: DiffusionPosteriorSampler.for_shipped_network(model), or "
            "AnnealedLangevinSampler(model, sigma_max=1, num_levels=100, "
            "num_steps_per_level=5)).",
            RuntimeWarning,
            stacklevel=3,
        )


class IIDSampler:
    """Independent posterior draws of a kernel (`DiffusionPosteriorSampler`,
    `AnnealedLangevinSampler`): ``IIDSampler(kernel, num_samples).run(rng_key, **model_kwargs)``,
    then `get_samples`, `print_summary`, `to_inference_data`.

    chunk_size: draws per compiled batch. num_workers: processes that compute the chunks (1:
    this one; "auto": one per CPU core on a CPU, 1 on an accelerator). shard: split each
    chunk's batch over `jax.devices()` (chunk_size must be divisible by the device count).
    scheduler: compute the chunks on Dask (`runtime.executors`): "local" starts a
    `LocalCluster` for each run (num_workers processes; 1 or "auto": one per core), an address
    ("tcp://host:8786") or a `distributed.Client` uses a running cluster; the chunks are laid
    out for its workers, and the draws equal those of the process pool with as many workers.
    num_threads: threads of this process that compute the chunks side by side (1; "auto": one
    per CPU core on a CPU, 1 on an accelerator), after one compilation; the chunks are laid out
    as for as many worker processes, so the draws equal theirs. On a 2-core CPU two threads
    compute the amortised sampler's draws about 1.6x faster than one (one compiled batch at a
    time leaves the cores partly idle), with no worker start-up.
    """

    def __init__(
        self,
        kernel,
        num_samples: int,
        *,
        chunk_size: int = _R["chunk_size"],
        num_workers=_R["num_workers"],
        progress_bar: bool = _R["progress_bar"],
        shard: bool = _R["shard"],
        scheduler=None,
        num_threads=1,
    ):
        if int(num_samples) < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        if int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        resolve_num_workers(num_workers, 1)  # validates
        if shard and num_workers != 1:
            raise ValueError("shard=True splits chunks over devices; use num_workers=1 with it")
        if shard and scheduler is not None:
            raise ValueError("shard=True splits chunks over devices; leave scheduler out with it")
        try:
            several_threads = resolve_num_workers(num_threads, 2) > 1
        except ValueError:
            raise ValueError(
                f"num_threads must be a positive integer or 'auto', got {num_threads!r}"
            ) from None
        if several_threads and (num_workers != 1 or shard or scheduler is not None):
            raise ValueError(
                "num_threads > 1 computes the chunks in this process; use it without "
                "num_workers, shard or scheduler"
            )
        self.scheduler = check_scheduler(scheduler)
        self._sharded = bool(shard and jax.device_count() > 1)
        if self._sharded and chunk_size % jax.device_count():
            raise ValueError(
                f"chunk_size={chunk_size} must be divisible by {jax.device_count()} devices"
            )
        self.kernel, self.num_samples = kernel, int(num_samples)
        self.chunk_size, self.num_workers = int(chunk_size), num_workers
        self.num_threads = num_threads
        self.progress_bar, self.shard = progress_bar, shard
        self._num_chains = None  # set only by the deprecated `num_chains` of the kernels
        self._samples = None

    @property
    def num_chains(self) -> int:
        """Chains the draws are stored as (`inference_data.iid_num_chains`)."""
        return self._num_chains or iid_num_chains(self.num_samples)

    def run(self, rng_key, **model_kwargs):
        """Draw `num_samples` posterior samples; model_kwargs go to the model (e.g. shear_obs)."""
        kernel, num_samples = self.kernel, self.num_samples
        if num_samples % self.num_chains:
            raise ValueError(
                f"num_samples={num_samples} is not a multiple of num_chains={self.num_chains} "
                "(num_chains is deprecated: leave it out and every draw is kept)"
            )
        _check_shear_model_inputs(kernel.model, model_kwargs)
        info = inspect_model(kernel.model, model_kwargs)
        if kernel.guidance.name in ("annealed", "mmps"):
            linear_gaussian(kernel.model, info, model_kwargs, check=True)
        getattr(kernel, "check_inputs", lambda *_: None)(info, model_kwargs)  # kernel's own
        dynamic, static = split_model_kwargs(model_kwargs)
        devices = jax.device_count() if self._sharded else 1
        start = time.perf_counter()
        if self.scheduler is None:
            workers, executor = resolve_num_workers(self.num_workers, num_samples), None
        else:  # a cluster: lay the chunks out for its workers
            executor = resolve_executor(self.num_workers, self.scheduler, num_tasks=num_samples)
            workers = executor.num_workers
        threads = resolve_num_workers(self.num_threads, num_samples)
        chunk = min(self.chunk_size, math.ceil(num_samples / max(workers, threads)))
        n_chunks, size = chunk_sizes(num_samples, chunk, devices)
        keys = jax.random.split(rng_key, n_chunks)
        if executor is None:
            executor = resolve_executor(min(workers, n_chunks))
        outs = []
        chunks = self._chunks(keys, dynamic, static, size, executor, min(threads, n_chunks))
        # in this process the bar moves with every reverse-diffusion step (or Langevin level)
        hook = getattr(kernel, "_progress", None)
        here = executor.backend == "in-process" and hook is not None
        steps = kernel.progress_steps if here else 1
        bar = tqdm(desc=kernel.method, total=n_chunks * steps, disable=not self.progress_bar)
        try:
            if here and self.progress_bar:
                bar.set_postfix_str("compiling")
                hook.bar = bar
            for out in chunks:
                outs.append(jax.tree.map(np.asarray, out))
                if not here:
                    bar.update(1)
                bar.set_postfix_str(f"{min(len(outs) * size, num_samples)} draws")
        finally:
            if hook is not None:
                hook.bar = None
            bar.close()
            chunks.close()
            executor.close()
        x, stats, log_lik, det = jax.tree.map(lambda *a: np.concatenate(a)[:num_samples], *outs)
        prior = info.prior
        _warn_if_diverged(stats["max_abs_theta_normalized"], kernel.method)
        theta, kappa = prior.unpack(x)
        theta, kappa = np.asarray(theta), np.asarray(kappa)
        self._samples = {**det, "theta": theta, "kappa": kappa, info.prior_name: x}
        self._deterministic = {k: v for k, v in det.items() if k not in ("theta", "kappa")}
        self._run = dict(
            stats=stats,
            log_likelihood=log_lik,
            prior=prior,
            shear=_observation_for_idata(kernel.model, info, model_kwargs),
            wall_time=time.perf_counter() - start,
        )
        return self

    def _chunks(self, keys, dynamic, static, size, executor, threads=1):
        """The outputs of each chunk key, in order, computed here (by `threads` threads side by
        side) or by `executor`'s workers (`runtime.executors`: the process pool or Dask)."""
        key_data, typed = keys_to_numpy(keys)
        if executor.backend == "in-process":
            # one key per chunk from numpy: iterating a key array compiles a program of its own
            keys = [keys_from_numpy(k, typed) for k in key_data]
            fn = self.kernel._compiled(self._sharded)
            if threads > 1:
                compiled = fn.lower(keys[0], dynamic, static, size).compile()
                run = lambda key: jax.block_until_ready(compiled(key, dynamic))  # noqa: E731
                return imap_in_threads(run, keys, threads)
            return (fn(key, dynamic, static, size) for key in keys)
        task = _ChunkTask(self.kernel, dynamic, static, size, typed)
        return executor.imap(task, [(k,) for k in key_data])

    def get_samples(self, group_by_chain: bool = False) -> dict:
        """{"theta" (n, P), "kappa" (n, C, N, N), the prior site (n, D), and the model's
        deterministic sites}; with `group_by_chain` each is (num_chains, n / num_chains, ...),
        the layout of `to_inference_data`."""
        if self._samples is None:
            raise ValueError("call run() first")
        if not group_by_chain:
            return self._samples
        return {k: split_into_chains(v, self.num_chains) for k, v in self._samples.items()}

    def sample_stats(self) -> dict:
        """Per-draw statistics; `diverging` flags draws with a parameter more than
        DIVERGENCE_THRESHOLD prior standard deviations from the prior mean."""
        if self._samples is None:
            raise ValueError("call run() first")
        stats = dict(self._run["stats"])
        stats["diverging"] = np.asarray(stats["max_abs_theta_normalized"]) > DIVERGENCE_THRESHOLD
        return stats

    @property
    def num_diverged(self) -> int:
        """Draws flagged `diverging` (0 for a healthy run)."""
        return int(np.sum(self.sample_stats()["diverging"]))

    def print_summary(self, prob: float = 0.9, exclude_deterministic: bool = False) -> None:
        """NumPyro's summary (mean, sd, quantiles, n_eff, r_hat) of theta by parameter name and
        of the model's scalar deterministic sites (the maps are left out)."""
        from numpyro.diagnostics import print_summary

        grouped = self.get_samples(group_by_chain=True)
        if grouped["theta"].shape[1] < 4:  # NumPyro's split R-hat needs 4 draws per chain
            grouped = {k: v.reshape((1, -1) + v.shape[2:]) for k, v in grouped.items()}
        if grouped["theta"].shape[1] < 4:
            raise ValueError("print_summary needs at least 4 draws")
        names = self._run["prior"].param_names
        table = {name: grouped["theta"][..., i] for i, name in enumerate(names)}
        if not exclude_deterministic:
            for name in self._deterministic:
                if grouped[name].ndim == 2:
                    table[name] = grouped[name]
        print_summary(table, prob=prob, group_by_chain=True)

    def to_inference_data(self, *, truth=None):
        """InferenceData: posterior theta, kappa and the model's other deterministic sites;
        log_likelihood per element of each observed site (masked pixels: 0); sample_stats;
        observed_data shear; constant_data `truth`; attrs with the settings."""
        samples = self.get_samples()
        prior = self._run["prior"]
        chains = lambda a: split_into_chains(a, self.num_chains)
        attrs = {
            "num_diverged": self.num_diverged,
            "preset": prior.preset or "custom",
            "method": self.kernel.method,
            "guidance": self.kernel.guidance.name,
            "wall_time_s": float(self._run["wall_time"]),
            "num_draws": int(samples["theta"].shape[0]),
            "num_chains": int(self.num_chains),
            **self.kernel.settings(),
        }
        return to_inference_data(
            chains(samples["theta"]),
            chains(samples["kappa"]),
            param_names=prior.param_names,
            shear_obs=self._run["shear"],
            sample_stats={k: chains(v) for k, v in self.sample_stats().items()},
            log_likelihood={k: chains(v) for k, v in self._run["log_likelihood"].items()},
            deterministic={k: chains(v) for k, v in self._deterministic.items()},
            attrs=attrs,
            truth=truth,
        )


class _ChunkTask:
    """One chunk of draws of `kernel` from a chunk key's raw data, in a worker process
    (`runtime.executors`: the process pool or Dask); the kernel compiles once per worker."""

    def __init__(self, kernel, dynamic, static, size, typed):
        self.kernel, self.dynamic, self.static = kernel, dynamic, static
        self.size, self.typed = size, typed

    def __call__(self, key_data):
        key = keys_from_numpy(key_data[None], self.typed)[0]
        out = self.kernel._compiled(False)(key, self.dynamic, self.static, self.size)
        return jax.tree.map(np.asarray, out)


def _check_shear_model_inputs(model, model_kwargs):
    """The observation, mask and noise of `infer.models.shear_model`, checked once with messages
    that name them (`validation.check_observation`); custom models check their own inputs."""
    from numpyro_diffprior.infer.models import shear_model
    from numpyro_diffprior.validation import check_observation

    if model is not shear_model or model_kwargs.get("shear_obs") is None:
        return
    prior = model_kwargs.get("prior")
    check_observation(
        model_kwargs["shear_obs"],
        model_kwargs.get("mask"),
        model_kwargs.get("noise_std"),
        preset=getattr(prior, "preset", None),
    )
