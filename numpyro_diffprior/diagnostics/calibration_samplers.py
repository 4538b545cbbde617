"""Samplers for `diagnostics.calibrate.run_calibration`: each factory returns
`sampler_fn(rng_key, observation) -> (theta_draws (M, P), kappa_draws (M, C, N, N))`.

- `diffusion_sampler_fn`: `DiffusionPosteriorSampler` ("diffusion"),
  `AnnealedLangevinSampler` ("langevin") or `infer.amortized.AmortizedPosteriorSampler`
  ("amortized", with an `amortized.AmortizedPrior`) on `infer.models.shear_model`;
  `pretrained_sampler_fn` loads that prior by preset name or checkpoint path.
- `nuts_sampler_fn`: `infer.nuts.nuts_baseline` on the explicit model (recompiles per
  observation).
- `LazySamplerFn`: a picklable sampler_fn that each worker process builds once.
"""

from __future__ import annotations

from numpyro_diffprior.prior import load_prior

__all__ = ["diffusion_sampler_fn", "pretrained_sampler_fn", "nuts_sampler_fn", "LazySamplerFn"]


class LazySamplerFn:
    """A picklable sampler_fn: ``build(**kwargs)`` makes the real one on the first call, once
    per process, so each worker of `run_calibration(num_workers=...)` builds (and compiles)
    its own. `build` must be a module-level function, e.g. `pretrained_sampler_fn`."""

    def __init__(self, build, **kwargs):
        self.build, self.kwargs, self._fn = build, kwargs, None

    def __getstate__(self):
        return {"build": self.build, "kwargs": self.kwargs, "_fn": None}

    def __call__(self, rng_key, obs):
        if self._fn is None:
            self._fn = self.build(**self.kwargs)
        return self._fn(rng_key, obs)


RUN_OPTIONS = ("chunk_size", "num_workers", "shard")


def diffusion_sampler_fn(
    prior, *, num_draws: int, method="diffusion", shipped_network=False, **sampler_kwargs
):
    """sampler_fn running `DiffusionPosteriorSampler` (method "diffusion") or
    `AnnealedLangevinSampler` ("langevin") on `infer.models.shear_model` with `prior`, in an
    `IIDSampler` run of `num_draws` draws.

    sampler_kwargs: the sampler's settings, and the run options `chunk_size`, `num_workers`,
    `shard`. shipped_network: start from `DiffusionPosteriorSampler.for_shipped_network` (the
    settings that compensate for the shipped network's errors) instead of the exact defaults.
    """
    from numpyro_diffprior.infer.models import shear_model
    from numpyro_diffprior.infer.runner import IIDSampler

    if method == "diffusion":
        from numpyro_diffprior.infer.posterior import DiffusionPosteriorSampler as Sampler

        make = Sampler.for_shipped_network if shipped_network else Sampler
    elif method == "langevin":
        from numpyro_diffprior.infer.langevin import AnnealedLangevinSampler as make
    elif method == "amortized":  # prior: an amortized.AmortizedPrior (conditional model)
        from numpyro_diffprior.infer.amortized import AmortizedPosteriorSampler as make
    else:
        raise ValueError(f"method must be 'diffusion', 'langevin' or 'amortized', got {method!r}")
    run_options = {k: sampler_kwargs.pop(k) for k in RUN_OPTIONS if k in sampler_kwargs}
    # The prior goes in as a model argument, as in the demo, not in a closure: its weights
    # stay traced inputs of the compiled sampler instead of constants baked into it.
    runner = IIDSampler(make(shear_model, **sampler_kwargs), num_draws, progress_bar=False,
                        **run_options)  # fmt: skip

    def sampler_fn(rng_key, obs):
        runner.run(
            rng_key,
            prior=prior,
            shear_obs=obs["shear"],
            mask=obs["mask"],
            noise_std=obs["noise_std"],
        )
        samples = runner.get_samples()
        return samples["theta"], samples["kappa"]

    return sampler_fn


def pretrained_sampler_fn(model: str, *, num_draws: int, method="diffusion", **sampler_kwargs):
    """`diffusion_sampler_fn` on the prior of `model` (a preset name or checkpoint path), with
    the shipped network's settings (`DiffusionPosteriorSampler.for_shipped_network`) unless
    `sampler_kwargs` replace them."""
    sampler_kwargs.setdefault("shipped_network", method == "diffusion")
    if method == "amortized":  # the conditional model of `model` (a clear error if none ships)
        from numpyro_diffprior.amortized.prior import load_amortized_prior as load
    else:
        load = load_prior
    return diffusion_sampler_fn(load(model), num_draws=num_draws, method=method, **sampler_kwargs)


def nuts_sampler_fn(
    preset, *, num_draws: int, num_warmup: int = 300, num_chains: int = 2, **nuts_kwargs
):
    """sampler_fn running `nuts_baseline`, thinned to `num_draws` draws over all chains."""
    from numpyro_diffprior.infer.nuts import nuts_baseline

    per_chain = -(-num_draws // num_chains)
    if "chain_method" not in nuts_kwargs:  # on a CPU: one process per core
        nuts_kwargs.setdefault("num_workers", "auto")

    def sampler_fn(rng_key, obs):
        idata = nuts_baseline(
            rng_key,
            preset=preset,
            shear_obs=obs["shear"],
            mask=obs["mask"],
            noise_std=obs["noise_std"],
            num_warmup=num_warmup,
            num_samples=per_chain,
            num_chains=num_chains,
            progress_bar=False,
            **nuts_kwargs,
        )
        theta = idata.posterior["theta"].values.reshape((-1, len(idata.posterior["param"])))
        kappa = idata.posterior["kappa"].values
        return theta[:num_draws], kappa.reshape((-1,) + kappa.shape[2:])[:num_draws]

    return sampler_fn
