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
from typing import Iterator, Sequence

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


def enumerate_sbs_trees(q_tables, width: int = 2, depth: int = 2) -> Iterator[tuple[ConcreteTree, float]]:
    """Every RSD-S tree of stochastic beam search (Kool et al. 2019) of `width` for `depth` levels, with its
    probability, exactly (transport/THEORY.md §5.3). q_tables[d] `[V]*d + [V]` (d < depth).

    The level-d beam is the top-`width` length-d prefixes by perturbed value, a prefix's value being the max of the
    Gumbel-perturbed log q(s) over its full-depth extensions s. So order every sequence s (q(s) > 0) by
    Gumbel-top-k, i.e. sample them without replacement: level d holds the first `width` distinct length-d prefixes
    in order of first appearance. Only a draw that adds a prefix to a level not yet full changes the tree, and
    given the draws so far the next such draw is ∝ q over the sequences that would (the other draws never change
    that set), so the enumeration follows those draws only and merges draws with the same effect.
    Layout as `trees.sampled_builders.RSDSTree`: the root, then each level's beam in rank order; a node's children
    in rank order (its sampling order); every node's law "without_replacement".
    """
    seqs = _sequences(q_tables, width, depth)

    def rec(levels, prob):
        moves: dict = {}
        for s, pr in seqs:
            nxt = _grow(levels, s, width)
            if nxt != levels:
                moves[nxt] = moves.get(nxt, 0.0) + pr
        if not moves:
            yield beam_tree(levels), prob
            return
        mass = sum(moves.values())                               # q of the relevant sequences, summed directly
        for nxt, pr in moves.items():
            yield from rec(nxt, prob * pr / mass)

    yield from rec(((),) * depth, 1.0)


def sample_sbs_trees(q_tables, width: int, depth: int, n: int, rng: np.random.Generator) -> list[ConcreteTree]:
    """n RSD-S trees of stochastic beam search by the definition (Monte Carlo audits of shapes too large to
    enumerate; `enumerate_sbs_trees`'s layout): Gumbel-perturb log q(s) of every full-depth sequence and keep, per
    level, the first `width` distinct prefixes in descending order of the perturbed values."""
    seqs = _sequences(q_tables, width, depth)
    logq = np.log([pr for _, pr in seqs])
    trees = []
    for order in np.argsort(-(logq + rng.gumbel(size=(n, len(seqs)))), axis=1):
        levels: tuple = ((),) * depth
        for i in order:
            levels = _grow(levels, seqs[i][0], width)
            if all(len(lv) == width for lv in levels):
                break
        trees.append(beam_tree(levels))
    return trees


def _sequences(q_tables, width: int, depth: int) -> list[tuple[tuple[int, ...], float]]:
    """Every full-depth sequence s with q(s) > 0 and its probability (ValueError on a bad beam shape)."""
    if width < 1 or depth < 1 or len(q_tables) < depth:
        raise ValueError(f"stochastic beam search needs width, depth >= 1 and q_tables[0..{depth - 1}], got width "
                         f"{width}, depth {depth}, {len(q_tables)} tables")
    v = q_tables[0].shape[-1]
    out = []
    for s in itertools.product(range(v), repeat=depth):
        pr = float(np.prod([table_law(q_tables, s[:i])[s[i]] for i in range(depth)]))
        if pr > 0:
            out.append((s, pr))
    return out


def _grow(levels: tuple, s: tuple[int, ...], width: int) -> tuple:
    """The beams after drawing sequence s: each level not yet full gains s's prefix if it is new there."""
    return tuple(lv + (s[:d + 1],) if len(lv) < width and s[:d + 1] not in lv else lv for d, lv in enumerate(levels))


def beam_tree(levels: Sequence[Sequence[tuple[int, ...]]]) -> ConcreteTree:
    """The tree of per-level beams (levels[d]: the length-(d+1) prefixes in rank order): the root, then each level
    in rank order under its parent prefix; every node's law "without_replacement"."""
    index = {(): 0}
    tokens, parent, children = [0], [-1], [[]]
    for level in levels:
        for prefix in level:
            index[prefix] = len(tokens)
            tokens.append(prefix[-1])
            parent.append(index[prefix[:-1]])
            children.append([])
            children[index[prefix[:-1]]].append(index[prefix])
    return ConcreteTree(tuple(tokens), tuple(parent), tuple(tuple(c) for c in children),
                        ("without_replacement",) * len(tokens))


def without_leaf(tree: ConcreteTree, leaf: int) -> ConcreteTree:
    """The tree with the leaf node `leaf` (the last node id) removed (sensitivity cases of the audit)."""
    if leaf != len(tree.tokens) - 1 or tree.children[leaf]:
        raise ValueError("only the last node may be removed, and only when it is a leaf")
    kids = tuple(tuple(c for c in ch if c != leaf) for ch in tree.children[:leaf])
    return ConcreteTree(tree.tokens[:leaf], tree.parent[:leaf], kids, tree.law[:leaf])
