"""A grammar-constrained runner: any runner whose logits are constrained by a token automaton, with the automaton
state of every cache slot kept beside its cache.

The state after a token depends on the tokens before it, exactly like its key and value, so it lives in the cache
and follows the same rules: a block writes the state of each of its tokens at the token's slot (the state of its
parent, the visible slot one position earlier, advanced by the token), stale speculative slots are never read, and
an accepted tree path is committed by the same move. So every method (chains, trees, every drafter) sees
constrained laws without knowing it: the drafter's q and the target's p are masked (or Doob-transformed) by the state
along each draft's own path before any verifier reads them, and the verifier's contract is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.constrain.automaton import DEAD, TokenAutomaton, advance, constrain_logits
from specjax.model.block import Block
from specjax.model.cache import gather_path
from specjax.runners.base import Forward, Handle, WrappingRunner


@struct.dataclass
class ConstrainedCache:
    """inner: the wrapped runner's cache; states `[B, S]` int32: the automaton state after the token at each slot
    (the state in which the next token is chosen); positions `[B, S]` int32: the position of the token at each slot
    (-1: never written); origin `[B]` int32: the position of each row's first generated token (tokens before it are
    the prompt, unconstrained; `begin` sets it after prefill)."""

    inner: Any
    states: jax.Array
    positions: jax.Array
    origin: jax.Array


@struct.dataclass
class ConstrainedParams:
    """A constrained runner's parameters: the wrapped runner's, and the automaton (arrays, so a new grammar of the
    same shape reuses the compiled loop)."""

    inner: Any
    automaton: TokenAutomaton


@dataclass(frozen=True)
class ConstrainedRunner(WrappingRunner):
    """`inner` with its logits constrained by the automaton in its parameters (`ConstrainedParams`). Hidden states
    pass through unchanged."""

    @property
    def emits_exit_hidden(self):
        # an early exit's logits would bypass the automaton: constrained targets offer none
        return False

    def inner_params(self, params):
        return params.inner

    def init_cache(self, params, batch_size, capacity):
        automaton = params.automaton
        return ConstrainedCache(self.inner.init_cache(params.inner, batch_size, capacity),
                                jnp.full((batch_size, capacity), automaton.initial, jnp.int32),
                                jnp.full((batch_size, capacity), -1, jnp.int32),
                                jnp.full((batch_size,), capacity, jnp.int32))

    def begin(self, cache, prompt_lengths):
        return cache.replace(inner=self.inner.begin(cache.inner, prompt_lengths),
                             origin=prompt_lengths.astype(jnp.int32))

    def commit(self, cache, position, path_slots, num_accepted):
        moved = gather_path((cache.states, cache.positions), position, path_slots, num_accepted + 1)
        return ConstrainedCache(self.inner.commit(cache.inner, position, path_slots, num_accepted), *moved,
                                cache.origin)

    def forward(self, params, cache, block: Block) -> Forward:
        automaton = params.automaton
        out = self.inner.forward(params.inner, cache.inner, block)
        states, positions = block_states(automaton, cache, block)
        generated = block.positions - cache.origin[:, None] + 1           # tokens generated up to each query
        remaining = jnp.maximum(automaton.log_h.shape[1] - 1, 0) - generated
        logits = constrain_logits(automaton, out.logits, jnp.take_along_axis(states, block.slots, axis=1),
                                  remaining)
        return out.replace(logits=logits, cache=ConstrainedCache(out.cache, states, positions, cache.origin))


def block_states(automaton: TokenAutomaton, cache: ConstrainedCache, block: Block) -> tuple[jax.Array, jax.Array]:
    """The cache's states and positions `[B, S]` with the block's tokens written: a prompt token (before `origin`)
    leaves the initial state; a generated token advances its parent's state, the parent being the slot the query
    sees one position earlier (in the committed prefix, or an ancestor in the speculative window). Parents inside
    the block resolve in at most T passes (a chain or tree is at most T deep)."""
    rows = jnp.arange(block.batch_size)[:, None]
    positions = cache.positions.at[rows, block.slots].set(block.positions)
    visible = block.cache_mask(cache.states.shape[1])                                     # [B, T, S]
    is_parent = visible & (positions[:, None, :] == block.positions[:, :, None] - 1)
    parent, has_parent = jnp.argmax(is_parent, axis=-1), jnp.any(is_parent, axis=-1)       # [B, T]
    prompt = block.positions < cache.origin[:, None]

    def resolve(_, states):
        stepped = advance(automaton, jnp.take_along_axis(states, parent, axis=1), block.tokens)
        new = jnp.where(prompt, automaton.initial, jnp.where(has_parent, stepped, DEAD))
        return states.at[rows, block.slots].set(new)

    return jax.lax.fori_loop(0, block.length, resolve, cache.states), positions


def constrain(handle: Handle, automaton: TokenAutomaton) -> Handle:
    """`handle` with its logits constrained by `automaton` (ValueError if the vocabularies differ)."""
    if automaton.vocab_size != handle.config.vocab_size:
        raise ValueError(f"the automaton covers {automaton.vocab_size} tokens, the model's vocabulary is "
                         f"{handle.config.vocab_size}")
    return Handle(ConstrainedRunner(handle.runner), ConstrainedParams(handle.params, automaton))
