"""The tree builder template: one level loop shared by every builder, each of which supplies only its expansion
step (which nodes of a level to expand, and how their children are drawn).

    pool = root
    for d in 0 .. depth-1:
        idx = frontier(d, pool)                  # the level-d nodes to expand (static count)
        q   = one drafter call over idx          # each node sees its own path only (trees.pool.draft_level)
        pool = expand(d, pool, idx, logits, q)   # writes level d+1
    tree = finish(pool, select(pool))            # the N+1 nodes the target scores

So a round costs one drafter call per level over that level's frontier: `drafter_tokens_per_round` tokens in all
(the re-scored `prev` included), never a re-scoring of earlier levels.
"""
from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig, warp_logits
from specjax.decode.state import DecodeContext
from trees.pool import Pool, draft_level
from trees.tree import LAW_DET, DraftTree, children_from_parent


@struct.dataclass
class BuiltTree:
    """tree: the N+1 nodes (root first); cache: the drafter's cache; source `[B, N+1]`: each tree node's pool
    index (its drafter cache slot is `position + source`)."""

    tree: DraftTree
    cache: Any
    source: jax.Array


def level_offsets(sizes: tuple[int, ...]) -> list[int]:
    """offsets[d] = pool index of the first level-d node (level 0 = the root at 0); offsets[-1] = P + 1."""
    off = [0, 1]
    for s in sizes:
        off.append(off[-1] + s)
    return off


def rank_probs(logits: jax.Array, q: jax.Array | None, sampling: SamplingConfig) -> jax.Array:
    """Scores for deterministic choices: the warped law q, or the plain softmax at temperature 0 (where the warped
    law is one-hot and could not rank alternatives; q may then be None). Deterministic children are verified as
    point masses, so this choice never affects losslessness."""
    return jax.nn.softmax(logits, axis=-1) if sampling.greedy else q


def tree_from_pool(pool: Pool, source: jax.Array, law: int, max_children: int) -> DraftTree:
    """The tree over pool nodes `source [B, N+1]` (ascending, source[:, 0] = 0, closed under ancestors), every
    node's children drawn under `law`."""
    take = lambda a: jnp.take_along_axis(a, source, axis=1)
    p1 = pool.size + 1
    inv = jax.vmap(lambda s: jnp.full((p1,), -1, jnp.int32).at[s].set(jnp.arange(s.shape[0], dtype=jnp.int32)))(source)
    pool_parent = take(pool.parent)
    parent = jnp.where(pool_parent < 0, -1, jnp.take_along_axis(inv, jnp.clip(pool_parent, 0, None), axis=1))
    valid = take(pool.valid)
    return DraftTree(token=take(pool.token), parent=parent, depth=take(pool.depth), valid=valid,
                     children=children_from_parent(parent, valid, max_children), law=jnp.full(source.shape, law),
                     probs=jnp.take_along_axis(pool.probs, source[..., None], axis=1))


class TreeBuilder(abc.ABC):
    """The builder protocol. Subclasses are frozen dataclasses (hashable, jit-static) that define `level_sizes`
    (pool sizes of levels 1..D), `num_nodes` (N, nodes the target scores), `max_children`, `expand`, and optionally
    `frontier`, `select`, `finish`, `check`; `laws` are the law codes of their non-leaf nodes."""

    laws: tuple[int, ...] = (LAW_DET,)
    prunes: bool = False            # whether `expand` may leave a whole level invalid (then the next is not drafted)

    @property
    @abc.abstractmethod
    def level_sizes(self) -> tuple[int, ...]:
        """Pool sizes of levels 1..D (static)."""

    @property
    @abc.abstractmethod
    def num_nodes(self) -> int:
        """N: the nodes the target scores (the root excluded)."""

    @property
    @abc.abstractmethod
    def max_children(self) -> int:
        """The most children one node may have."""

    @property
    def max_depth(self) -> int:
        return len(self.level_sizes)

    @property
    def pool_size(self) -> int:
        """P: candidates drafted per round (the root excluded)."""
        return sum(self.level_sizes)

    @property
    def offsets(self) -> list[int]:
        return level_offsets(self.level_sizes)

    def frontier_size(self, d: int) -> int:
        """How many level-d nodes one round expands (static)."""
        return 1 if d == 0 else self.level_sizes[d - 1]

    @property
    def drafter_tokens_per_round(self) -> int:
        """Tokens the drafter processes per round: `prev`, then each level's frontier once."""
        return 1 + sum(self.frontier_size(d) for d in range(self.max_depth))

    def check(self, vocab_size: int) -> None:
        """Raise ValueError if this shape cannot be drawn over a vocabulary of `vocab_size`."""

    def frontier(self, d: int, pool: Pool) -> jax.Array:
        """Pool indices `[B, L_d]` of the level-d nodes to expand; default: the whole level."""
        off = self.offsets
        return jnp.broadcast_to(jnp.arange(off[d], off[d + 1], dtype=jnp.int32), (pool.token.shape[0], off[d + 1] - off[d]))

    @abc.abstractmethod
    def expand(self, d: int, pool: Pool, idx: jax.Array, logits: jax.Array, q: jax.Array, key: jax.Array,
               sampling: SamplingConfig) -> Pool:
        """Write level d+1: the children of the frontier `idx [B, L]`, whose drafter logits and warped laws are
        `logits, q [B, L, V]`."""

    def select(self, pool: Pool) -> jax.Array:
        """Pool indices `[B, N+1]` of the nodes the target scores; default: the whole pool."""
        return jnp.broadcast_to(jnp.arange(pool.size + 1, dtype=jnp.int32), pool.token.shape)

    def finish(self, pool: Pool, source: jax.Array) -> DraftTree:
        return tree_from_pool(pool, source, self.laws[0], self.max_children)

    def level_keys(self, key: jax.Array) -> list:
        """The key `expand` gets at each level: one split of `key` per level (a coupled builder: `key` holds the
        race times `[B, D, V]` of the levels' output positions, and level d gets its slice `[B, V]`)."""
        return list(jax.random.split(key, self.max_depth))

    @property
    def draws_laws(self) -> bool:
        """Whether some node's children are sampled, so its draft law must be stored for the verifier."""
        return any(law != LAW_DET for law in self.laws)

    def build(self, drafter: Handle, cache: Any, ctx: DecodeContext, key: jax.Array, sampling: SamplingConfig,
              keep_laws: bool | None = None) -> BuiltTree:
        """Draft one tree per row (ctx: the round's `DecodeContext`). keep_laws: store every drafted node's law
        `[V]` in the tree (default: only when some children are sampled; point-mass rules never read it)."""
        keep_laws = self.draws_laws if keep_laws is None else keep_laws
        pool = Pool.init(ctx.pending, self.pool_size, drafter.config.vocab_size if keep_laws else 1,
                         drafter.config.d_model)
        keys = self.level_keys(key)

        def level(d, idx, pool, cache):
            out = draft_level(drafter, cache, ctx, pool, idx, first=d == 0)
            # deterministic children at temperature 0 are ranked by the raw softmax: the warped law is not needed
            q = warp_logits(out.logits, sampling) if keep_laws or not sampling.greedy else None
            pool = pool.drafted(idx, q, out.hidden)
            return self.expand(d, pool, idx, out.logits, q, keys[d], sampling), out.cache

        for d in range(self.max_depth):             # a Python loop over the static depth: one call per level
            idx = self.frontier(d, pool)
            if d > 0 and self.prunes:               # a level with no live node in its frontier is not drafted
                live = jnp.any(jnp.take_along_axis(pool.valid, idx, axis=1))
                pool, cache = jax.lax.cond(live, lambda p, c, d=d, idx=idx: level(d, idx, p, c),
                                           lambda p, c: (p, c), pool, cache)
            else:
                pool, cache = level(d, idx, pool, cache)
        source = self.select(pool)
        return BuiltTree(self.finish(pool, source), cache, source)
