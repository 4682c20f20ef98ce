"""Preallocated KV cache addressed by slot, plus the attention mask that lets one call score a chain or a tree.

Slot `s` of row `b` holds the key/value of the token at sequence position `s` of that row. A forward call writes its
`T` new tokens at slots `[start_b, start_b + T)`; everything at slots `< start_b` is the committed prefix. Slots past
the committed prefix may hold stale speculative entries: the mask never lets a query see them before they are
rewritten, so rejected candidates need no clean-up, and a chain needs no copy at all on commit.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from specjax.config import ModelConfig


@struct.dataclass
class KVCache:
    """Per-layer key/value arrays, each `[B, S, n_kv_heads, head_dim]` (S = capacity in slots)."""

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[1]

    @property
    def num_layers(self) -> int:
        return len(self.keys)


def init_cache(config: ModelConfig, batch_size: int, capacity: int, *, num_layers: int | None = None,
               dtype=jnp.float32) -> KVCache:
    """Zero cache for `num_layers` (default: all) layers: arrays `[batch_size, capacity, n_kv_heads, head_dim]`."""
    layers = config.n_layers if num_layers is None else num_layers
    shape = (batch_size, capacity, config.n_kv_heads, config.dim_per_head)
    return KVCache(keys=tuple(jnp.zeros(shape, dtype) for _ in range(layers)),
                   values=tuple(jnp.zeros(shape, dtype) for _ in range(layers)))


def write_slots(cache_array: jax.Array, new: jax.Array, start: jax.Array) -> jax.Array:
    """Write `new[B, T, ...]` into `cache_array[B, S, ...]` at slots `[start_b, start_b + T)` for each row."""
    def one_row(row, update, s):
        return jax.lax.dynamic_update_slice_in_dim(row, update, s, axis=0)
    return jax.vmap(one_row)(cache_array, new.astype(cache_array.dtype), start)


def slot_mask(start: jax.Array, local_mask: jax.Array, capacity: int) -> jax.Array:
    """Visibility of cache slots for the `T` new queries: `[B, T, S]` bool.

    A query sees every committed slot `< start_b`, and among the new block `[start_b, start_b + T)` exactly the
    entries `local_mask[b, t, :]` allows (causal for a chain, ancestors-or-self for a tree).
    start: `[B]` int; local_mask: `[B, T, T]` bool.
    """
    _, t, _ = local_mask.shape
    rel = jnp.arange(capacity)[None, None, :] - start[:, None, None]            # [B, 1, S]
    in_block = (rel >= 0) & (rel < t)
    idx = jnp.broadcast_to(jnp.clip(rel, 0, t - 1), (local_mask.shape[0], t, capacity))
    local = jnp.take_along_axis(local_mask, idx, axis=2)
    return (rel < 0) | (in_block & local)


def gather_path(cache: KVCache, start: jax.Array, path_slots: jax.Array, path_len: jax.Array) -> KVCache:
    """Commit an accepted tree path: move block entries `start_b + path_slots[b, j]` to slots `start_b + j`.

    path_slots: `[B, P]` int offsets into the block written at `start`; path_len: `[B]` number of entries to keep.
    Entries `j >= path_len[b]` are left as they were (stale, invisible). For a chain path_slots = arange: a no-op.
    """
    p = path_slots.shape[1]
    src = start[:, None] + path_slots                                          # [B, P]
    dst = start[:, None] + jnp.arange(p)[None, :]
    keep = jnp.arange(p)[None, :] < path_len[:, None]

    def move(arr):
        def one_row(row, s, d, k):
            moved = row[s]                                                     # [P, H, D]
            current = row[d]
            return row.at[d].set(jnp.where(k[:, None, None], moved, current))
        return jax.vmap(one_row)(arr, src, dst, keep)

    return KVCache(keys=tuple(move(k) for k in cache.keys), values=tuple(move(v) for v in cache.values))
