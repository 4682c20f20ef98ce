"""Tree builders: a drafter grows a draft tree level by level, recording how every node's children were drawn.

All builders share one drafting scheme. Candidates live in a *pool* (static size P): index 0 is the root (the
pending token), then the candidates level by level. Pass `d` (a Python loop over the static depth only) runs the
drafter on `[prev, pool nodes of levels 0..d]` written at cache slots `position - 1 ...` (pool node j at slot
`position + j`), with the ancestor mask and depth positions, and reads the draft laws at level d to draw level d+1.
Re-running the earlier levels costs extra drafter tokens, but the model's forward exposes every slot below `start`
to every query, so a level written on its own would see its non-ancestor cousins; re-scoring the prefix under an
ancestor mask keeps each node's draft law exactly `q(. | its path)`.

Builders: `StaticTree` (Medusa / EAGLE-1 rank paths, deterministic children), `Eagle2Tree` (EAGLE-2 dynamic:
expand the top-K by cumulative confidence, rerank, keep N; deterministic), `RSDCTree` (RSD-C: Gumbel-top-k without
replacement per node), `RSDSTree` (RSD-S: stochastic beam search; see its docstring for the draft law), `SpecInferTree`
(k i.i.d. chains merged into a trie). Every `build` returns `(tree, draft_cache, source[B, N+1])` where `source`
maps tree nodes to pool indices (for committing the drafter's cache).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from specjax.drafters import Drafter
from specjax.sampling import SamplingConfig, sample_token, warp_logits
from specjax.validation import check_int
from trees.tree import LAW_DET, LAW_IID, LAW_WOR, DraftTree, ancestor_mask, children_from_parent


class _Pool:
    """Mutable (Python-side, trace-time) holder of the pool arrays `[B, P+1, ...]` while levels are drawn."""

    def __init__(self, pending: jax.Array, size: int, vocab: int):
        b = pending.shape[0]
        self.token = jnp.zeros((b, size + 1), jnp.int32).at[:, 0].set(pending)
        self.parent = jnp.full((b, size + 1), -1, jnp.int32)
        self.depth = jnp.zeros((b, size + 1), jnp.int32)
        self.valid = jnp.zeros((b, size + 1), bool).at[:, 0].set(True)
        self.probs = jnp.zeros((b, size + 1, vocab), jnp.float32)
        self.feat = None

    def put(self, lo: int, token, parent, depth: int, valid) -> None:
        n = token.shape[1]
        self.token = self.token.at[:, lo:lo + n].set(jnp.where(valid, token, 0).astype(jnp.int32))
        self.parent = self.parent.at[:, lo:lo + n].set(parent.astype(jnp.int32))
        self.depth = self.depth.at[:, lo:lo + n].set(depth)
        self.valid = self.valid.at[:, lo:lo + n].set(valid)


def _draft_pass(drafter: Drafter, params: Any, cache: Any, ctx: Any, pool: _Pool, upto: int, max_depth: int):
    """Drafter over `[prev, pool[0..upto]]` at slots from `position - 1`; returns logits `[B, upto+1, V]`, cache."""
    b = pool.token.shape[0]
    t = upto + 2
    tokens = jnp.concatenate([ctx.prev[:, None], pool.token[:, :upto + 1]], axis=1)
    positions = jnp.concatenate([ctx.position[:, None] - 1, ctx.position[:, None] + pool.depth[:, :upto + 1]], 1)
    anc = ancestor_mask(pool.parent[:, :upto + 1], max_depth)
    mask = jnp.zeros((b, t, t), bool).at[:, :, 0].set(True).at[:, 1:, 1:].set(anc)
    features = None
    if drafter.uses_features:
        # EAGLE-style input: the feature *before* each token; a drafted node takes its parent's output feature
        node_feats = jnp.zeros((b, 0, ctx.features.shape[-1]), ctx.features.dtype)
        if upto > 0:
            par = jnp.clip(pool.parent[:, 1:upto + 1], 0, None)
            node_feats = jnp.take_along_axis(pool.feat, par[..., None], axis=1)
        features = jnp.concatenate([ctx.features, node_feats], axis=1)
    logits, feats, cache = drafter.forward(params, cache, tokens, positions, ctx.position - 1, mask, features)
    if drafter.uses_features:
        if pool.feat is None:
            pool.feat = jnp.zeros((b, pool.token.shape[1], feats.shape[-1]), feats.dtype)
        pool.feat = pool.feat.at[:, :upto + 1].set(feats[:, 1:])
    return logits[:, 1:], cache


def _rank_probs(logits: jax.Array, q: jax.Array, sampling: SamplingConfig) -> jax.Array:
    """Scores for deterministic choices: the warped law, or the plain softmax at temperature 0 (where the warped law
    is one-hot and could not rank alternatives). Deterministic children are verified with point masses, so this
    choice never affects losslessness."""
    return jax.nn.softmax(logits, axis=-1) if sampling.greedy else q


def _finish(pool: _Pool, source: jax.Array, law: jax.Array, max_children: int, max_depth: int) -> DraftTree:
    """Tree over pool nodes `source[B, N+1]` (ascending, source[:, 0] = 0, ancestor-closed)."""
    take = lambda a: jnp.take_along_axis(a, source, axis=1)
    p1 = pool.token.shape[1]
    inv = jax.vmap(lambda s: jnp.full((p1,), -1, jnp.int32).at[s].set(jnp.arange(s.shape[0], dtype=jnp.int32)))(source)
    pool_par = take(pool.parent)
    parent = jnp.where(pool_par < 0, -1, jnp.take_along_axis(inv, jnp.clip(pool_par, 0, None), axis=1))
    valid = take(pool.valid)
    return DraftTree(token=take(pool.token), parent=parent, depth=take(pool.depth), valid=valid,
                     children=children_from_parent(parent, valid, max_children), law=law,
                     probs=jnp.take_along_axis(pool.probs, source[..., None], axis=1))


class TreeBuilder:
    """Interface: static shape properties plus `build`. Subclasses are frozen dataclasses (hashable, jit-static)."""

    @property
    def max_depth(self) -> int: raise NotImplementedError
    @property
    def num_nodes(self) -> int: raise NotImplementedError       # N, tree nodes scored by the target (no root)
    @property
    def pool_size(self) -> int: return self.num_nodes           # P, candidates the drafter writes
    @property
    def max_children(self) -> int: raise NotImplementedError
    laws: tuple[int, ...] = (LAW_DET,)                          # law codes of non-leaf nodes (static)

    def check(self, vocab_size: int) -> None:
        """Raise ValueError if this shape cannot be drawn over a vocabulary of `vocab_size`."""

    def build(self, drafter: Drafter, params: Any, cache: Any, ctx: Any, key: jax.Array,
              sampling: SamplingConfig) -> tuple[DraftTree, Any, jax.Array]:
        """Draft one tree per row. ctx: `DecodeContext` (prev, pending, position `[B]`, features `[B, 2, D]`).
        Returns (tree with N+1 nodes, drafter cache, source `[B, N+1]` pool index of each tree node)."""
        raise NotImplementedError


def _level_offsets(sizes: tuple[int, ...]) -> list[int]:
    """offsets[d] = pool index of the first level-d node (level 0 = root at 0)."""
    off = [0, 1]
    for s in sizes[:-1]:
        off.append(off[-1] + s)
    return off


@dataclass(frozen=True)
class StaticTree(TreeBuilder):
    """A fixed tree of rank paths (Medusa / EAGLE-1): path (0, 1) = the second most likely child of the most likely
    root child. Children are deterministic (top ranks of q), verified with point masses."""

    paths: tuple[tuple[int, ...], ...]

    def __post_init__(self):
        paths = tuple(tuple(int(r) for r in p) for p in self.paths)
        if not paths or any(len(p) == 0 for p in paths) or any(r < 0 for p in paths for r in p):
            raise ValueError("static tree paths must be non-empty tuples of ranks >= 0")
        if len(set(paths)) != len(paths):
            raise ValueError("static tree paths must be distinct")
        known = set(paths)
        for p in paths:
            if len(p) > 1 and p[:-1] not in known:
                raise ValueError(f"static tree path {p} has no parent path {p[:-1]} (every prefix must be a node)")
        object.__setattr__(self, "paths", tuple(sorted(paths, key=lambda p: (len(p), p))))

    @property
    def max_depth(self): return max(len(p) for p in self.paths)
    @property
    def num_nodes(self): return len(self.paths)
    @property
    def max_children(self):
        counts: dict = {}
        for p in self.paths:
            counts[p[:-1]] = counts.get(p[:-1], 0) + 1
        return max(counts.values())

    def check(self, vocab_size):
        worst = max(r for p in self.paths for r in p)
        if worst >= vocab_size:
            raise ValueError(f"static tree rank {worst} needs more than the vocabulary ({vocab_size}) tokens")

    def _static(self):
        index = {(): 0}
        for i, p in enumerate(self.paths):
            index[p] = i + 1
        parent = np.array([-1] + [index[p[:-1]] for p in self.paths], np.int32)
        rank = np.array([0] + [p[-1] for p in self.paths], np.int32)
        depth = np.array([0] + [len(p) for p in self.paths], np.int32)
        return parent, rank, depth

    def build(self, drafter, params, cache, ctx, key, sampling):
        parent, rank, depth = self._static()
        b, n, dmax = ctx.pending.shape[0], self.num_nodes, self.max_depth
        pool = _Pool(ctx.pending, n, drafter.config.vocab_size)
        sizes = tuple(int(np.sum(depth == d)) for d in range(1, dmax + 1))
        off = _level_offsets(sizes)
        top = int(rank.max()) + 1
        for d in range(dmax):
            logits, cache = _draft_pass(drafter, params, cache, ctx, pool, off[d + 1] - 1, dmax)
            q = warp_logits(logits, sampling)
            pool.probs = pool.probs.at[:, :off[d + 1]].set(q)
            lo, hi = off[d + 1], off[d + 1] + sizes[d]
            par = parent[lo:hi]
            ranked = jax.lax.top_k(_rank_probs(logits, q, sampling)[:, par], top)[1]       # [B, L, top]
            tok = ranked[:, np.arange(hi - lo), rank[lo:hi]]
            pool.put(lo, tok, jnp.broadcast_to(par, (b, hi - lo)), d + 1, jnp.ones((b, hi - lo), bool))
        source = jnp.broadcast_to(jnp.arange(n + 1, dtype=jnp.int32), (b, n + 1))
        law = jnp.full((b, n + 1), LAW_DET, jnp.int32)
        return _finish(pool, source, law, self.max_children, dmax), cache, source


def default_static_paths(budget: int, max_rank: int = 4, decay: float = 0.6) -> tuple[tuple[int, ...], ...]:
    """A Sequoia-flavoured static shape: the `budget` rank paths with the largest product of `decay ** (rank+1)`
    (a position-only acceptance guess), always prefix-closed. Pure Python, at construction time."""
    check_int("budget", budget, low=1)
    heap = [(-decay, (0,))] + [(-(decay ** (r + 1)), (r,)) for r in range(1, max_rank)]
    heapq.heapify(heap)
    chosen: list[tuple[int, ...]] = []
    while heap and len(chosen) < budget:
        score, path = heapq.heappop(heap)
        chosen.append(path)
        for r in range(max_rank):
            heapq.heappush(heap, (score * decay ** (r + 1), path + (r,)))
    return tuple(chosen)


@dataclass(frozen=True)
class Eagle2Tree(TreeBuilder):
    """EAGLE-2 dynamic tree: value = cumulative draft confidence along the path; at each of `depth` steps the top
    `top_k` nodes of the newest layer by value each get their `top_k` most likely children; then all generated
    nodes are reranked by value (ties to shallower, then earlier) and the best `budget` are kept. Since value never
    increases along a path, the kept set is closed under ancestors. Deterministic children (point-mass rule)."""

    budget: int
    top_k: int = 4
    depth: int = 5

    def __post_init__(self):
        check_int("budget", self.budget, low=1)
        check_int("top_k", self.top_k, low=1)
        check_int("depth", self.depth, low=1)
        if self.budget > self.pool_size:
            raise ValueError(f"EAGLE-2 budget {self.budget} exceeds the {self.pool_size} nodes that top_k="
                             f"{self.top_k}, depth={self.depth} generate: raise depth or top_k")

    @property
    def max_depth(self): return self.depth
    @property
    def num_nodes(self): return self.budget
    @property
    def pool_size(self): return self.top_k + (self.depth - 1) * self.top_k ** 2
    @property
    def max_children(self): return self.top_k

    def check(self, vocab_size):
        if self.top_k > vocab_size:
            raise ValueError(f"EAGLE-2 top_k {self.top_k} exceeds the vocabulary ({vocab_size})")

    def build(self, drafter, params, cache, ctx, key, sampling):
        b, k, dmax = ctx.pending.shape[0], self.top_k, self.depth
        pool = _Pool(ctx.pending, self.pool_size, drafter.config.vocab_size)
        sizes = (k,) + (k * k,) * (dmax - 1)
        off = _level_offsets(sizes)
        value = jnp.zeros((b, self.pool_size + 1), jnp.float32).at[:, 0].set(1.0)
        for d in range(dmax):
            logits, cache = _draft_pass(drafter, params, cache, ctx, pool, off[d + 1] - 1, dmax)
            q = warp_logits(logits, sampling)
            pool.probs = pool.probs.at[:, :off[d + 1]].set(q)
            lo, hi = off[d], off[d + 1]
            # expand the best k nodes of the newest level (lax.top_k breaks ties to the lower index)
            sel = jnp.zeros((b, 1), jnp.int32) if d == 0 else lo + jax.lax.top_k(value[:, lo:hi], k)[1]
            rank = jnp.take_along_axis(_rank_probs(logits, q, sampling), sel[..., None], axis=1)    # [B, S, V]
            child_p, child_tok = jax.lax.top_k(rank, k)                                          # [B, S, k]
            child_val = jnp.take_along_axis(value, sel, axis=1)[..., None] * child_p
            s = sel.shape[1]
            pool.put(hi, child_tok.reshape(b, s * k), jnp.repeat(sel, k, axis=1), d + 1, jnp.ones((b, s * k), bool))
            value = value.at[:, hi:hi + s * k].set(child_val.reshape(b, s * k))
        order = jnp.argsort(-value[:, 1:], axis=1, stable=True)[:, :self.budget] + 1
        source = jnp.concatenate([jnp.zeros((b, 1), jnp.int32), jnp.sort(order, axis=1).astype(jnp.int32)], 1)
        law = jnp.full((b, self.budget + 1), LAW_DET, jnp.int32)
        return _finish(pool, source, law, k, dmax), cache, source


@dataclass(frozen=True)
class RSDCTree(TreeBuilder):
    """RSD-C: every node at depth d-1 gets `branching[d-1]` children drawn without replacement from its draft law
    by Gumbel-top-k, in sampling order (descending perturbed score). Children beyond the support are invalid."""
    laws = (LAW_WOR,)

    branching: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "branching", tuple(self.branching))
        if not self.branching:
            raise ValueError("RSD-C needs at least one level of branching")
        for b in self.branching:
            check_int("branching factor", b, low=1)

    @property
    def max_depth(self): return len(self.branching)
    @property
    def level_sizes(self) -> tuple[int, ...]:
        return tuple(int(np.prod(self.branching[:d + 1])) for d in range(len(self.branching)))
    @property
    def num_nodes(self): return sum(self.level_sizes)
    @property
    def max_children(self): return max(self.branching)

    def check(self, vocab_size):
        if max(self.branching) > vocab_size:
            raise ValueError(f"RSD-C branching {max(self.branching)} exceeds the vocabulary ({vocab_size}): "
                             "draws without replacement cannot return more distinct tokens than exist")

    def build(self, drafter, params, cache, ctx, key, sampling):
        b, dmax = ctx.pending.shape[0], self.max_depth
        pool = _Pool(ctx.pending, self.num_nodes, drafter.config.vocab_size)
        sizes = self.level_sizes
        off = _level_offsets(sizes)
        keys = jax.random.split(key, dmax)
        for d in range(dmax):
            logits, cache = _draft_pass(drafter, params, cache, ctx, pool, off[d + 1] - 1, dmax)
            q = warp_logits(logits, sampling)
            pool.probs = pool.probs.at[:, :off[d + 1]].set(q)
            lo, hi, m = off[d], off[d + 1], self.branching[d]
            ql = q[:, lo:hi]                                                                      # [B, L, V]
            logq = jnp.where(ql > 0, jnp.log(jnp.where(ql > 0, ql, 1.0)), -jnp.inf)
            score, tok = jax.lax.top_k(logq + jax.random.gumbel(keys[d], ql.shape), m)           # sampling order
            valid = jnp.isfinite(score) & pool.valid[:, lo:hi, None]
            n = (hi - lo) * m
            par = jnp.broadcast_to(jnp.repeat(jnp.arange(lo, hi, dtype=jnp.int32), m), (b, n))
            pool.put(hi, tok.reshape(b, n), par, d + 1, valid.reshape(b, n))
        n1 = self.num_nodes + 1
        source = jnp.broadcast_to(jnp.arange(n1, dtype=jnp.int32), (b, n1))
        law = jnp.full((b, n1), LAW_WOR, jnp.int32)
        return _finish(pool, source, law, self.max_children, dmax), cache, source


@dataclass(frozen=True)
class RSDSTree(TreeBuilder):
    """RSD-S: stochastic beam search (Kool et al. 2019) of width `width` for `depth` levels.

    Draft law. The root's children are the Gumbel-top-`width` of `q(.|root)`: exactly `wor(q, width)` in sampling
    order, verified with RRS without replacement. Below the root the law is NOT per-node `wor(q(.|v), m_v)`: how
    many children `m_v` of v survive the beam depends on the perturbed *values* of v's children relative to other
    beams, and those values are correlated with which tokens came first, so conditioning on `m_v` changes the law
    of v's child tuple. The exact conditional law would need an integral over the other beams' scores, which we do
    not compute. Those nodes are therefore marked deterministic and verified with the point-mass rule (sample
    y ~ p, accept iff y is a child), which is lossless for ANY child set, however it was drawn.
    """
    laws = (LAW_WOR, LAW_DET)

    width: int
    depth: int

    def __post_init__(self):
        check_int("width", self.width, low=1)
        check_int("depth", self.depth, low=1)

    @property
    def max_depth(self): return self.depth
    @property
    def num_nodes(self): return self.width * self.depth
    @property
    def max_children(self): return self.width

    def check(self, vocab_size):
        if self.width > vocab_size:
            raise ValueError(f"RSD-S beam width {self.width} exceeds the vocabulary ({vocab_size}): the root draws "
                             "its children without replacement")

    def build(self, drafter, params, cache, ctx, key, sampling):
        b, w, dmax = ctx.pending.shape[0], self.width, self.depth
        v = drafter.config.vocab_size
        pool = _Pool(ctx.pending, self.num_nodes, v)
        sizes = (w,) * dmax
        off = _level_offsets(sizes)
        keys = jax.random.split(key, dmax)
        phi = jnp.zeros((b, 1), jnp.float32)        # log q of the path, per beam node of the newest level
        gbeam = jnp.zeros((b, 1), jnp.float32)      # its perturbed score (the root's is fixed at 0, a shift)
        for d in range(dmax):
            logits, cache = _draft_pass(drafter, params, cache, ctx, pool, off[d + 1] - 1, dmax)
            q = warp_logits(logits, sampling)
            pool.probs = pool.probs.at[:, :off[d + 1]].set(q)
            lo, hi = off[d], off[d + 1]
            ql = q[:, lo:hi]
            alive = pool.valid[:, lo:hi]
            logq = jnp.where(ql > 0, jnp.log(jnp.where(ql > 0, ql, 1.0)), -jnp.inf)
            phi_c = phi[..., None] + logq                                                      # [B, S, V]
            g = phi_c + jax.random.gumbel(keys[d], phi_c.shape)
            z = jnp.max(g, axis=-1, keepdims=True)
            z = jnp.where(jnp.isfinite(z), z, 0.0)
            # children's Gumbels conditioned on their max equal to the parent's score (Kool et al., stable form)
            t = gbeam[..., None]
            vv = t - g + jnp.log1p(-jnp.exp(jnp.minimum(g - z, 0.0)))
            gc = t - jax.nn.relu(vv) - jnp.log1p(jnp.exp(-jnp.abs(vv)))
            gc = jnp.where(alive[..., None] & jnp.isfinite(g), gc, -jnp.inf)
            s = ql.shape[1]
            score, flat = jax.lax.top_k(gc.reshape(b, s * v), w)
            valid = jnp.isfinite(score)
            par = lo + flat // v
            pool.put(hi, flat % v, par, d + 1, valid)
            phi = jnp.take_along_axis(phi_c.reshape(b, s * v), flat, axis=1)
            gbeam = jnp.where(valid, score, -jnp.inf)
        n1 = self.num_nodes + 1
        source = jnp.broadcast_to(jnp.arange(n1, dtype=jnp.int32), (b, n1))
        law = jnp.full((b, n1), LAW_DET, jnp.int32).at[:, 0].set(LAW_WOR)
        return _finish(pool, source, law, w, dmax), cache, source


@dataclass(frozen=True)
class SpecInferTree(TreeBuilder):
    """SpecInfer: `chains` independent chains of `depth` tokens, each sampled from q along its own prefix, merged
    into a trie. A trie node's child slots are the next tokens of every chain through it (duplicates kept as
    separate slots): given the prefix they are i.i.d. from q(.|node), so RRS with i.i.d. drafts applies."""
    laws = (LAW_IID,)

    chains: int
    depth: int

    def __post_init__(self):
        check_int("chains", self.chains, low=1)
        check_int("depth", self.depth, low=1)

    @property
    def max_depth(self): return self.depth
    @property
    def num_nodes(self): return self.chains * self.depth
    @property
    def max_children(self): return self.chains

    def build(self, drafter, params, cache, ctx, key, sampling):
        b, k, dmax = ctx.pending.shape[0], self.chains, self.depth
        pool = _Pool(ctx.pending, self.num_nodes, drafter.config.vocab_size)
        off = _level_offsets((k,) * dmax)
        keys = jax.random.split(key, dmax)
        levels = []
        for d in range(dmax):
            logits, cache = _draft_pass(drafter, params, cache, ctx, pool, off[d + 1] - 1, dmax)
            q = warp_logits(logits, sampling)
            pool.probs = pool.probs.at[:, :off[d + 1]].set(q)
            ql = jnp.broadcast_to(q[:, off[d]:off[d + 1]], (b, k, q.shape[-1]))     # the root's law for all chains
            tok = sample_token(keys[d], ql)
            par = jnp.zeros((b, k), jnp.int32) if d == 0 else jnp.arange(off[d], off[d + 1], dtype=jnp.int32)[None]
            pool.put(off[d + 1], tok, jnp.broadcast_to(par, (b, k)), d + 1, jnp.ones((b, k), bool))
            levels.append(tok)
        # merge: canonical chain of (i, d) = the first chain with the same prefix through depth d
        same = jnp.ones((b, k, k), bool)
        canon_node, same_by_depth = [], [same]
        for d in range(dmax):
            same = same & (levels[d][:, :, None] == levels[d][:, None, :])
            canon_node.append(off[d + 1] + jnp.argmax(same, axis=-1).astype(jnp.int32))   # [B, k]
            same_by_depth.append(same)
        chain = jnp.arange(k)
        valid = [jnp.ones((b, 1), bool)] + [c == off[d + 1] + chain for d, c in enumerate(canon_node)]
        parent = [jnp.full((b, 1), -1, jnp.int32), jnp.zeros((b, k), jnp.int32)] + canon_node[:-1]
        children = []
        for d in range(dmax + 1):
            if d == dmax:
                children.append(jnp.full((b, k, k), -1, jnp.int32))
                continue
            nxt = jnp.broadcast_to(canon_node[d][:, None, :], (b, 1 if d == 0 else k, k))
            share = same_by_depth[d][:, :1] if d == 0 else same_by_depth[d]               # [B, rows, k]
            rows_valid = valid[d][..., None]
            children.append(jnp.where(share & rows_valid, nxt, -1))
        n1 = self.num_nodes + 1
        depth = jnp.broadcast_to(jnp.concatenate([jnp.zeros(1, jnp.int32)] + [jnp.full(k, d + 1, jnp.int32)
                                                                               for d in range(dmax)]), (b, n1))
        tree = DraftTree(token=pool.token, parent=jnp.concatenate(parent, 1), depth=depth,
                         valid=jnp.concatenate(valid, 1), children=jnp.concatenate(children, 1),
                         law=jnp.full((b, n1), LAW_IID, jnp.int32), probs=pool.probs)
        return tree, cache, jnp.broadcast_to(jnp.arange(n1, dtype=jnp.int32), (b, n1))
