"""Preallocated KV cache addressed by slot (see `specjax.model.block` for what a forward writes and sees).

Once committed, slot `s` of row `b` holds the key/value of the token at sequence position `s` of that row. A chain
is written where it will be committed, so it needs no copy; an accepted tree path is moved to its positions by
`gather_path`. A model with sliding-window layers also records each slot's position (a tree node's slot is not
its position), so a local layer can mask keys by distance exactly.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.model.config import ModelConfig

KV_AXES = ("batch", "slots", "kv_heads", "head_dim")    # logical axes of every key/value array
POSITION_AXES = ("batch", "slots")                       # ... and of the recorded positions


@struct.dataclass
class KVCache:
    """Per-layer key/value arrays, each `[B, S, n_kv_heads, head_dim]` (S = capacity in slots), and positions
    `[B, S]` int32 (the position of each slot's entry; None unless the model has sliding-window layers)."""

    keys: tuple[jax.Array, ...]
    values: tuple[jax.Array, ...]
    positions: jax.Array | None = None

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
               dtype=None) -> KVCache:
    """Zero cache for `num_layers` (default: all) layers: arrays `[batch_size, capacity, n_kv_heads, head_dim]` in
    `dtype` (default: the config's KV dtype), plus positions `[batch_size, capacity]` for sliding-window models."""
    layers = config.n_layers if num_layers is None else num_layers
    shape = (batch_size, capacity, config.n_kv_heads, config.dim_per_head)
    dtype = jnp.dtype(config.kv_dtype if dtype is None else dtype)
    positions = jnp.zeros((batch_size, capacity), jnp.int32) if config.sliding_layers else None
    return KVCache(keys=tuple(jnp.zeros(shape, dtype) for _ in range(layers)),
                   values=tuple(jnp.zeros(shape, dtype) for _ in range(layers)), positions=positions)


def write_slots(cache_array: jax.Array, new: jax.Array, slots: jax.Array) -> jax.Array:
    """Write `new[B, T, ...]` into `cache_array[B, S, ...]` at `slots[B, T]` (each row its own slots).

    A per-row scatter (vmapped): the batch is a scatter batch dimension, so with the batch split over devices each
    device writes its own rows (a global `[rows, slots]` index would make the partitioner all-gather the update)."""
    def one_row(row, update, where):
        return row.at[where].set(update.astype(row.dtype), mode="drop")
    return jax.vmap(one_row)(cache_array, new, slots)


def gather_path(cache: Any, start: jax.Array, path_slots: jax.Array, path_len: jax.Array) -> Any:
    """Commit an accepted tree path: move block entries `start_b + path_slots[b, j]` to slots `start_b + j`.

    cache: any pytree of slot-addressed arrays `[B, S, ...]` (a `KVCache`, a token history). path_slots: `[B, P]`
    int offsets into the block written at `start` (-1 past the path); path_len: `[B]` number of entries to keep.
    Entries `j >= path_len[b]` are left as they were (stale, invisible). For a chain path_slots = arange: a no-op.
    """
    p = path_slots.shape[1]
    src = start[:, None] + jnp.clip(path_slots, 0, None)                       # [B, P]
    dst = start[:, None] + jnp.arange(p)[None, :]
    keep = jnp.arange(p)[None, :] < path_len[:, None]

    def move(arr):
        def one_row(row, s, d, k):
            moved, current = row[s], row[d]                                   # [P, ...]
            k = k.reshape((-1,) + (1,) * (moved.ndim - 1))
            return row.at[d].set(jnp.where(k, moved, current), mode="drop")
        return jax.vmap(one_row)(arr, src, dst, keep)

    return jax.tree.map(move, cache)
