"""Runners: every model the decode loop drives (the target, a separate draft model, an early-exit self-draft, an
EAGLE-style head, prompt lookup, ...) behind one protocol that owns its cache.

A runner is a frozen (hashable) dataclass: the static half, a valid `jax.jit` static argument. Its parameters travel
separately as arrays; a `Handle` pairs the two and is itself a pytree whose only leaves are the parameters, so a
handle can be passed straight into a jitted function.

The protocol:
- `init_cache(params, batch_size, capacity)`: a cache with `capacity` slots per row.
- `forward(params, cache, block) -> Forward`: write the block's tokens at its slots and score every query under the
  block's visibility (`specjax.block.Block`).
- `commit(cache, position, path_slots, num_accepted)`: move an accepted tree path, written at slots
  `position + path_slots[b, j]`, to slots `position + j` (a chain is written in place: a no-op move).
- capabilities: `reads_features` (needs the target's hidden states as block features), `emits_features` (its hidden
  states can feed such a drafter, i.e. it can be the target of one), `emits_exit_hidden` (a full model: `with_exits`
  makes its forwards also return the hidden states at chosen early exits, and `head` turns them into logits, so
  one verification pass tells what every early-exit self-draft would have proposed), `feature_width` (the width
  of the features a target emits or a drafter reads at its first draft: `d_model`, or wider for fused low/mid/high
  features, `fused_features`) and `fuse_features(params, features)` (a drafter's map of the target's features to the
  width of its own outputs, which it reads deeper in a chain or tree).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx, struct

from specjax.block import Block
from specjax.cache import KVCache, gather_path, init_cache
from specjax.config import ModelConfig
from specjax.model import LlamaLM
from specjax.validation import check_int


@struct.dataclass
class Forward:
    """What a forward returns: logits `[B, T, V]` float32, hidden `[B, T, D]` (features a drafter may read), the
    runner's updated cache, and exit_hidden `[B, T, C, D]`: the final-normed hidden states after each of the C
    early exits a runner was asked for (`with_exits`), None otherwise."""

    logits: jax.Array
    hidden: jax.Array
    cache: Any
    exit_hidden: jax.Array | None = None


class Runner:
    """The runner protocol (see the module docstring). Subclasses are frozen dataclasses with a `config` whose
    `vocab_size` is the vocabulary of their logits and `d_model` the width of their hidden states."""

    config: ModelConfig
    reads_features: bool = False
    emits_features: bool = False
    emits_exit_hidden: bool = False

    @property
    def name(self) -> str:
        return type(self).__name__

    @property
    def feature_width(self) -> int:
        """Width of the features this target emits (`Forward.hidden`) or this drafter reads from the target."""
        return self.config.d_model

    def fuse_features(self, params: Any, features: jax.Array) -> jax.Array:
        """The target's features `[..., feature_width]` in the width of this drafter's own outputs `[..., d_model]`
        (a tree level mixes both in one call); identity unless the drafter reads fused features."""
        return features

    def init_cache(self, params: Any, batch_size: int, capacity: int) -> Any:
        raise NotImplementedError

    def forward(self, params: Any, cache: Any, block: Block) -> Forward:
        raise NotImplementedError

    def commit(self, cache: Any, position: jax.Array, path_slots: jax.Array, num_accepted: jax.Array) -> Any:
        """position `[B]`; path_slots `[B, P]` block offsets of the root and each accepted node (-1 past the path);
        num_accepted `[B]`: the root and the first `num_accepted` nodes are kept. Default: a slot-addressed cache
        pytree whose leaves are `[B, S, ...]`, moved with `gather_path`."""
        return gather_path(cache, position, path_slots, num_accepted + 1)


@dataclass(frozen=True)
class WrappingRunner(Runner):
    """A runner that is `inner` plus something (a trace-time probe, a head): everything delegates to `inner`, given
    `inner_params(params)`. Subclasses override what they add."""

    inner: Runner

    @property
    def config(self):
        return self.inner.config

    @property
    def reads_features(self):
        return self.inner.reads_features

    @property
    def emits_features(self):
        return self.inner.emits_features

    @property
    def feature_width(self):
        return self.inner.feature_width

    def fuse_features(self, params, features):
        return self.inner.fuse_features(self.inner_params(params), features)

    def inner_params(self, params: Any) -> Any:
        return params

    def init_cache(self, params, batch_size, capacity):
        return self.inner.init_cache(self.inner_params(params), batch_size, capacity)

    def forward(self, params, cache, block: Block) -> Forward:
        return self.inner.forward(self.inner_params(params), cache, block)

    def commit(self, cache, position, path_slots, num_accepted):
        return self.inner.commit(cache, position, path_slots, num_accepted)


@struct.dataclass
class Handle:
    """A runner (static) with its parameter pytree. `handle.forward(cache, block)` runs the runner."""

    runner: Runner = struct.field(pytree_node=False)
    params: Any

    @property
    def config(self) -> ModelConfig:
        return self.runner.config

    def init_cache(self, batch_size: int, capacity: int) -> Any:
        return self.runner.init_cache(self.params, batch_size, capacity)

    def forward(self, cache: Any, block: Block) -> Forward:
        return self.runner.forward(self.params, cache, block)


@dataclass(frozen=True)
class ModelRunner(Runner):
    """A `LlamaLM` merged from its graph definition inside jit; `num_layers` < n_layers makes it an early-exit
    self-drafter (the first L layers, then the final norm and the head). `layout` (a `specjax.sharding.Layout`,
    set by `specjax.sharding.shard_handle`): the mesh layout its caches are constrained to; None on one device.
    `exits` (set by `with_exits`): early exits whose hidden states each forward also returns."""

    graphdef: Any
    config: ModelConfig
    num_layers: int | None = None
    emits_features: bool = True
    layout: Any = None
    exits: tuple[int, ...] = ()

    @property
    def emits_exit_hidden(self) -> bool:
        return self.num_layers is None

    @property
    def name(self) -> str:
        return "model" if self.num_layers is None else f"early-exit:{self.num_layers}"

    def init_cache(self, params, batch_size, capacity) -> KVCache:
        cache = init_cache(self.config, batch_size, capacity, num_layers=self.num_layers)
        return cache if self.layout is None else self.layout.constrain_cache(cache)

    def forward(self, params, cache, block) -> Forward:
        model = nnx.merge(self.graphdef, params)
        hidden, cache, exit_hidden = model.trunk(block.tokens, block.positions, cache, slots=block.slots,
                                                 mask=block.cache_mask(cache.capacity), num_layers=self.num_layers,
                                                 exits=self.exits)
        if self.layout is not None:       # keep the loop carry's layout whatever the partitioner chose inside
            cache = self.layout.constrain_cache(cache)
        return Forward(model.head(hidden), hidden, cache, exit_hidden)

    def head(self, params, hidden: jax.Array) -> jax.Array:
        """The model's head: logits `[..., V]` float32 from final-normed hidden states `[..., D]`."""
        return nnx.merge(self.graphdef, params).head(hidden)


def model_handle(model: LlamaLM) -> Handle:
    """The handle of a full model (the target, or a separate small draft model)."""
    graphdef, params = nnx.split(model)
    return Handle(ModelRunner(graphdef, model.config), params)


def as_model(handle: Handle) -> LlamaLM:
    """The `LlamaLM` behind a model handle (e.g. to read its embedding), fused features or not."""
    runner = handle.runner.inner if isinstance(handle.runner, FusedFeatureRunner) else handle.runner
    if not isinstance(runner, ModelRunner):
        raise ValueError(f"{handle.runner.name} is not a model handle")
    return nnx.merge(runner.graphdef, handle.params)


def early_exit(target: Handle, num_layers: int) -> Handle:
    """Self-speculative drafter: the target's first `num_layers` layers, its final norm and its head (no training);
    it shares the target's parameters."""
    if not isinstance(target.runner, ModelRunner) or target.runner.num_layers is not None:
        raise ValueError("early exit needs the handle of a full model (model_handle(model))")
    check_int("num_layers", num_layers, low=1, high=target.config.n_layers)
    return Handle(replace(target.runner, num_layers=num_layers), target.params)


def with_exits(target: Handle, exits: tuple[int, ...]) -> Handle:
    """`target` whose forwards also return `Forward.exit_hidden` at the early exits `exits` (increasing layer
    counts in [1, n_layers]): the target's verification pass then shows what each early-exit draft would have been,
    at no extra layer cost (DEL's shadow tokens)."""
    if not target.runner.emits_exit_hidden:
        raise ValueError(f"{target.runner.name} cannot report early-exit hidden states: it needs a full model")
    exits = tuple(exits)
    for e in exits:
        check_int("exit layer", e, low=1, high=target.config.n_layers)
    if not exits or list(exits) != sorted(set(exits)):
        raise ValueError(f"exit layers must be distinct and increasing, got {exits}")
    return Handle(replace(target.runner, exits=exits), target.params)


@dataclass(frozen=True)
class FusedFeatureRunner(WrappingRunner):
    """A full model whose hidden states (`Forward.hidden`, the features a drafter reads) are its final-normed states
    after each layer of `layers` and after the last one, concatenated `[B, T, (len(layers) + 1) * D]`: EAGLE-3's
    fused low/mid/high-layer features. Its head reads the last D (the final state), so logits are unchanged."""

    layers: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.inner.name}+features{list(self.layers)}"

    @property
    def feature_width(self) -> int:
        return (len(self.layers) + 1) * self.config.d_model

    def forward(self, params, cache, block) -> Forward:
        out = replace(self.inner, exits=self.layers).forward(params, cache, block)
        b, t, c, d = out.exit_hidden.shape
        return out.replace(hidden=jnp.concatenate([out.exit_hidden.reshape(b, t, c * d), out.hidden], -1),
                           exit_hidden=None)

    def head(self, params, hidden: jax.Array) -> jax.Array:
        """Logits `[..., V]` from fused features `[..., feature_width]` (their final-state part)."""
        return self.inner.head(params, hidden[..., -self.config.d_model:])


def fused_features(target: Handle, layers: tuple[int, ...]) -> Handle:
    """`target` emitting EAGLE-3's fused features: its final-normed hidden states after each layer of `layers`
    (distinct, increasing, in [1, n_layers - 1]; e.g. a low and a middle layer) and after the last, concatenated.
    The drafter that reads them is built from this handle (`specjax.eagle.init_eagle(fused_features(target, ...))`)
    and decodes with it as the target."""
    if not isinstance(target.runner, ModelRunner) or not target.runner.emits_exit_hidden or target.runner.exits:
        raise ValueError("fused features need the handle of a full model (model_handle(model)) without exits")
    layers = tuple(layers)
    for layer in layers:
        check_int("feature layer", layer, low=1, high=target.config.n_layers - 1)
    if not layers or list(layers) != sorted(set(layers)):
        raise ValueError(f"feature layers must be distinct and increasing, got {layers}")
    return Handle(FusedFeatureRunner(target.runner, layers), target.params)
