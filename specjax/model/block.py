"""A *block*: what one forward call writes into a slot-addressed cache and what each of its queries may see.

Axes used throughout specjax (named once here): B batch rows, T new tokens of a call, S cache slots (capacity),
W slots of a visibility window, V vocabulary, D model width, K chain drafts, N tree nodes (root excluded),
P pool candidates of a tree round, k drafts of one node.

Slot `s` of a row holds the key/value (or token, for n-gram drafters) written for that row at slot `s`. A block
writes token `t` at `slots[b, t]`. Every slot below `window[b]` is the committed prefix and is visible to every
query; inside the window `[window_b, window_b + W)` a query sees exactly the slots `visible[b, t, :]` allows. So a
chain is a window over its own block with a causal pattern, a whole tree scored by the target is a window over its
nodes with an ancestor pattern, and one level of a tree drafted by a drafter is a window over the round's candidate
pool in which each new node sees the already written slots of its ancestors. Slots past the committed prefix may
hold stale speculative entries: they are never visible unless a block says so, so rejected candidates need no
clean-up.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


def causal_mask(batch_size: int, length: int) -> jax.Array:
    """`[B, T, T]` lower-triangular visibility."""
    return jnp.broadcast_to(jnp.tril(jnp.ones((length, length), bool)), (batch_size, length, length))


@struct.dataclass
class Block:
    """tokens, positions (rotary), slots (where each token is written): `[B, T]` int32; window `[B]` int32 (first
    slot of the speculative window; slots below it are visible to all); visible `[B, T, W]` bool (which window slots
    each query sees); features `[B, T, D]` or None: the target's hidden state at the position before each token,
    read by drafters that declare `reads_features` (EAGLE-style heads), ignored by the others."""

    tokens: jax.Array
    positions: jax.Array
    slots: jax.Array
    window: jax.Array
    visible: jax.Array
    features: jax.Array | None = None

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        return self.tokens.shape[1]

    @classmethod
    def chain(cls, tokens: jax.Array, start: jax.Array, features: jax.Array | None = None) -> "Block":
        """`T` consecutive tokens `[B, T]` at positions = slots `start[B] + t`, causal among themselves, on top of
        the committed prefix `[0, start_b)` (a prompt prefill is the chain at start 0)."""
        b, t = tokens.shape
        pos = start[:, None] + jnp.arange(t, dtype=jnp.int32)[None, :]
        return cls(tokens=tokens.astype(jnp.int32), positions=pos, slots=pos, window=start.astype(jnp.int32),
                   visible=causal_mask(b, t), features=features)

    def cache_mask(self, capacity: int) -> jax.Array:
        """Visibility of every cache slot for every query: `[B, T, S]` bool (S = capacity)."""
        w = self.visible.shape[2]
        rel = jnp.arange(capacity)[None, None, :] - self.window[:, None, None]          # [B, 1, S]
        in_window = (rel >= 0) & (rel < w)
        idx = jnp.broadcast_to(jnp.clip(rel, 0, w - 1), (self.batch_size, self.length, capacity))
        return (rel < 0) | (in_window & jnp.take_along_axis(self.visible, idx, axis=2))
