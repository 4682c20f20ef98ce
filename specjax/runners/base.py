"""Runners: every model the decode loop drives (the target, a separate draft model, an early-exit self-draft, an
EAGLE-style head, prompt lookup, ...) behind one protocol that owns its cache.

A runner is a frozen (hashable) dataclass: the static half, a valid `jax.jit` static argument. Its parameters travel
separately as arrays; a `Handle` pairs the two and is itself a pytree whose only leaves are the parameters, so a
handle can be passed straight into a jitted function.

The protocol:
- `init_cache(params, batch_size, capacity)`: a cache with `capacity` slots per row.
- `forward(params, cache, block) -> Forward`: write the block's tokens at its slots and score every query under the
  block's visibility (`specjax.model.block.Block`).
- `commit(cache, position, path_slots, num_accepted)`: move an accepted tree path, written at slots
  `position + path_slots[b, j]`, to slots `position + j` (a chain is written in place: a no-op move).
- `begin(cache, prompt_lengths)`: after the prompts' prefill, where each row's output begins (identity by default).
- capabilities: `reads_features` (needs the target's hidden states as block features), `emits_features` (its hidden
  states can feed such a drafter, i.e. it can be the target of one), `emits_exit_hidden` (a full model: `with_exits`
  makes its forwards also return the hidden states at chosen early exits, and `head` turns them into logits, so
  one verification pass tells what every early-exit self-draft would have proposed), `feature_width` (the width
  of the features a target emits or a drafter reads at its first draft: `d_model`, or wider for fused low/mid/high
  features, `fused_features`) and `fuse_features(params, features)` (a drafter's map of the target's features to the
  width of its own outputs, which it reads deeper in a chain or tree).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.model.block import Block
from specjax.model.cache import gather_path
from specjax.model.config import ModelConfig


@struct.dataclass
class Forward:
    """What a forward returns: logits `[B, T, V]` float32, hidden `[B, T, D]` (features a drafter may read), the
    runner's updated cache, and exit_hidden `[B, T, C, D]`: the final-normed hidden states after each of the C
    early exits a runner was asked for (`with_exits`), None otherwise."""

    logits: jax.Array
    hidden: jax.Array
    cache: Any
    exit_hidden: jax.Array | None = None


def shifted_features(hidden: jax.Array) -> jax.Array:
    """The features a drafter reads along a text: `hidden [B, M, D]` (the target's hidden states at positions
    0..M-1) shifted one position right, zeros at position 0. An EAGLE-style drafter reads, with token t, the target's
    hidden state at t - 1: the one convention every prefill, training pass and τ estimate uses."""
    return jnp.concatenate([jnp.zeros_like(hidden[:, :1]), hidden[:, :-1]], axis=1)


class Runner(abc.ABC):
    """The runner protocol (see the module docstring). Subclasses are frozen dataclasses with a `config` whose
    `vocab_size` is the vocabulary of their logits and `d_model` the width of their hidden states; they must define
    `init_cache` and `forward`."""

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

    @abc.abstractmethod
    def init_cache(self, params: Any, batch_size: int, capacity: int) -> Any:
        """A cache with `capacity` slots per row for `batch_size` rows (a pytree of `[B, S, ...]` arrays)."""

    @abc.abstractmethod
    def forward(self, params: Any, cache: Any, block: Block) -> Forward:
        """Write the block's tokens at its slots and score every query under the block's visibility."""

    def commit(self, cache: Any, position: jax.Array, path_slots: jax.Array, num_accepted: jax.Array) -> Any:
        """position `[B]`; path_slots `[B, P]` block offsets of the root and each accepted node (-1 past the path);
        num_accepted `[B]`: the root and the first `num_accepted` nodes are kept. Default: a slot-addressed cache
        pytree whose leaves are `[B, S, ...]`, moved with `gather_path`."""
        return gather_path(cache, position, path_slots, num_accepted + 1)

    def begin(self, cache: Any, prompt_lengths: jax.Array) -> Any:
        """The cache once the prompts are in it, told where each row's output begins (`prompt_lengths [B]`, the
        position of the first generated token): the identity, unless the runner keeps per-row state over the output
        (a grammar automaton's, `specjax.constrain.runner`)."""
        return cache


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
    def emits_exit_hidden(self):
        return self.inner.emits_exit_hidden

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

    def begin(self, cache, prompt_lengths):
        return self.inner.begin(cache, prompt_lengths)


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

    def score(self, tokens: jax.Array, features: jax.Array | None = None, capacity: int | None = None) -> Forward:
        """One forward over texts `tokens [B, L]` at positions 0..L-1 in a fresh cache of `capacity` slots per row
        (default L): the one way to score a text (a prompt's prefill, a teacher-forced pass, an exact law).
        features `[B, L, D]`: what a drafter that reads features gets with each token (`shifted_features`)."""
        b, length = tokens.shape
        block = Block.chain(tokens, jnp.zeros((b,), jnp.int32), features)
        return self.forward(self.init_cache(b, length if capacity is None else capacity), block)
