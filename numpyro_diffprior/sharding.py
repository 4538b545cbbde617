"""Data-parallel placement over `jax.devices()` with `jax.sharding` (docs/design.md §4).

A 1-D mesh with axis 'data': batches are split along their leading axis, parameters and
optimizer state are replicated. On one device every placement is a no-op, so the same code
runs unchanged on a laptop, a GPU, or `XLA_FLAGS=--xla_force_host_platform_device_count=N`.
On several processes (`jax.distributed.initialize`; docs/training.md "Training on several
hosts") the mesh spans every process's devices: each process passes the same global value
(batch or parameters) and keeps the shards of its own devices (`_put`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["make_mesh", "batch_sharding", "replicated_sharding", "shard_batch", "replicate"]


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named 'data' over `devices` (default: all of `jax.devices()`)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec("data"))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch, mesh: Mesh):
    """Place every array of `batch` split along axis 0 over the mesh."""
    n = mesh.devices.size
    for leaf in jax.tree_util.tree_leaves(batch):
        if leaf.shape[0] % n:
            raise ValueError(f"batch size {leaf.shape[0]} is not divisible by {n} devices")
    return _put(batch, batch_sharding(mesh))


def replicate(tree, mesh: Mesh):
    return _put(tree, replicated_sharding(mesh))


def _put(tree, sharding: NamedSharding):
    """`jax.device_put`, or, when the mesh has other processes' devices (which device_put
    cannot address), each process's shards of the same global value."""
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)
    put = lambda x: jax.make_array_from_callback(np.shape(x), sharding, lambda idx: x[idx])
    return jax.tree_util.tree_map(put, tree)
