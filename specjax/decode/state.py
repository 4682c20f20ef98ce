"""The decode loop's named state (pytrees; axes as in `specjax.model.block`: B rows, M tokens a round may emit, D width)."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class DecodeContext:
    """Per-row decode position. pending `[B]`: the newest emitted token, in no cache yet, at `position [B]`;
    prev `[B]`: the token before it; features `[B, 2, D]`: the target's hidden states at `position - 2` and
    `position - 1` (the features an EAGLE-style drafter reads for `prev` and `pending`)."""

    prev: jax.Array
    pending: jax.Array
    position: jax.Array
    features: jax.Array


@struct.dataclass
class Caches:
    """The target's cache and the drafter's (None without a drafter)."""

    target: Any
    drafter: Any = None


@struct.dataclass
class RoundOutput:
    """What one round produced. tokens `[B, M]`: the accepted drafts, then the correction or bonus token, PAD
    after; num_accepted `[B]`; num_drafted `[B]` (drafted tokens offered to the target); path_hidden `[B, M, D]`:
    the target's hidden states at `[pending, accepted...]` (positions `position + i`); caches with the accepted path
    committed; memory: the speculator's per-row state for the next round (`Speculator.init_memory`)."""

    caches: Caches
    tokens: jax.Array
    num_accepted: jax.Array
    num_drafted: jax.Array
    path_hidden: jax.Array
    memory: Any = None

    def advance(self, ctx: DecodeContext) -> DecodeContext:
        """The context after this round: the correction/bonus token is pending at `position + n + 1`."""
        rows = jnp.arange(ctx.pending.shape[0])
        n = self.num_accepted
        tokens = jnp.concatenate([ctx.pending[:, None], self.tokens], axis=1)
        hidden = jnp.concatenate([ctx.features[:, 1:2], self.path_hidden], axis=1)
        return DecodeContext(prev=tokens[rows, n], pending=tokens[rows, n + 1], position=ctx.position + n + 1,
                             features=jnp.stack([hidden[rows, n], hidden[rows, n + 1]], axis=1))


@struct.dataclass
class LoopState:
    """The `lax.while_loop` carry. round: scalar int32 (rounds run); caches; ctx; done `[B]` bool; tokens
    `[B, L_out]` int32 (emitted tokens at each row's write head, PAD after; L_out = the max_new_tokens bucket +
    M); num_generated `[B]`; accepted `[B, R]` int32 per-round accepted drafts (-1 where the row ran no round);
    drafted `[B, R]` int32 per-round drafted tokens (R = the max_new_tokens bucket: room for the at most bucket - 1
    rounds, and one column for `generate` to keep when max_new_tokens is 1); memory: the speculator's per-row
    state."""

    round: jax.Array
    caches: Caches
    ctx: DecodeContext
    done: jax.Array
    tokens: jax.Array
    num_generated: jax.Array
    accepted: jax.Array
    drafted: jax.Array
    memory: Any = None


def select_rows(active: jax.Array, new: Any, old: Any) -> Any:
    """Per-row choice between two pytrees whose leaves are `[B, ...]`: `new` where `active [B]`, else `old`."""
    return jax.tree.map(lambda a, b: jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)
