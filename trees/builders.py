"""The tree builders, each an expansion step for the level loop of `trees.level_loop`, and the table that makes one
from a node budget.

- `StaticTree` (Medusa / EAGLE-1): a fixed tree of rank paths, deterministic children.
- `Eagle2Tree` (EAGLE-2): expand the top-k nodes of each level by cumulative confidence, keep the best `budget`.
- `RSDCTree` (RSD-C): each node's children are drawn without replacement (Gumbel-top-k), in sampling order.
- `RSDSTree` (RSD-S): stochastic beam search; the root's children are a without-replacement sample.
- `SpecInferTree` (SpecInfer): k i.i.d. chains merged into a trie.
Deterministic children are verified as point masses (lossless for any child set); a child whose ranking
probability is zero (e.g. past the proposals of an n-gram drafter) is left out rather than drafted at random.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from specjax.decode.policies import check_threshold
from specjax.sampling import safe_log, sample_token
from specjax.validation import check_int
from trees.level_loop import TreeBuilder, rank_probs, tree_from_pool
from trees.pool import Pool
from trees.tree import LAW_DET, LAW_IID, LAW_WOR, DraftTree


def _top_children(scores: jax.Array, m: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The m best tokens of each scored row `[B, L, V]` -> (tokens, scores, valid) `[B, L*m]` (score > 0)."""
    b, l, _ = scores.shape
    best, tok = jax.lax.top_k(scores, m)
    return tok.reshape(b, l * m), best.reshape(b, l * m), (best > 0).reshape(b, l * m)


@dataclass(frozen=True)
class StaticTree(TreeBuilder):
    """A fixed tree of rank paths: path (0, 1) is the second most likely child of the most likely root child."""

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

    @classmethod
    def from_budget(cls, budget: int, paths=None) -> "StaticTree":
        return cls(paths=paths if paths is not None else default_static_paths(budget))

    @property
    def level_sizes(self):
        return tuple(sum(len(p) == d for p in self.paths) for d in range(1, max(map(len, self.paths)) + 1))

    @property
    def num_nodes(self):
        return len(self.paths)

    @property
    def max_children(self):
        return max(sum(q[:-1] == p for q in self.paths) for p in {p[:-1] for p in self.paths})

    def check(self, vocab_size):
        worst = max(r for p in self.paths for r in p)
        if worst >= vocab_size:
            raise ValueError(f"static tree rank {worst} needs more than the vocabulary ({vocab_size}) tokens")

    def expand(self, d, pool, idx, logits, q, key, sampling):
        index = {(): 0, **{p: i + 1 for i, p in enumerate(self.paths)}}
        level = [p for p in self.paths if len(p) == d + 1]
        parent = np.array([index[p[:-1]] for p in level], np.int32)
        rank = np.array([p[-1] for p in level], np.int32)
        ranked, tok = jax.lax.top_k(rank_probs(logits, q, sampling)[:, parent - self.offsets[d]], int(rank.max()) + 1)
        cols = np.arange(len(level))
        b = idx.shape[0]
        return pool.put(self.offsets[d + 1], tok[:, cols, rank], jnp.broadcast_to(parent, (b, len(level))),
                        ranked[:, cols, rank] > 0)


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
    """EAGLE-2 dynamic tree: value = cumulative draft confidence along the path; at each of `depth` levels the
    `top_k` most valuable nodes of the newest level each get their `top_k` most likely children; then every drafted
    node is reranked by value (ties to the earlier, i.e. shallower, node) and the best `budget` are kept. Value
    never increases along a path, so the kept set is closed under ancestors.

    threshold > 0 makes the tree's size and depth a per-round, per-row choice (`--draft-policy confidence:H`):
    nodes whose value falls below it are not drafted (absent to the verifier), and a level whose frontier holds no
    such node in any row is not drafted at all, so rounds in a confident context grow deep trees and the others
    stop early. Pruning keeps the tree closed under ancestors (value is monotone), so it stays lossless."""

    budget: int
    top_k: int = 4
    depth: int = 5
    threshold: float = 0.0

    @property
    def prunes(self) -> bool:
        return self.threshold > 0

    def __post_init__(self):
        check_threshold("EAGLE-2 confidence", self.threshold)
        check_int("budget", self.budget, low=1)
        check_int("top_k", self.top_k, low=1)
        check_int("depth", self.depth, low=1)
        if self.budget > self.pool_size:
            raise ValueError(f"EAGLE-2 budget {self.budget} exceeds the {self.pool_size} nodes that top_k="
                             f"{self.top_k}, depth={self.depth} generate: raise depth or top_k")

    @classmethod
    def from_budget(cls, budget: int, top_k: int | None = None, depth: int | None = None,
                    threshold: float = 0.0) -> "Eagle2Tree":
        k, d = top_k or 4, depth or 5
        while depth is None and k + (d - 1) * k * k < budget:
            d += 1
        return cls(budget=budget, top_k=k, depth=d, threshold=threshold)

    @property
    def level_sizes(self):
        return (self.top_k,) + (self.top_k ** 2,) * (self.depth - 1)

    @property
    def num_nodes(self):
        return self.budget

    @property
    def max_children(self):
        return self.top_k

    def frontier_size(self, d):
        return 1 if d == 0 else self.top_k

    def check(self, vocab_size):
        if self.top_k > vocab_size:
            raise ValueError(f"EAGLE-2 top_k {self.top_k} exceeds the vocabulary ({vocab_size})")

    def frontier(self, d, pool):
        if d == 0:
            return jnp.zeros((pool.token.shape[0], 1), jnp.int32)
        lo, hi = self.offsets[d], self.offsets[d + 1]
        value = jnp.where(pool.valid, pool.value, -1.0)[:, lo:hi]
        return lo + jax.lax.top_k(value, self.top_k)[1].astype(jnp.int32)     # ties to the lower index

    def expand(self, d, pool, idx, logits, q, key, sampling):
        tok, prob, valid = _top_children(rank_probs(logits, q, sampling), self.top_k)
        parent = jnp.repeat(idx, self.top_k, axis=1)
        value = jnp.take_along_axis(pool.value, parent, axis=1) * prob
        valid = valid & (value >= self.threshold)
        return pool.put(self.offsets[d + 1], tok, parent, valid, value=jnp.where(valid, value, 0.0))

    def select(self, pool):
        value = jnp.where(pool.valid, pool.value, -1.0)[:, 1:]
        keep = jnp.argsort(-value, axis=1, stable=True)[:, :self.budget] + 1
        return jnp.concatenate([jnp.zeros_like(keep[:, :1]), jnp.sort(keep, axis=1)], axis=1).astype(jnp.int32)


def _rsd_c_branching(budget: int) -> tuple[int, ...]:
    """(4, 2, 2, ...) while the total stays within budget, then 1s (chains) to use the rest."""
    branching, size, total = [], 1, 0
    for b in [4] + [2] * 16:
        if total + size * b > budget:
            break
        branching.append(b)
        size *= b
        total += size
    if not branching:
        branching, size, total = [min(budget, 4)], min(budget, 4), min(budget, 4)
    while total + size <= budget and len(branching) < 32:
        branching.append(1)
        total += size
    return tuple(branching)


@dataclass(frozen=True)
class RSDCTree(TreeBuilder):
    """RSD-C: every node at depth d-1 gets `branching[d-1]` children drawn without replacement from its draft law
    by Gumbel-top-k, in sampling order (descending perturbed score). Children beyond the support are invalid."""

    branching: tuple[int, ...]
    laws = (LAW_WOR,)

    def __post_init__(self):
        object.__setattr__(self, "branching", tuple(self.branching))
        if not self.branching:
            raise ValueError("RSD-C needs at least one level of branching")
        for b in self.branching:
            check_int("branching factor", b, low=1)

    @classmethod
    def from_budget(cls, budget: int, branching=None, depth: int | None = None) -> "RSDCTree":
        branching = tuple(branching) if branching is not None else _rsd_c_branching(budget)
        return cls(branching=branching[:depth] if depth is not None else branching)

    @property
    def level_sizes(self):
        return tuple(int(np.prod(self.branching[:d + 1])) for d in range(len(self.branching)))

    @property
    def num_nodes(self):
        return self.pool_size

    @property
    def max_children(self):
        return max(self.branching)

    def check(self, vocab_size):
        if max(self.branching) > vocab_size:
            raise ValueError(f"RSD-C branching {max(self.branching)} exceeds the vocabulary ({vocab_size}): "
                             "draws without replacement cannot return more distinct tokens than exist")

    def expand(self, d, pool, idx, logits, q, key, sampling):
        b, l, _ = q.shape
        m = self.branching[d]
        score, tok = jax.lax.top_k(safe_log(q) + jax.random.gumbel(key, q.shape), m)     # sampling order
        return pool.put(self.offsets[d + 1], tok.reshape(b, l * m), jnp.repeat(idx, m, axis=1),
                        jnp.isfinite(score).reshape(b, l * m))


@dataclass(frozen=True)
class RSDSTree(TreeBuilder):
    """RSD-S: stochastic beam search (Kool et al. 2019) of width `width` for `depth` levels.

    Draft law. The root's children are the Gumbel-top-`width` of `q(.|root)`: exactly `wor(q, width)` in sampling
    order, verified with RRS without replacement. Below the root, how many children `m_v` of v survive the beam
    depends on their perturbed values relative to other beams, so those nodes are marked deterministic and verified
    with the point-mass rule (sample y ~ p, accept iff y is a child), which is lossless for any child set.
    """

    width: int
    depth: int
    laws = (LAW_WOR, LAW_DET)

    def __post_init__(self):
        check_int("width", self.width, low=1)
        check_int("depth", self.depth, low=1)

    @classmethod
    def from_budget(cls, budget: int, width: int | None = None, depth: int | None = None) -> "RSDSTree":
        w = width or min(budget, max(4, budget // 8))            # depth stays <= 8 by default
        return cls(width=w, depth=depth or max(1, budget // w))

    @property
    def level_sizes(self):
        return (self.width,) * self.depth

    @property
    def num_nodes(self):
        return self.pool_size

    @property
    def max_children(self):
        return self.width

    def check(self, vocab_size):
        if self.width > vocab_size:
            raise ValueError(f"RSD-S beam width {self.width} exceeds the vocabulary ({vocab_size}): the root draws "
                             "its children without replacement")

    def expand(self, d, pool, idx, logits, q, key, sampling):
        b, l, v = q.shape
        rows = jnp.arange(b)[:, None]
        phi = jnp.where(idx == 0, 0.0, pool.value[rows, idx])          # log q of each beam's path (root: 0)
        gbeam = jnp.where(idx == 0, 0.0, pool.score[rows, idx])        # its perturbed score (the root's: a shift)
        phi_c = phi[..., None] + safe_log(q)                            # [B, L, V]
        g = phi_c + jax.random.gumbel(key, phi_c.shape)
        z = jnp.max(g, axis=-1, keepdims=True)
        z = jnp.where(jnp.isfinite(z), z, 0.0)
        # children's Gumbels conditioned on their max equal to the parent's score (Kool et al., stable form)
        t = gbeam[..., None]
        vv = t - g + jnp.log1p(-jnp.exp(jnp.minimum(g - z, 0.0)))
        gc = t - jax.nn.relu(vv) - jnp.log1p(jnp.exp(-jnp.abs(vv)))
        gc = jnp.where(pool.valid[rows, idx][..., None] & jnp.isfinite(g), gc, -jnp.inf)
        score, flat = jax.lax.top_k(gc.reshape(b, l * v), self.width)
        valid = jnp.isfinite(score)
        return pool.put(self.offsets[d + 1], flat % v, jnp.take_along_axis(idx, flat // v, axis=1), valid,
                        value=jnp.take_along_axis(phi_c.reshape(b, l * v), flat, axis=1),
                        score=jnp.where(valid, score, -jnp.inf))

    def finish(self, pool, source):
        tree = tree_from_pool(pool, source, LAW_DET, self.max_children)
        return tree.replace(law=tree.law.at[:, 0].set(LAW_WOR))


@dataclass(frozen=True)
class SpecInferTree(TreeBuilder):
    """SpecInfer: `chains` independent chains of `depth` tokens, each sampled from q along its own prefix, merged
    into a trie (`merge`). A trie node's child slots are the next tokens of every chain through it (duplicates kept
    as separate slots): given the prefix they are i.i.d. from q(.|node), so RRS with i.i.d. drafts applies, and so
    does greedy multi-path block verification. Unmerged (`merge=False`), the chains stay separate branches of the
    root, the layout traversal verification needs (a merged node's child count would reveal its siblings' tokens)."""

    chains: int
    depth: int
    merge: bool = True
    laws = (LAW_IID,)

    def __post_init__(self):
        check_int("chains", self.chains, low=1)
        check_int("depth", self.depth, low=1)

    @classmethod
    def from_budget(cls, budget: int, chains: int | None = None, depth: int | None = None,
                    merge: bool = True) -> "SpecInferTree":
        k = chains or min(budget, max(4, budget // 8))
        return cls(chains=k, depth=depth or max(1, budget // k), merge=merge)

    @property
    def level_sizes(self):
        return (self.chains,) * self.depth

    @property
    def num_nodes(self):
        return self.pool_size

    @property
    def max_children(self):
        return self.chains

    def expand(self, d, pool, idx, logits, q, key, sampling):
        b, k = idx.shape[0], self.chains
        if d == 0:                                   # every chain starts from the root's law
            q, idx = jnp.broadcast_to(q, (b, k, q.shape[-1])), jnp.zeros((b, k), jnp.int32)
        return pool.put(self.offsets[d + 1], sample_token(key, q), idx, jnp.ones((b, k), bool))

    def finish(self, pool: Pool, source) -> DraftTree:
        """Merge the chains: the canonical node of (chain i, depth d) is the first chain with the same prefix."""
        if not self.merge:
            return tree_from_pool(pool, source, LAW_IID, self.chains)
        b, k, dmax, off = pool.token.shape[0], self.chains, self.depth, self.offsets
        levels = [pool.token[:, off[d + 1]:off[d + 2]] for d in range(dmax)]
        same = jnp.ones((b, k, k), bool)
        canon, same_by_depth = [], [same]
        for d in range(dmax):
            same = same & (levels[d][:, :, None] == levels[d][:, None, :])
            canon.append(off[d + 1] + jnp.argmax(same, axis=-1).astype(jnp.int32))          # [B, k]
            same_by_depth.append(same)
        chain = jnp.arange(k)
        valid = [jnp.ones((b, 1), bool)] + [c == off[d + 1] + chain for d, c in enumerate(canon)]
        parent = [jnp.full((b, 1), -1, jnp.int32), jnp.zeros((b, k), jnp.int32)] + canon[:-1]
        children = []
        for d in range(dmax):
            nxt = jnp.broadcast_to(canon[d][:, None, :], (b, 1 if d == 0 else k, k))
            share = same_by_depth[d][:, :1] if d == 0 else same_by_depth[d]               # [B, rows, k]
            children.append(jnp.where(share & valid[d][..., None], nxt, -1))
        children.append(jnp.full((b, k, k), -1, jnp.int32))
        return DraftTree(token=pool.token, parent=jnp.concatenate(parent, 1), depth=pool.depth,
                         valid=jnp.concatenate(valid, 1), children=jnp.concatenate(children, 1),
                         law=jnp.full(source.shape, LAW_IID, jnp.int32), probs=pool.probs)


BUILDERS = {"eagle2": Eagle2Tree.from_budget, "rsd-c": RSDCTree.from_budget, "rsd-s": RSDSTree.from_budget,
            "specinfer": SpecInferTree.from_budget, "static": StaticTree.from_budget}
TREE_METHODS = tuple(sorted(BUILDERS))
ALIASES = {"eagle": "eagle2"}
"""Older names of tree methods (`eagle`, the EAGLE-2 dynamic tree, read like the EAGLE drafter head)."""


def canonical_method(method: str) -> str:
    """The TREE_METHODS name of `method` (an alias resolved); ValueError if it names no tree method."""
    method = ALIASES.get(method, method)
    if method not in BUILDERS:
        raise ValueError(f"unknown tree method {method!r}; known: {TREE_METHODS} (aliases: {ALIASES})")
    return method


def make_builder(method: str, *, budget: int = 16, **shape) -> TreeBuilder:
    """The builder for `method` in TREE_METHODS with at most `budget` nodes; unset shape knobs follow from budget.

    eagle2 (alias eagle): top_k (4) per expansion, depth (5, raised until the pool holds `budget`); rsd-c: branching per depth
    (default (4, 2, 2, ...) then 1s while the total stays within budget), depth (truncates it); rsd-s: beam width
    (max(4, budget // 8)), depth (budget // width); specinfer: chains (max(4, budget // 8)), depth (budget // chains);
    static: rank paths (default: the `budget` best paths under a position-only acceptance guess).
    """
    method = canonical_method(method)
    check_int("budget", budget, low=1)
    try:
        return BUILDERS[method](budget, **shape)
    except TypeError as e:
        raise ValueError(f"tree method {method!r} takes no shape option among {sorted(shape)}: {e}") from None
