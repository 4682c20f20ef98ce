"""Exact tree verification in numpy float64 (transport/THEORY.md §4.2, §5.2): for one concrete draft tree, every way a
verifier can stop — (accepted path tokens, law of the token emitted after them, probability) — for token-level
rules (multi-draft rule per node) and for traversal verification (Weng et al., NeurIPS'25) with the variants that
public ports ship. Summed over an exactly enumerated tree law this gives the emitted law and E[accepted length].
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from transport.exact.chain import add_completed, add_pattern, completions, pattern_offsets
from transport.exact.kernels import kernel_rrs, residual
from transport.exact.tree_laws import TREE_LAWS, ConcreteTree, enumerate_trees, table_law

Stop = tuple[tuple[int, ...], np.ndarray, float]          # (accepted path tokens, final-token law [V], probability)
TRAVERSAL_ORDERS = ("postorder", "deepest", "level")


def _node_kernel(rule: str, p: np.ndarray, q: np.ndarray, drafts: Sequence[int]) -> np.ndarray:
    """Joint law `[m+1, V]` of (slot, token) at one node (row 0: no slot accepted, the correction law)."""
    if rule in ("iid", "without_replacement"):
        return kernel_rrs(p, q, np.asarray(drafts), without_replacement=rule == "without_replacement")
    out = np.zeros((len(drafts) + 1, len(p)))
    if rule == "deterministic":                                  # point mass: y ~ p, the first slot holding y
        rest = p.copy()
        for j, x in enumerate(drafts):
            out[j + 1, x] += rest[x]
            rest[x] = 0.0
        out[0] = rest
        return out
    raise ValueError(f"unknown node rule {rule!r}")


def token_stops(tree: ConcreteTree, p_tables, q_tables, rules: dict | None = None) -> list[Stop]:
    """Token-level verification walking from the root: at each node the rule of its law (RRS for "iid", RRS without
    replacement for "without_replacement", point mass for "deterministic"); `rules` maps a law to another node rule
    (e.g. {"deterministic": "without_replacement"}: deterministic children verified as if sampled from q, a published
    misuse)."""
    rules = {law: law for law in TREE_LAWS} | (rules or {})
    stops: list[Stop] = []

    def walk(v: int, weight: float) -> None:
        ctx = tree.path(v)
        p = table_law(p_tables, ctx)
        kids = tree.children[v]
        if not kids:
            stops.append((ctx, p, weight))
            return
        out = _node_kernel(rules[tree.law[v]], p, table_law(q_tables, ctx), [tree.tokens[c] for c in kids])
        mass = out[0].sum()
        if mass > 0:
            stops.append((ctx, out[0] / mass, weight * mass))
        for j, c in enumerate(kids):
            if out[j + 1].sum() > 0:
                walk(c, weight * out[j + 1].sum())

    walk(0, 1.0)
    return stops


def traversal_stops(tree: ConcreteTree, p_tables, q_tables, order: str = "postorder", renorm: dict | None = None,
                    final_from_original: bool = False) -> list[Stop]:
    """Traversal verification, literally: weights w(root) = 1, w(c) = min(1, w(u) P_u(t_c) / Q_u(t_c)); take a leaf
    (`order`: "postorder" = the paper's first leaf of a post-order walk, i.e. descend through first remaining
    children; "deepest" or "level" = smallest index, as ports do); accept its path w.p. w(leaf) and emit from its
    current P; else delete it and update its parent u: P_u <- norm((w_u P_u − Q_u)_+), w_u <- Z/(Z + 1 − w_u),
    Q_u drops the deleted token iff its law is renormalised (`renorm`, default {"without_replacement": True,
    "iid": False}), the weights of u's remaining descendants are recomputed. "deterministic" children use Q_u = a
    point mass on the child.
    A root without children is accepted (w = 1). `final_from_original`: emit from the original target law (a bug).
    """
    renorm = {"without_replacement": True, "iid": False, **(renorm or {})}
    n = len(tree.tokens)
    ctx = [tree.path(v) for v in range(n)]
    P = [table_law(p_tables, c).copy() for c in ctx]
    Q = [table_law(q_tables, c).copy() if c is not None and len(c) < len(q_tables) else None for c in ctx]
    alive = [True] * n
    w = [1.0] * n

    def kids(u):
        return [c for c in dict.fromkeys(tree.children[u]) if alive[c]]

    def q_at(u, c):
        return np.eye(len(P[u]))[tree.tokens[c]] if tree.law[u] == "deterministic" else Q[u]

    def set_weights(u):
        for c in kids(u):
            qc = q_at(u, c)[tree.tokens[c]]
            num = w[u] * P[u][tree.tokens[c]]
            w[c] = 1.0 if num >= qc else num / qc
            set_weights(c)

    def pick():
        if order == "postorder":
            v = 0
            while kids(v):
                v = kids(v)[0]
            return v
        leaves = [v for v in range(1, n) if alive[v] and not kids(v)] or [0]
        if order == "deepest":
            return max(leaves, key=lambda v: (len(ctx[v]), -v))
        return min(leaves)

    set_weights(0)
    stops: list[Stop] = []
    remaining = 1.0
    while remaining > 0:
        leaf = pick()
        law = table_law(p_tables, ctx[leaf]) if final_from_original else P[leaf]
        accept = 1.0 if leaf == 0 else w[leaf]
        stops.append((ctx[leaf], law / law.sum(), remaining * accept))
        remaining *= 1.0 - accept
        if leaf == 0 or remaining == 0:
            break
        u = tree.parent[leaf]
        qu = q_at(u, leaf)
        z = np.maximum(w[u] * P[u] - qu, 0.0).sum()
        P[u] = residual(w[u] * P[u], qu) if z > 0 else P[u]
        w[u] = z / (z + 1.0 - w[u]) if z + 1.0 - w[u] > 0 else 1.0
        if tree.law[u] != "deterministic" and renorm.get(tree.law[u], False):
            Q[u] = np.where(np.arange(len(Q[u])) == tree.tokens[leaf], 0.0, Q[u])
            Q[u] = Q[u] / Q[u].sum() if Q[u].sum() > 0 else Q[u]
        alive[leaf] = False
        set_weights(u)
    return stops


def emitted_law(weighted_stops: Iterable[tuple[list[Stop], float]], v: int, depth: int) -> np.ndarray:
    """The emitted-pattern law (`transport.exact.chain.pattern_offsets` layout) of stops weighted by tree
    probabilities."""
    offsets = pattern_offsets(v, depth)
    out = np.zeros(offsets[-1])
    for stops, prob in weighted_stops:
        for prefix, final, weight in stops:
            add_pattern(out, offsets, prefix, final, prob * weight)
    return out


def completed_law(weighted_stops: Iterable[tuple[list[Stop], float]], p_tables, depth: int) -> np.ndarray:
    """Law `[V]*(depth+1)` of the emitted tokens continued by target samples (lossless iff = the target joint)."""
    comp = completions(p_tables, depth)
    out = np.zeros_like(comp[0])
    for stops, prob in weighted_stops:
        for prefix, final, weight in stops:
            add_completed(out, comp, prefix, final, prob * weight)
    return out


def expected_length(weighted_stops: Iterable[tuple[list[Stop], float]]) -> float:
    """E[accepted drafts] = Σ prob · weight · len(path)."""
    return float(sum(prob * weight * len(prefix) for stops, prob in weighted_stops for prefix, _, weight in stops))


def verify_all(trees: Iterable[tuple[ConcreteTree, float]], verifier: Callable[[ConcreteTree], list[Stop]]
               ) -> list[tuple[list[Stop], float]]:
    """Apply a verifier (tree -> stops) to every tree of an enumerated law."""
    return [(verifier(t), prob) for t, prob in trees]


def tree_acceptance(shape, law, p_tables, q_tables, verifier: str = "token") -> float:
    """Exact E[accepted drafts] of a tree shape whose children are drawn by `law` (a name of TREE_LAWS, or one per
    depth), verified token-level ("token": the rule of each node's law) or by traversal ("traversal"), by
    enumerating every drafted tree (small V and trees only). The token-level value is `trees.reward`'s recursion."""
    verifiers = {"token": lambda t: token_stops(t, p_tables, q_tables),
                 "traversal": lambda t: traversal_stops(t, p_tables, q_tables)}
    if verifier not in verifiers:
        raise ValueError(f"unknown tree verifier {verifier!r}; expected one of {tuple(verifiers)}")
    return expected_length(verify_all(enumerate_trees(shape, law, q_tables), verifiers[verifier]))
