"""Drafters and the target behind one interface: a static (hashable) runner plus a params pytree.

A runner is a frozen dataclass, so it can be a static argument of `jax.jit`; its parameters travel separately as
arrays. `forward` is the only primitive: chain drafting (`specjax.draft`) and tree building (`trees`) are written on
top of it. `features[B, T, D]` are the target's final-normed hidden states at the position *before* each input
token; EAGLE-style heads read them, plain language models ignore them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from specjax.cache import KVCache, init_cache
from specjax.config import ModelConfig
from specjax.model import LlamaLM
from specjax.validation import check_int


class Drafter:
    """Interface. Subclasses are frozen dataclasses; `params` is whatever pytree `forward` needs."""

    config: ModelConfig          # vocabulary must match the target's
    uses_features: bool = False

    def init_cache(self, params: Any, batch_size: int, capacity: int) -> Any:
        raise NotImplementedError

    def forward(self, params: Any, cache: Any, tokens: jax.Array, positions: jax.Array, start: jax.Array,
                local_mask: jax.Array | None, features: jax.Array | None = None
                ) -> tuple[jax.Array, jax.Array, Any]:
        """tokens/positions `[B, T]`, start `[B]`, local_mask `[B, T, T]` -> logits `[B, T, V]`, features
        `[B, T, D]`, cache."""
        raise NotImplementedError


@dataclass(frozen=True)
class ModelRunner(Drafter):
    """A `LlamaLM` run through `nnx.merge` inside jit; `num_layers` < n_layers gives an early-exit self-drafter."""

    graphdef: Any
    config: ModelConfig
    num_layers: int | None = None

    def init_cache(self, params, batch_size, capacity) -> KVCache:
        return init_cache(self.config, batch_size, capacity, num_layers=self.num_layers)

    def forward(self, params, cache, tokens, positions, start, local_mask, features=None):
        model = nnx.merge(self.graphdef, params)
        return model(tokens, positions, cache, start, local_mask, num_layers=self.num_layers)


def model_runner(model: LlamaLM) -> tuple[ModelRunner, Any]:
    """Runner and params for a full model (the target, or a separate small draft model)."""
    graphdef, params = nnx.split(model)
    return ModelRunner(graphdef, model.config), params


def early_exit_drafter(target: LlamaLM, num_layers: int) -> tuple[ModelRunner, Any]:
    """Self-speculative drafter: the target's first `num_layers` layers, its final norm and its head (no training)."""
    check_int("num_layers", num_layers, low=1, high=target.config.n_layers)
    graphdef, params = nnx.split(target)
    return ModelRunner(graphdef, target.config, num_layers), params


def causal_mask(batch_size: int, length: int) -> jax.Array:
    """`[B, T, T]` lower-triangular visibility."""
    return jnp.broadcast_to(jnp.tril(jnp.ones((length, length), bool)), (batch_size, length, length))
