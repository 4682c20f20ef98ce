"""Data- and model-parallel decoding over a `jax.sharding.Mesh` with axes `data` and `model`.

The batch is split over `data`. Over `model`, Megatron-style: q/k/v and the MLP's gate/up are column-parallel
(split by heads, by d_ff), o and down row-parallel; the embedding and an untied head are split over the vocabulary;
the KV cache is split by KV heads, replicated when there are fewer KV heads than devices on `model`. This is said
once, as rules from the logical axes every parameter declares (`specjax.model.AXES`) and the cache's `KV_AXES` to
mesh axes (`Layout`). Parameters are placed by those rules, caches are constrained where they are created and
after every forward (`specjax.runners.ModelRunner`), and XLA's GSPMD partitioner propagates the rest and inserts the
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
from dataclasses import dataclass
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from specjax.cache import KV_AXES, POSITION_AXES, KVCache
from specjax.config import ModelConfig
from specjax.model import AXES

DATA_AXIS = "data"
MODEL_AXIS = "model"
BATCH_AXIS = DATA_AXIS          # the name older callers use


def make_mesh(data: int = 1, model: int = 1, *, devices: Sequence[Any] | None = None) -> Mesh:
    """A `(data, model)` mesh over the first `data * model` devices (default: `jax.devices()`), with Auto axis
    types (the partitioner propagates shardings; jax 0.10's `jax.make_mesh` would default to Explicit)."""
    devices = list(jax.devices() if devices is None else devices)
    for name, size in (("data", data), ("model", model)):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"mesh axis {name} must be a positive integer, got {size!r}")
    if data * model > len(devices):
        raise ValueError(f"a (data={data}, model={model}) mesh needs {data * model} devices, {len(devices)} available")
    auto = jax.sharding.AxisType.Auto
    return jax.make_mesh((data, model), (DATA_AXIS, MODEL_AXIS), axis_types=(auto, auto),
                         devices=devices[:data * model])


def batch_mesh(num_devices: int | None = None) -> Mesh:
    """A data-parallel mesh (`model` of size 1) over the first `num_devices` devices (default: all)."""
    n = len(jax.devices()) if num_devices is None else num_devices
    if not isinstance(n, int) or not 1 <= n <= len(jax.devices()):
        raise ValueError(f"num_devices must be in [1, {len(jax.devices())}], got {n}")
    return make_mesh(data=n)


def axis_size(mesh: Mesh, name: str) -> int:
    """Devices along mesh axis `name` (1 when the mesh has no such axis)."""
    return int(mesh.shape.get(name, 1))


def axis_rules(config: ModelConfig, model_size: int, *, strict: bool = True) -> dict[str, str | None]:
    """Logical axis -> mesh axis for a model of `config` on a `model` axis of `model_size` devices.

    heads and mlp are split (ValueError when `model_size` does not divide n_heads or d_ff); kv_heads are split
    when `model_size` divides them and replicated when they divide `model_size` (ValueError otherwise); vocab is
    split when `model_size` divides it, else replicated. `strict=False` (a drafter's own rule): a model that cannot
    be split is replicated whole instead of raising.
    """
    m = model_size
    problems = [f"n_heads ({config.n_heads})"] if config.n_heads % m else []
    problems += [f"d_ff ({config.d_ff})"] if config.d_ff % m else []
    if config.n_kv_heads % m and m % config.n_kv_heads:
        problems.append(f"n_kv_heads ({config.n_kv_heads}), nor do they divide it")
    if problems and strict:
        raise ValueError(f"the mesh's model axis ({m} devices) does not divide {' or '.join(problems)}: choose a "
                         "model axis size that divides the head counts and d_ff")
    split = None if problems else MODEL_AXIS
    return {"batch": DATA_AXIS, "heads": split, "mlp": split,
            "kv_heads": split if config.n_kv_heads % m == 0 else None,
            "vocab": split if config.vocab_size % m == 0 else None}


@dataclass(frozen=True)
class Layout:
    """The static sharding plan of one runner: its mesh and where each logical axis lives (a mesh axis, or None
    for replicated). Hashable, so it can sit in a runner, the static key of the jitted loop."""

    mesh: Mesh
    rules: tuple[tuple[str, str | None], ...]

    def spec(self, axes: Sequence[str | None]) -> PartitionSpec:
        rules = dict(self.rules)
        names = [rules.get(a) if a is not None else None for a in axes]
        return PartitionSpec(*(n if n in self.mesh.axis_names else None for n in names))

    def sharding(self, axes: Sequence[str | None]) -> NamedSharding:
        return NamedSharding(self.mesh, self.spec(axes))

    def constrain(self, x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
        return jax.lax.with_sharding_constraint(x, self.sharding(axes))

    def constrain_cache(self, cache: KVCache) -> KVCache:
        """Keys/values `[B, S, Hkv, Dh]` by batch and KV heads, positions `[B, S]` by batch."""
        kv = self.sharding(KV_AXES)
        return cache.replace(
            keys=tuple(jax.lax.with_sharding_constraint(k, kv) for k in cache.keys),
            values=tuple(jax.lax.with_sharding_constraint(v, kv) for v in cache.values),
            positions=None if cache.positions is None else self.constrain(cache.positions, POSITION_AXES))


def model_layout(config: ModelConfig, mesh: Mesh, *, strict: bool = True) -> Layout:
    """The layout of a model of `config` on `mesh` (`axis_rules`; ValueError before anything is placed)."""
    rules = axis_rules(config, axis_size(mesh, MODEL_AXIS), strict=strict)
    return Layout(mesh, tuple(sorted(rules.items())))


def declared_axes(variable: nnx.Variable) -> tuple[str | None, ...]:
    """The logical axes a parameter declares (all None when it declares none: replicated)."""
    axes = variable.get_metadata().get(AXES)
    return tuple(axes) if axes is not None else (None,) * np.ndim(variable.get_value())


def place(host: Any, sharding: NamedSharding | None, dtype: Any) -> jax.Array:
    """One parameter on its devices in `dtype`, reading from `host` (numpy array, read-only memory map, jax array)
    only each device's own shard: a checkpoint tensor is never materialised whole when its target is split."""
    dtype = np.dtype(dtype)
    if isinstance(host, jax.Array):
        host = host.astype(dtype)
        return host if sharding is None else jax.device_put(host, sharding)
    if sharding is None:
        return jax.numpy.asarray(np.asarray(host, dtype))
    return jax.make_array_from_callback(tuple(np.shape(host)), sharding, lambda index: np.asarray(host[index], dtype))


def place_params(params: Any, layout: Layout) -> Any:
    """An nnx parameter state with every parameter placed by its declared logical axes."""
    def put(v):
        if not isinstance(v, nnx.Variable):
            return jax.device_put(v, layout.sharding((None,) * np.ndim(v)))
        return v.replace(jax.device_put(v.get_value(), layout.sharding(declared_axes(v))))
    return jax.tree.map(put, params, is_leaf=lambda x: isinstance(x, nnx.Variable))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every array of `tree` fully replicated on the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_handle(handle: Any, mesh: Mesh, *, strict: bool = True) -> Any:
    """A handle placed on `mesh`: a model (`ModelRunner`) is split by its layout and its runner carries the layout
    (so its caches are constrained); `strict=False` (drafters) replicates a model the mesh cannot split. Other
    runners (EAGLE heads, prompt lookup, ...) are replicated. ValueError before anything is placed."""
    from specjax.runners import Handle, ModelRunner

    if isinstance(handle.runner, ModelRunner):
        layout = model_layout(handle.config, mesh, strict=strict)
        return Handle(dataclasses.replace(handle.runner, layout=layout), place_params(handle.params, layout))
    return Handle(handle.runner, replicate(handle.params, mesh))


def init_sharded(config: ModelConfig, mesh: Mesh, seed: int = 0) -> Any:
    """The handle of a random model (the `init_model` distribution: kernels and embeddings normal(init_std), norm
    scales one, biases zero) created parameter by parameter straight in its layout on `mesh`: each device draws only
    its own shards, so the model never exists whole on one host, and the transient float32 draws are one parameter's
    at a time (the draws are not `init_model`'s, which follow nnx's random streams)."""
    from specjax.io.weights import abstract_model, build_model
    from specjax.runners import model_handle

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
