"""The model runner: a `LlamaLM` (the one decoder) as a runner, and the transformations of a model handle into
other runners, each a wrapper around the model runner (the model is transformed, not threaded with flags):
an early-exit self-draft (`early_exit`: the first L layers, the final norm and the head), a target that also
reports its early-exit hidden states (`with_exits`: DEL's shadow tokens), and a target emitting EAGLE-3's fused
low/mid/high features (`fused_features`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from specjax.model.cache import KVCache, init_cache
from specjax.model.config import ModelConfig
from specjax.model.decoder import LlamaLM
from specjax.runners.base import Forward, Handle, Runner, WrappingRunner
from specjax.validation import check_int


@dataclass(frozen=True)
class ModelRunner(Runner):
    """A full `LlamaLM`, merged from its graph definition inside jit. `layout` (a `specjax.model.layout.Layout`, set
    by `specjax.parallel.sharding.shard_handle`): the mesh layout its caches are constrained to; None on one
    device."""

    graphdef: Any
    config: ModelConfig
    layout: Any = None
    emits_features = True
    emits_exit_hidden = True

    @property
    def name(self) -> str:
        return "model"

    def init_cache(self, params, batch_size, capacity, num_layers: int | None = None) -> KVCache:
        """A cache for the first `num_layers` layers (default all: an early exit keeps fewer)."""
        cache = init_cache(self.config, batch_size, capacity, num_layers=num_layers)
        return cache if self.layout is None else self.layout.constrain_cache(cache)

    def forward(self, params, cache, block) -> Forward:
        return self.run(params, cache, block)

    def run(self, params, cache, block, *, num_layers: int | None = None, exits: tuple[int, ...] = ()) -> Forward:
        """The forward of the model cut after `num_layers` layers (default all), also returning the final-normed
        hidden states after each of `exits` (`Forward.exit_hidden`): what the wrappers below call."""
        model = nnx.merge(self.graphdef, params)
        hidden, cache, exit_hidden = model.trunk(block.tokens, block.positions, cache, slots=block.slots,
                                                 mask=block.cache_mask(cache.capacity), num_layers=num_layers,
                                                 exits=exits)
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
    runner = model_runner(handle.runner)
    if runner is None or not isinstance(handle.runner, (ModelRunner, FusedFeatureRunner)):
        raise ValueError(f"{handle.runner.name} is not a model handle")
    return nnx.merge(runner.graphdef, handle.params)


@dataclass(frozen=True)
class EarlyExitRunner(WrappingRunner):
    """The first `num_layers` layers of the model `inner`, its final norm and its head: a self-speculative drafter
    sharing the target's parameters. Its own cache holds only those layers; given the target's cache (DEL's
    LayerSkip-style drafting) it reads and writes the first `num_layers` layers of it."""

    num_layers: int = 1
    emits_exit_hidden = False

    @property
    def name(self) -> str:
        return f"early-exit:{self.num_layers}"

    def init_cache(self, params, batch_size, capacity):
        return self.inner.init_cache(params, batch_size, capacity, num_layers=self.num_layers)

    def forward(self, params, cache, block) -> Forward:
        return self.inner.run(params, cache, block, num_layers=self.num_layers)


def early_exit(target: Handle, num_layers: int) -> Handle:
    """Self-speculative drafter: the target's first `num_layers` layers, its final norm and its head (no training);
    it shares the target's parameters."""
    if type(target.runner) is not ModelRunner:
        raise ValueError("early exit needs the handle of a full model (model_handle(model))")
    check_int("num_layers", num_layers, low=1, high=target.config.n_layers)
    return Handle(EarlyExitRunner(target.runner, num_layers), target.params)


@dataclass(frozen=True)
class ExitProbeRunner(WrappingRunner):
    """The model `inner` whose forwards also return `Forward.exit_hidden` `[B, T, C, D]`: the final-normed hidden
    states after each of the C early exits `exits`, read off the same pass."""

    exits: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.inner.name}+exits{list(self.exits)}"

    def forward(self, params, cache, block) -> Forward:
        return self.inner.run(params, cache, block, exits=self.exits)

    def head(self, params, hidden: jax.Array) -> jax.Array:
        return self.inner.head(params, hidden)


def with_exits(target: Handle, exits: tuple[int, ...]) -> Handle:
    """`target` whose forwards also return `Forward.exit_hidden` at the early exits `exits` (increasing layer
    counts in [1, n_layers]): the target's verification pass then shows what each early-exit draft would have been,
    at no extra layer cost (DEL's shadow tokens)."""
    if type(target.runner) is not ModelRunner:
        raise ValueError(f"{target.runner.name} cannot report early-exit hidden states: it needs a full model")
    exits = tuple(exits)
    for e in exits:
        check_int("exit layer", e, low=1, high=target.config.n_layers)
    if not exits or list(exits) != sorted(set(exits)):
        raise ValueError(f"exit layers must be distinct and increasing, got {exits}")
    return Handle(ExitProbeRunner(target.runner, exits), target.params)


@dataclass(frozen=True)
class FusedFeatureRunner(WrappingRunner):
    """A full model whose hidden states (`Forward.hidden`, the features a drafter reads) are its final-normed states
    after each layer of `layers` and after the last one, concatenated `[B, T, (len(layers) + 1) * D]`: EAGLE-3's
    fused low/mid/high-layer features. Its head reads the last D (the final state), so logits are unchanged."""

    layers: tuple[int, ...] = ()
    emits_exit_hidden = False

    @property
    def name(self) -> str:
        return f"{self.inner.name}+features{list(self.layers)}"

    @property
    def feature_width(self) -> int:
        return (len(self.layers) + 1) * self.config.d_model

    def forward(self, params, cache, block) -> Forward:
        out = self.inner.run(params, cache, block, exits=self.layers)
        b, t, c, d = out.exit_hidden.shape
        return out.replace(hidden=jnp.concatenate([out.exit_hidden.reshape(b, t, c * d), out.hidden], -1),
                           exit_hidden=None)

    def head(self, params, hidden: jax.Array) -> jax.Array:
        """Logits `[..., V]` from fused features `[..., feature_width]` (their final-state part)."""
        return self.inner.head(params, hidden[..., -self.config.d_model:])


def fused_features(target: Handle, layers: tuple[int, ...]) -> Handle:
    """`target` emitting EAGLE-3's fused features: its final-normed hidden states after each layer of `layers`
    (distinct, increasing, in [1, n_layers - 1]; e.g. a low and a middle layer) and after the last, concatenated.
    The drafter that reads them is built from this handle (`specjax.runners.eagle.init_eagle(fused_features(target,
    ...))`) and decodes with it as the target."""
    if type(target.runner) is not ModelRunner:
        raise ValueError("fused features need the handle of a full model (model_handle(model)) without exits")
    layers = tuple(layers)
    for layer in layers:
        check_int("feature layer", layer, low=1, high=target.config.n_layers - 1)
    if not layers or list(layers) != sorted(set(layers)):
        raise ValueError(f"feature layers must be distinct and increasing, got {layers}")
    return Handle(FusedFeatureRunner(target.runner, layers), target.params)


def model_runner(runner: Runner) -> ModelRunner | None:
    """The `ModelRunner` of a model handle's runner: itself, or the model under its transformations (early exit,
    exit probes, fused features, which share its parameters); None for any other runner."""
    while isinstance(runner, (EarlyExitRunner, ExitProbeRunner, FusedFeatureRunner)):
        runner = runner.inner
    return runner if isinstance(runner, ModelRunner) else None
