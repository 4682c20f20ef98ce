"""The memory planner: bytes per device of a decode run, from shapes alone, before anything is placed or traced.

For a model config, batch, cache capacity, round size (M = K + 1 for chains of K drafts, N + 1 for trees of N
nodes: the tree's `[B, N+1, V]` draft-law arrays), dtype and mesh: weights and caches exactly (the shard shapes of
the layout the run uses, `specjax.model.layout.axis_rules`), and the dominant transient buffers as the larger of
- the prefill: the prompt's logits `[B, L, V]` float32 and one layer's attention scores and weights
  `[B, H, L, S]` float32;
- one round: the target's logits, the warped target law and the draft laws, each `[B, M, V]` float32 (counted
  whole on every device: warps and verifiers see the whole vocabulary), and one layer's scores `[B, H, M, S]`.
It is an estimate of what dominates, not XLA's buffer assignment (`experiments/bench_sharding.py` prints both).
`generate(..., memory_budget_bytes=...)` refuses a run whose total exceeds the budget, with these figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from specjax.model.cache import KV_AXES, POSITION_AXES
from specjax.model.config import ModelConfig
from specjax.model.layout import DATA_AXIS, MODEL_AXIS, axis_rules, axis_size, declared_axes

F32 = 4


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per device (the largest shard where a split is uneven)."""

    weights: int
    """Parameters of the target and the drafter (parameters they share counted once)."""
    caches: int
    """The target's and the drafter's caches."""
    prefill: int
    """Transient buffers of the prefill (prompt logits, one layer's attention scores)."""
    round: int
    """Transient buffers of one round (target logits, warped target law, draft laws, one layer's scores)."""

    @property
    def activations(self) -> int:
        return max(self.prefill, self.round)

    @property
    def total(self) -> int:
        return self.weights + self.caches + self.activations

    def describe(self) -> str:
        return (f"{_gib(self.total)} per device (weights {_gib(self.weights)}, caches {_gib(self.caches)}, "
                f"activations {_gib(self.activations)}: prefill {_gib(self.prefill)}, round {_gib(self.round)})")

    def __add__(self, other: "MemoryPlan") -> "MemoryPlan":
        return MemoryPlan(self.weights + other.weights, self.caches + other.caches,
                          max(self.prefill, other.prefill), max(self.round, other.round))


def _gib(n: int) -> str:
    size = f"{n / 2 ** 30:.2f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:.2f} MiB"
    return f"{size} ({n:,} bytes)"


def _sizes(mesh: Mesh | tuple[int, int] | None) -> tuple[int, int]:
    if mesh is None:
        return 1, 1
    if isinstance(mesh, Mesh):
        return axis_size(mesh, DATA_AXIS), axis_size(mesh, MODEL_AXIS)
    data, model = mesh
    return int(data), int(model)


def shard_bytes(shape: tuple[int, ...], dtype: Any, axes: tuple[str | None, ...], rules: dict[str, str | None],
                sizes: dict[str, int]) -> int:
    """Bytes of the largest shard of an array `shape` whose dimensions carry logical `axes` under `rules`."""
    dims = [math.ceil(d / sizes.get(rules.get(a) if a else None, 1)) for d, a in zip(shape, axes)]
    return int(np.prod(dims, dtype=np.int64)) * np.dtype(dtype).itemsize


def weight_bytes(config: ModelConfig, rules: dict[str, str | None], sizes: dict[str, int]) -> int:
    """Per-device bytes of a model's parameters (their declared dtypes and logical axes)."""
    from specjax.model.io.weights import abstract_model

    state = nnx.state(abstract_model(config), nnx.Param)
    return sum(shard_bytes(v.get_value().shape, v.get_value().dtype, declared_axes(v), rules, sizes)
               for _, v in nnx.to_flat_state(state))


def cache_bytes(config: ModelConfig, batch: int, capacity: int, rules: dict[str, str | None],
                sizes: dict[str, int], num_layers: int | None = None) -> int:
    """Per-device bytes of a KV cache (`specjax.model.cache.init_cache`)."""
    layers = config.n_layers if num_layers is None else num_layers
    kv = shard_bytes((batch, capacity, config.n_kv_heads, config.dim_per_head), config.kv_dtype, KV_AXES, rules,
                     sizes)
    positions = shard_bytes((batch, capacity), np.int32, POSITION_AXES, rules, sizes) if config.sliding_layers else 0
    return 2 * layers * kv + positions


def plan_memory(config: ModelConfig, *, batch: int, capacity: int, round_tokens: int, prompt_len: int,
                mesh: Mesh | tuple[int, int] | None = None, dtype: str | None = None,
                strict: bool = True) -> MemoryPlan:
    """The plan of one model decoding `batch` rows with `capacity` cache slots, prompts of `prompt_len` tokens and
    rounds that score `round_tokens` tokens (K + 1 or N + 1), on a mesh (a `Mesh` or `(data, model)` sizes),
    optionally in another `dtype` (weights and cache). ValueError when the mesh cannot split the model (`strict`)."""
    if dtype is not None:
        config = config.replace(dtype=dtype)
    data, model = _sizes(mesh)
    rules = axis_rules(config, model, strict=strict)
    sizes = {DATA_AXIS: data, MODEL_AXIS: model}
    rows = math.ceil(batch / data)
    heads = config.n_heads // (model if rules["heads"] else 1)
    vocab = math.ceil(config.vocab_size / (model if rules["vocab"] else 1))
    prefill = rows * prompt_len * vocab * F32 + 2 * rows * heads * prompt_len * capacity * F32
    round_ = 3 * rows * round_tokens * config.vocab_size * F32 + 2 * rows * heads * round_tokens * capacity * F32
    return MemoryPlan(weight_bytes(config, rules, sizes), cache_bytes(config, batch, capacity, rules, sizes),
                      prefill, round_)


def plan_generate(target: Any, drafter: Any, *, batch: int, capacity: int, round_tokens: int, prompt_len: int,
                  mesh: Mesh | None = None) -> MemoryPlan:
    """The plan of `generate` with these handles: the target split as on `mesh`; a model drafter by its own rule
    (its parameters not counted again when it shares the target's: early exit); any other drafter replicated,
    its cache split by batch."""
    from specjax.runners.model import EarlyExitRunner, model_runner

    plan = plan_memory(target.config, batch=batch, capacity=capacity, round_tokens=round_tokens,
                       prompt_len=prompt_len, mesh=mesh)
    if drafter is None:
        return plan
    data, model = _sizes(mesh)
    if model_runner(drafter.runner) is not None:
        config = drafter.config
        rules, sizes = axis_rules(config, model, strict=False), {DATA_AXIS: data, MODEL_AXIS: model}
        weights = 0 if drafter.params is target.params else weight_bytes(config, rules, sizes)
        layers = drafter.runner.num_layers if isinstance(drafter.runner, EarlyExitRunner) else None
        caches = cache_bytes(config, batch, capacity, rules, sizes, layers)
    else:
        weights = sum(int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(drafter.params))
        cache = jax.eval_shape(lambda: drafter.init_cache(batch, capacity))
        caches = sum(math.ceil(int(np.prod(x.shape)) / data) * np.dtype(x.dtype).itemsize
                     for x in jax.tree.leaves(cache))
    return plan + MemoryPlan(weights, caches, 0, 0)


def check_budget(plan: MemoryPlan, budget_bytes: int) -> None:
    """ValueError with the plan's figures when it exceeds `budget_bytes` per device."""
    if plan.total > budget_bytes:
        raise ValueError(f"this run needs about {plan.describe()}, over the budget of {_gib(budget_bytes)} per "
                         "device: use a smaller batch, cache or round, a lower-precision dtype, or a larger model "
                         "axis")
