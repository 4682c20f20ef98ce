"""Data-parallel decoding over a `jax.sharding.Mesh`: the batch is split over one mesh axis, weights replicated.

The decode loop itself is unchanged: GSPMD propagates the input shardings through the jitted `while_loop`, and
jax's partitionable threefry makes the random draws independent of the device count, so a sharded run returns the
same tokens as a single-device run for the same key.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "data"


def batch_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D mesh named `data` over the first `num_devices` devices (default: all)."""
    devices = jax.devices()
    n = len(devices) if num_devices is None else num_devices
    if not 1 <= n <= len(devices):
        raise ValueError(f"num_devices must be in [1, {len(devices)}], got {n}")
    return jax.make_mesh((n,), (BATCH_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices[:n])


def shard_batch(x: Any, mesh: Mesh) -> jax.Array:
    """Place `x[B, ...]` with its leading axis split over the mesh's `data` axis (B divisible by its size)."""
    size = mesh.shape[BATCH_AXIS]
    if np.shape(x)[0] % size:
        raise ValueError(f"batch size {np.shape(x)[0]} is not divisible by the {size} devices of the mesh")
    spec = PartitionSpec(BATCH_AXIS, *([None] * (np.ndim(x) - 1)))
    return jax.device_put(x, NamedSharding(mesh, spec))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of `tree` fully replicated on the mesh (model weights)."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
