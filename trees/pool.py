"""The candidate pool of one tree round, and the drafter call that drafts one level of it.

The pool (static size P+1) holds the root (index 0, the pending token) and then the candidates level by level. A
builder drafts level d+1 from one drafter call over the *frontier* of level d (the nodes it expands), written once
at drafter cache slots `position + pool index` (the previous token `prev` is re-scored at `position - 1` with the
root). Each frontier node sees the committed prefix, `prev` and the slots of its own ancestors, so its draft law is
exactly `q(. | its path)` although its cousins sit in the same cache; nothing is ever re-scored. The pool is an
immutable pytree: its methods return updated copies.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from specjax.model.block import Block
from specjax.runners.base import Forward, Handle
from specjax.decode.state import DecodeContext


@struct.dataclass
class Pool:
    """token, parent (-1 at the root), depth `[B, P+1]` int32; valid `[B, P+1]` bool; value, score `[B, P+1]`
    float32 (a builder's own ranking state: EAGLE-2's cumulative confidence, RSD-S's log path probability and
    perturbed score); ancestors `[B, P+1, P+1]` bool (ancestor-or-self);
    probs `[B, P+1, V]` float32 (the law a drafted node's children are drawn from; `[B, P+1, 1]` when the round
    keeps no laws, see `DraftTree.probs`); feat `[B, P+1, D]` (the drafter's
    output at drafted nodes, the feature an EAGLE-style drafter reads for their children)."""

    token: jax.Array
    parent: jax.Array
    depth: jax.Array
    valid: jax.Array
    value: jax.Array
    score: jax.Array
    ancestors: jax.Array
    probs: jax.Array
    feat: jax.Array

    @classmethod
    def init(cls, pending: jax.Array, size: int, vocab_size: int, width: int) -> "Pool":
        """The pool of P = `size` candidates under the root `pending[B]` (vocab_size 1: keep no draft laws)."""
        b, p1 = pending.shape[0], size + 1
        return cls(token=jnp.zeros((b, p1), jnp.int32).at[:, 0].set(pending),
                   parent=jnp.full((b, p1), -1, jnp.int32), depth=jnp.zeros((b, p1), jnp.int32),
                   valid=jnp.zeros((b, p1), bool).at[:, 0].set(True),
                   value=jnp.zeros((b, p1), jnp.float32).at[:, 0].set(1.0), score=jnp.zeros((b, p1), jnp.float32),
                   ancestors=jnp.zeros((b, p1, p1), bool).at[:, 0, 0].set(True),
                   probs=jnp.zeros((b, p1, vocab_size), jnp.float32), feat=jnp.zeros((b, p1, width), jnp.float32))

    @property
    def size(self) -> int:
        return self.token.shape[1] - 1

    def put(self, lo: int, token: jax.Array, parent: jax.Array, valid: jax.Array,
            value: jax.Array | None = None, score: jax.Array | None = None) -> "Pool":
        """Write candidates `[B, L]` at pool indices `[lo, lo + L)` under `parent [B, L]` (pool indices)."""
        n = token.shape[1]
        rows = jnp.arange(token.shape[0])[:, None]
        parent = parent.astype(jnp.int32)
        anc = self.ancestors[rows, parent] | jax.nn.one_hot(lo + jnp.arange(n), self.size + 1, dtype=bool)[None]
        new = self.replace(
            token=self.token.at[:, lo:lo + n].set(jnp.where(valid, token, 0).astype(jnp.int32)),
            parent=self.parent.at[:, lo:lo + n].set(parent),
            depth=self.depth.at[:, lo:lo + n].set(self.depth[rows, parent] + 1),
            valid=self.valid.at[:, lo:lo + n].set(valid & self.valid[rows, parent]),
            ancestors=self.ancestors.at[:, lo:lo + n].set(anc))
        if value is not None:
            new = new.replace(value=new.value.at[:, lo:lo + n].set(value))
        if score is not None:
            new = new.replace(score=new.score.at[:, lo:lo + n].set(score))
        return new

    def drafted(self, idx: jax.Array, probs: jax.Array | None, feat: jax.Array) -> "Pool":
        """Record the drafter outputs `[B, L, D]` of the frontier nodes `idx [B, L]` and, when the pool stores
        laws (probs `[B, P+1, V]`, not `[B, P+1, 1]`), their draft laws `[B, L, V]`."""
        rows = jnp.arange(idx.shape[0])[:, None]
        new = self.replace(feat=self.feat.at[rows, idx].set(feat.astype(self.feat.dtype)))
        return new.replace(probs=self.probs.at[rows, idx].set(probs)) if self.probs.shape[-1] > 1 else new


def draft_level(drafter: Handle, cache, ctx: DecodeContext, pool: Pool, idx: jax.Array, first: bool) -> Forward:
    """One drafter call over the frontier nodes `idx [B, L]` (pool indices); with `first` (level 0, idx = [[0]])
    `prev` is re-scored at `position - 1` before the root. Returns the Forward of the frontier nodes only
    (logits `[B, L, V]`, hidden `[B, L, D]`) and the drafter's cache."""
    b, l = idx.shape
    p2 = pool.size + 2
    rows = jnp.arange(b)[:, None]
    tokens = pool.token[rows, idx]
    positions = ctx.position[:, None] + pool.depth[rows, idx]
    slots = ctx.position[:, None] + idx
    # window slot 0 = prev (an ancestor of every node), slot 1 + j = pool node j
    visible = jnp.concatenate([jnp.ones((b, l, 1), bool), pool.ancestors[rows, idx]], axis=2)
    features = None
    if drafter.runner.reads_features:     # EAGLE-style input: a drafted node reads its parent's drafter output,
        # the root the target's feature (fused to the drafter's own width first: one call mixes both)
        target_feat = drafter.runner.fuse_features(drafter.params, ctx.features)
        parent_feat = pool.feat[rows, jnp.clip(pool.parent[rows, idx], 0, None)]
        features = jnp.where((idx == 0)[..., None], target_feat[:, 1:2], parent_feat.astype(target_feat.dtype))
        if first:
            features = jnp.concatenate([target_feat[:, :1], features], axis=1)
    if first:
        tokens = jnp.concatenate([ctx.prev[:, None], tokens], axis=1)
        positions = jnp.concatenate([ctx.position[:, None] - 1, positions], axis=1)
        slots = jnp.concatenate([ctx.position[:, None] - 1, slots], axis=1)
        prev_row = jnp.zeros((b, 1, p2), bool).at[:, :, 0].set(True)
        visible = jnp.concatenate([prev_row, visible], axis=1)
    block = Block(tokens=tokens, positions=positions, slots=slots, window=ctx.position - 1, visible=visible,
                  features=features)
    out = drafter.forward(cache, block)
    if first:
        out = out.replace(logits=out.logits[:, 1:], hidden=out.hidden[:, 1:])
    return out
