"""The layout of a model on a `jax.sharding.Mesh` with axes `data` and `model`, derived from the logical axes every
parameter declares (`specjax.model.decoder.decoder.AXES`) and the cache's `KV_AXES`.
"""
from __future__ import annotations
from dataclasses import dataclass
from typing import Any, Sequence
import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from specjax.model.cache import KV_AXES, POSITION_AXES, KVCache
from specjax.model.config import ModelConfig
from specjax.model.decoder import AXES


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
