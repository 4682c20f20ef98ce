"""The tree builders, each an expansion step for the level loop of `trees.level_loop`, and the table that makes one
from a node budget (`make_builder`). The builders with deterministic children live here:

- `StaticTree` (Medusa / EAGLE-1): a fixed tree of rank paths, deterministic children.
- `Eagle2Tree` (EAGLE-2): expand the top-k nodes of each level by cumulative confidence, keep the best `budget`.

those with sampled children in `trees.sampled_builders` (RSD-C, RSD-S, SpecInfer).
Deterministic children are verified as point masses (lossless for any child set); a child whose ranking
probability is zero (e.g. past the proposals of an n-gram drafter) is left out rather than drafted at random.
"""
from __future__ import annotations

import heapq
import inspect
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from specjax.decode.policies import check_threshold
from specjax.validation import check_int
from trees.level_loop import TreeBuilder, rank_probs
from trees.sampled_builders import RSDCTree, RSDSTree, SpecInferTree


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

    eagle2 (alias eagle): top_k (4) per expansion, depth (5, raised until the pool holds `budget`); rsd-c:
    branching per depth (default (4, 2, 2, ...) then 1s while the total stays within budget), depth (truncates it);
    rsd-s: beam width (max(4, budget // 8)), depth (budget // width); specinfer: chains (max(4, budget // 8)), depth
    (budget // chains); static: rank paths (default: the `budget` best paths under a position-only acceptance
    guess). An option the builder does not take is a ValueError, checked against its signature (so an error raised
    inside a builder is never mistaken for a bad option).
    """
    method = canonical_method(method)
    check_int("budget", budget, low=1)
    factory = BUILDERS[method]
    try:
        inspect.signature(factory).bind(budget, **shape)
    except TypeError as e:
        raise ValueError(f"tree method {method!r} takes no shape option among {sorted(shape)}: {e}") from None
    return factory(budget, **shape)
