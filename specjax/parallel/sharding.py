"""Data- and model-parallel decoding over a `jax.sharding.Mesh` with axes `data` and `model`.

The batch is split over `data`. Over `model`, Megatron-style: q/k/v and the MLP's gate/up are column-parallel
(split by heads, by d_ff), o and down row-parallel; the embedding and an untied head are split over the vocabulary;
the KV cache is split by KV heads, replicated when there are fewer KV heads than devices on `model`. This is said
once, as rules from the logical axes every parameter declares (`specjax.model.decoder.AXES`) and the cache's `KV_AXES` to
mesh axes (`Layout`). Parameters are placed by those rules, caches are constrained where they are created and
after every forward (`specjax.runners.model.ModelRunner`), and XLA's GSPMD partitioner propagates the rest and inserts the
collectives (an all-reduce after each row-parallel matmul, the cross-shard reductions of the vocabulary softmax).

Nothing is computed over a vocabulary shard alone: every warp, sampler and verifier is written over the whole
vocabulary and the partitioner keeps it so, so a sharded run equals one device's up to float reassociation, and
jax's partitionable threefry draws the same random bits whatever the layout: the same tokens for the same key.
No `shard_map`: annotations alone give the Megatron collectives here (`experiments/bench_sharding.py` counts the
collectives in each mesh's compiled decode loop), and a hand-written map would fix one layout where the partitioner
can adapt.
"""
from __future__ import annotations
import dataclasses
import zlib
from typing import Any
import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from specjax.model.config import ModelConfig
from specjax.model.layout import DATA_AXIS, axis_size, declared_axes, make_mesh, model_layout, place_params


def batch_mesh(num_devices: int | None = None) -> Mesh:
    """A data-parallel mesh (`model` of size 1) over the first `num_devices` devices (default: all)."""
    n = len(jax.devices()) if num_devices is None else num_devices
    if not isinstance(n, int) or not 1 <= n <= len(jax.devices()):
        raise ValueError(f"num_devices must be in [1, {len(jax.devices())}], got {n}")
    return make_mesh(data=n)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of `tree` fully replicated on the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_handle(handle: Any, mesh: Mesh, *, strict: bool = True) -> Any:
    """A handle placed on `mesh`: a model (a `ModelRunner`, or one wrapped: early exit, exit probes, fused
    features) is split by its layout and its model runner carries the layout (so its caches are constrained);
    `strict=False` (drafters) replicates a model the mesh cannot split. Other runners (EAGLE heads, prompt lookup,
    ...) are replicated. ValueError before anything is placed."""
    from specjax.runners.base import Handle
    from specjax.runners.model import ModelRunner, model_runner

    def with_layout(runner, layout):
        if isinstance(runner, ModelRunner):
            return dataclasses.replace(runner, layout=layout)
        return dataclasses.replace(runner, inner=with_layout(runner.inner, layout))

    if model_runner(handle.runner) is not None:
        layout = model_layout(handle.config, mesh, strict=strict)
        return Handle(with_layout(handle.runner, layout), place_params(handle.params, layout))
    return Handle(handle.runner, replicate(handle.params, mesh))


def init_sharded(config: ModelConfig, mesh: Mesh, seed: int = 0) -> Any:
    """The handle of a random model (the `init_model` distribution: kernels and embeddings normal(init_std), norm
    scales one, biases zero) created parameter by parameter straight in its layout on `mesh`: each device draws only
    its own shards, so the model never exists whole on one host, and the transient float32 draws are one parameter's
    at a time (the draws are not `init_model`'s, which follow nnx's random streams)."""
    from specjax.model.io.weights import abstract_model, build_model
    from specjax.runners.model import model_handle

    layout = model_layout(config, mesh)
    declared = {"/".join(map(str, path)): var
                for path, var in nnx.to_flat_state(nnx.state(abstract_model(config), nnx.Param))}
    key = jax.random.key(seed)
    draws: dict = {}

    def read(path: str) -> jax.Array:
        var = declared[path]
        shape, dtype, sharding = var.get_value().shape, var.get_value().dtype, layout.sharding(declared_axes(var))
        if path.endswith(("scale", "bias")):
            return jax.device_put(np.full(shape, 1.0 if path.endswith("scale") else 0.0, dtype), sharding)
        if (shape, dtype, sharding) not in draws:
            draws[shape, dtype, sharding] = jax.jit(
                lambda k: (config.init_std * jax.random.normal(k, shape, np.float32)).astype(dtype),
                out_shardings=sharding)
        return draws[shape, dtype, sharding](jax.random.fold_in(key, zlib.crc32(path.encode())))

    return shard_handle(model_handle(build_model(config, read, source="random", mesh=mesh)), mesh)


def check_batch(batch_size: int, mesh: Mesh) -> None:
    size = axis_size(mesh, DATA_AXIS)
    if batch_size % size:
        raise ValueError(f"batch size {batch_size} is not divisible by the {size} devices of the mesh's data axis")


def shard_batch(x: Any, mesh: Mesh) -> jax.Array:
    """Place `x[B, ...]` with its leading axis split over the mesh's `data` axis (B divisible by its size)."""
    check_batch(np.shape(x)[0], mesh)
    spec = PartitionSpec(DATA_AXIS if DATA_AXIS in mesh.axis_names else None, *([None] * (np.ndim(x) - 1)))
    return jax.device_put(x, NamedSharding(mesh, spec))


def shard_decode(target: Any, drafter: Any, tokens: Any, lengths: Any, mesh: Mesh) -> tuple[Any, Any, Any, Any]:
    """Everything `generate` hands its jitted loop, placed on `mesh`: the target split by its layout (ValueError if
    the mesh cannot split it), the drafter by its own rule, the prompts `[B, L]` and lengths `[B]` by batch. Every
    check runs before anything is placed."""
    model_layout(target.config, mesh)
    check_batch(np.shape(tokens)[0], mesh)
    target = shard_handle(target, mesh)
    drafter = None if drafter is None else shard_handle(drafter, mesh, strict=False)
    return target, drafter, shard_batch(tokens, mesh), shard_batch(lengths, mesh)
