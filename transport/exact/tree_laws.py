"""Draft trees as small concrete objects and the exact law of the trees a drafting scheme produces (numpy float64,
small V; transport/THEORY.md §4.1, §5.3).

A `ConcreteTree` lists nodes in topological (BFS) order, node 0 the root; `children[v]` are v's child slots in sampling
order (a node id may repeat: i.i.d. duplicates merged into one node, as in the SpecInfer trie) and `law[v]` says how
they were drawn (a name of `specjax.verify.names.TREE_LAWS`). Context-dependent tables give every node's laws:
`p_tables[d]` `[V]*d + [V]` is the target after a d-token path, `q_tables[d]` the drafter's. Shapes are nested tuples
as in `trees.reward` (a node's shape is the tuple of its child slots' shapes; a leaf is ()).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from specjax.verify.names import TREE_LAWS
from transport.laws import greedy_set


@dataclass(frozen=True)
class ConcreteTree:
    """tokens/parent `[N+1]` (root first, parent -1), children: per node the child ids in slot order, law per node."""

    tokens: tuple[int, ...]
    parent: tuple[int, ...]
    children: tuple[tuple[int, ...], ...]
    law: tuple[str, ...]

    def path(self, v: int) -> tuple[int, ...]:
        """The drafted tokens from the root to v (the context after v), root excluded."""
        out = []
        while v > 0:
            out.append(self.tokens[v])
            v = self.parent[v]
        return tuple(reversed(out))

    @property
    def depth(self) -> int:
        return max(len(self.path(v)) for v in range(len(self.tokens)))


def table_law(tables: Sequence[np.ndarray], context: Sequence[int]) -> np.ndarray:
    """The law `[V]` after `context` (tables[len(context)][context])."""
    return tables[len(context)][tuple(context)]


def _slot_draws(law: str, q: np.ndarray, m: int) -> list[tuple[tuple[int, ...], float]]:
    """Ordered child-token tuples of one node with m slots and their probabilities."""
    v = len(q)
    if law == "iid":
        return [(x, float(np.prod(q[list(x)]))) for x in itertools.product(range(v), repeat=m)
                if np.prod(q[list(x)]) > 0]
    if law == "without_replacement":
        if m > np.count_nonzero(q):
            raise ValueError(f"{m} children without replacement need |supp q| >= {m}")
        out = []
        for x in itertools.permutations(np.flatnonzero(q > 0).tolist(), m):
            prob, used = 1.0, np.zeros(v, bool)
            for t in x:
                prob *= q[t] / np.sum(np.where(used, 0.0, q))   # remaining mass summed directly
                used[t] = True
            out.append((tuple(x), prob))
        return out
    if law == "deterministic":
        return [(tuple(int(t) for t in greedy_set(q, m)), 1.0)]
    raise ValueError(f"unknown tree law {law!r}; expected one of {TREE_LAWS}")


def _layout(shape) -> tuple[list[int], list[tuple[int, ...]], list]:
    """BFS numbering of a shape: parent per node, child ids per node, sub-shape per node."""
    parent, children, shapes = [-1], [()], [shape]
    frontier = [0]
    while frontier:
        nxt = []
        for v in frontier:
            ids = []
            for sub in shapes[v]:
                parent.append(v)
                children.append(())
                shapes.append(sub)
                ids.append(len(parent) - 1)
            children[v] = tuple(ids)
            nxt.extend(ids)
        frontier = nxt
    return parent, children, shapes


def enumerate_trees(shape, law, q_tables: Sequence[np.ndarray]) -> Iterator[tuple[ConcreteTree, float]]:
    """Every drafted tree of `shape` with its probability. law: one of TREE_LAWS or a per-depth tuple of them."""
    parent, children, _ = _layout(shape)
    n = len(parent)
    depth = [0] * n
    for v in range(1, n):
        depth[v] = depth[parent[v]] + 1
    laws = tuple(law if isinstance(law, str) else law[min(depth[v], len(law) - 1)] for v in range(n))
    order = [v for v in range(n) if children[v]]

    def rec(i, tokens, prob):
        if i == len(order):
            yield ConcreteTree(tuple(tokens), tuple(parent), tuple(children), laws), prob
            return
        v = order[i]
        ctx = ConcreteTree(tuple(tokens), tuple(parent), tuple(children), laws).path(v)
        for draw, pr in _slot_draws(laws[v], table_law(q_tables, ctx), len(children[v])):
            nxt = list(tokens)
            for c, t in zip(children[v], draw):
                nxt[c] = t
            yield from rec(i + 1, nxt, prob * pr)

    yield from rec(0, [0] * n, 1.0)


CHAIN_LAYOUTS = ("separate", "trie_slots", "trie_distinct")


def chains_tree(chains: Sequence[Sequence[int]], layout: str = "separate") -> ConcreteTree:
    """K i.i.d. chains as one tree. "separate": the root has K children, each heading its own chain; "trie_slots":
    the SpecInfer trie (shared prefixes merged, one child slot per chain through a node, so ids may repeat);
    "trie_distinct": the trie with each distinct child listed once (how a port dedupes the trie)."""
    if layout not in CHAIN_LAYOUTS:
        raise ValueError(f"unknown chain layout {layout!r}; expected one of {CHAIN_LAYOUTS}")
    merge = layout != "separate"
    tokens, parent, children = [0], [-1], [[]]
    index: dict = {(): 0}
    key = (lambda j, prefix: tuple(prefix)) if merge else (lambda j, prefix: (j,) + tuple(prefix) if prefix else ())
    for j, chain in enumerate(chains):
        for d in range(len(chain)):
            node = key(j, chain[:d + 1])
            par = index[key(j, chain[:d])]
            if node not in index:
                index[node] = len(tokens)
                tokens.append(int(chain[d]))
                parent.append(par)
                children.append([])
            if layout == "trie_slots" or index[node] not in children[par]:
                children[par].append(index[node])
    return ConcreteTree(tuple(tokens), tuple(parent), tuple(tuple(c) for c in children), ("iid",) * len(tokens))


def enumerate_chain_sets(k: int, depth: int, q_tables) -> Iterator[tuple[tuple[tuple[int, ...], ...], float]]:
    """Every ordered tuple of k i.i.d. chains of `depth` tokens with its probability."""
    v = q_tables[0].shape[-1]
    singles = []
    for x in itertools.product(range(v), repeat=depth):
        pr = float(np.prod([table_law(q_tables, x[:i])[x[i]] for i in range(depth)]))
        if pr > 0:
            singles.append((x, pr))
    for combo in itertools.product(singles, repeat=k):
        yield tuple(c[0] for c in combo), float(np.prod([c[1] for c in combo]))


def enumerate_sbs_trees(q_tables, keep_second: Callable | None = None) -> Iterator[tuple[ConcreteTree, float]]:
    """RSD-S trees of stochastic beam search, width 2, depth 2, exactly (Kool et al.: the final beam is a
    without-replacement sample (s1, s2) of 2 sequences from q(a)q(b|a), in score order; the first level holds
    a1 = s1[0] and a2 = s2[0], or, when s2 shares a1, a2 ~ q(·|V∖a1) since a Gumbel argmax is independent of its
    max). Layout as `trees.sampled_builders.RSDSTree`: nodes [root, a1, a2, s1's leaf, s2's leaf]; every node's law
    "without_replacement".

    keep_second(a1, b1, b2) -> bool: the sensitivity case; when s2 shares a1, a1's second child b2 is kept only if
    this returns True, so its existence depends on its own token (default: always kept).
    """
    v = q_tables[0].shape[-1]
    seq = {(a, b): q_tables[0][a] * q_tables[1][a, b] for a in range(v) for b in range(v)}
    seq = {s: pr for s, pr in seq.items() if pr > 0}
    for s1, p1 in seq.items():
        rest = sum(pr for s, pr in seq.items() if s != s1)                      # 1 - q(s1), summed directly
        for s2, p2 in seq.items():
            if s2 == s1:
                continue
            base = p1 * p2 / rest
            if s2[0] != s1[0]:
                yield _sbs_tree(s1, s2, s2[0], shared=False, keep=True), base
                continue
            q0 = q_tables[0]
            other = np.sum(np.where(np.arange(v) == s1[0], 0.0, q0))
            for a2 in range(v):
                if a2 != s1[0] and q0[a2] > 0:
                    keep = keep_second is None or bool(keep_second(s1[0], s1[1], s2[1]))
                    yield _sbs_tree(s1, s2, a2, shared=True, keep=keep), base * q0[a2] / other


def _sbs_tree(s1, s2, a2, shared: bool, keep: bool) -> ConcreteTree:
    if shared:
        kids1 = (3, 4) if keep else (3,)
        tokens = (0, s1[0], a2, s1[1], s2[1]) if keep else (0, s1[0], a2, s1[1])
        parent = (-1, 0, 0, 1, 1) if keep else (-1, 0, 0, 1)
        children = ((1, 2), kids1, (), ()) + (((),) if keep else ())
    else:
        tokens, parent = (0, s1[0], a2, s1[1], s2[1]), (-1, 0, 0, 1, 2)
        children = ((1, 2), (3,), (4,), (), ())
    return ConcreteTree(tokens, parent, children, ("without_replacement",) * len(tokens))
