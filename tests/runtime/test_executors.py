"""Calibration and the i.i.d. runner on Dask (`runtime.executors`) give the results of one
process for the same seeds; a LocalCluster of 2 worker processes stands in for a cluster."""

import os
import sys

import jax
import numpy as np
import pytest

from numpyro_diffprior import testing as oracles
from numpyro_diffprior.diagnostics.calibrate import run_calibration
from numpyro_diffprior.infer.langevin import AnnealedLangevinSampler
from numpyro_diffprior.infer.models import shear_model
from numpyro_diffprior.infer.runner import IIDSampler
from numpyro_diffprior.runtime.executors import (
    DaskExecutor,
    InProcessExecutor,
    ProcessPoolExecutor,
    check_scheduler,
    resolve_executor,
)
from numpyro_diffprior.simulator.shear import kaiser_squires

# The exact-posterior oracle of the calibration tests (picklable: the workers import it).
_DIAGNOSTICS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "diagnostics")
if _DIAGNOSTICS not in sys.path:
    sys.path.insert(0, _DIAGNOSTICS)
from test_calibrate import ExactSampler, FailingSampler, oracle_model  # noqa: E402

NOISE = 0.01


@pytest.fixture(scope="module")
def cluster():
    """2 worker processes, one thread (and one XLA thread) each, as `scheduler="local"`."""
    from distributed import LocalCluster

    from numpyro_diffprior.runtime.xla import worker_xla_flags

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # any free port: clusters can coexist
        env={"XLA_FLAGS": worker_xla_flags()},
    ) as local:
        yield local


@pytest.fixture
def client(cluster):
    from distributed import Client

    with Client(cluster) as c:
        yield c


def test_resolve_executor_backends_without_starting_anything():
    assert isinstance(resolve_executor(1), InProcessExecutor)
    assert resolve_executor(1).backend == "in-process"
    pool = resolve_executor(3, num_tasks=2)
    assert isinstance(pool, ProcessPoolExecutor) and pool.num_workers == 2
    assert resolve_executor(None, "local", num_tasks=0).backend == "in-process"  # nothing to run
    for ok in (None, "local", "tcp://10.0.0.1:8786", "scheduler-host:8786"):
        assert check_scheduler(ok) == ok
    for bad in ("nowhere", 8786, "host:port"):
        with pytest.raises(ValueError, match="scheduler"):
            check_scheduler(bad)
    with pytest.raises(ValueError, match="num_workers"):
        resolve_executor(0)
    with pytest.raises(ValueError, match="scheduler"):
        IIDSampler(AnnealedLangevinSampler(shear_model), 8, scheduler="somewhere")
    with pytest.raises(ValueError, match="shard"):
        IIDSampler(AnnealedLangevinSampler(shear_model), 8, shard=True, scheduler="local")


@pytest.mark.slow  # a Dask LocalCluster: 10-15 s each on 2 cores
@pytest.mark.processes
def test_calibration_on_dask_equals_one_process(cluster):
    """5 observations on the cluster (by its address): the draws, truths and scores of one
    process; a worker's exception reaches the caller."""
    kwargs = dict(model=oracle_model, progress=False, seed=1)
    one = run_calibration(jax.random.key(4), "tiny", ExactSampler(8), 5, **kwargs)
    address = cluster.scheduler_address
    dask = run_calibration(jax.random.key(4), "tiny", ExactSampler(8), 5, scheduler=address,
                           **kwargs)  # fmt: skip
    for field in ("theta_samples", "kappa_samples", "theta_true", "kappa_true"):
        np.testing.assert_array_equal(dask[field], one[field], err_msg=field)
    for block, res in one["summary"].items():
        assert dask["summary"][block]["mira"].score == res["mira"].score
        assert dask["summary"][block]["tarp"].atc == res["tarp"].atc
    with pytest.raises(RuntimeError, match="failed in the worker"):
        run_calibration(jax.random.key(4), "tiny", FailingSampler(), 3, scheduler=address,
                        **kwargs)  # fmt: skip


def _gaussian_case(seed=5):
    prior, _, _ = oracles.gaussian_oracle_prior((1, 8, 8), param_names=("Omega_c", "sigma_8"))
    kappa = prior.unpack(prior.sample(jax.random.PRNGKey(seed)))[1]
    noise = NOISE * jax.random.normal(jax.random.PRNGKey(seed + 1), (1, 2, 8, 8))
    return dict(prior=prior, shear_obs=kaiser_squires(kappa) + noise, noise_std=NOISE)


@pytest.mark.slow  # a Dask LocalCluster: 10-15 s each on 2 cores
@pytest.mark.processes
def test_runner_draws_on_dask_equal_the_serial_draws(client):
    """2 Dask workers compute the 2 chunks of 4 draws; one process computing the same chunks
    (chunk_size=4, the same chunk keys) is the reference, as for the process pool."""
    kwargs = _gaussian_case()
    sampler = AnnealedLangevinSampler(
        shear_model, sigma_max=1.0, num_levels=4, num_steps_per_level=2
    )
    make = lambda **options: IIDSampler(sampler, 8, progress_bar=False, **options)  # noqa: E731
    serial = make(chunk_size=4).run(jax.random.key(0), **kwargs).get_samples()
    dask = make(chunk_size=64, scheduler=client).run(jax.random.key(0), **kwargs).get_samples()
    for name in ("theta", "kappa"):
        np.testing.assert_allclose(dask[name], serial[name], rtol=1e-4, atol=1e-6 * 0.02)


def _square_plus(x, y):
    return x * x + y


@pytest.mark.slow  # a Dask LocalCluster: 10-15 s each on 2 cores
@pytest.mark.processes
def test_local_scheduler_starts_and_closes_its_cluster():
    """scheduler="local": a LocalCluster of num_workers processes for the run, results in
    input order, and nothing left running after `close`."""
    with resolve_executor(2, "local", num_tasks=6) as executor:
        assert isinstance(executor, DaskExecutor) and executor.num_workers == 2
        assert list(executor.imap(_square_plus, [(i, 1) for i in range(6)])) == [
            i * i + 1 for i in range(6)
        ]
        cluster = executor._cluster
    assert executor._cluster is None and cluster.status.name == "closed"
