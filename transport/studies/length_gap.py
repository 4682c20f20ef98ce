"""Sequence-level rules in the gap experiment (transport/THEORY.md §5): exact E[accepted drafts] per round of
token vs block verification on chains, token-level vs traversal verification on small trees, and SpecInfer's
token-level RRS vs traversal vs GBV on k i.i.d. chains, per temperature, on random context-dependent tables (small
V: every draft is enumerated).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from transport.exact.chain import chain_acceptance
from transport.exact.multipath import gbv_acceptance
from transport.exact.tree_kernels import expected_length, token_stops, traversal_stops, tree_acceptance
from transport.exact.tree_laws import chains_tree, enumerate_chain_sets

TREE_SHAPES = {"binary depth 2": (((), ()), ((), ())), "irregular depth 3": ((((),), ()), ((),), ())}


def context_tables(pair_fn: Callable, v: int, count: int) -> tuple[list, list]:
    """p_tables[i], q_tables[i] `[V]*i + [V]` for i < count from `pair_fn(n) -> (p [n, V], q [n, V])`."""
    p_t, q_t = [], []
    for i in range(count):
        p, q = pair_fn(v ** i)
        p_t.append(p.reshape((v,) * i + (v,)))
        q_t.append(q.reshape((v,) * i + (v,)))
    return p_t, q_t


def length_rows(pair_fn: Callable, temperature: float, v: int, chain_ks=(1, 2, 3, 4), chain_counts=(2, 3),
                models: int = 2) -> list[dict]:
    """Exact mean E[accepted drafts] over `models` random table sets for every sequence-level comparison."""
    rows: dict = {}

    def add(key, values):
        rows.setdefault(key, []).append(values)

    for _ in range(models):
        p, q = context_tables(pair_fn, v, 5)
        for k in chain_ks:
            add(("chain", f"K={k}"), {"token": chain_acceptance(p[:k + 1], q[:k], "token"),
                                      "block": chain_acceptance(p[:k + 1], q[:k], "block")})
        for name, shape in TREE_SHAPES.items():
            for law in ("iid", "without_replacement"):
                add(("tree", f"{name}, {law}"), {"token": tree_acceptance(shape, law, p, q, "token"),
                                                 "traversal": tree_acceptance(shape, law, p, q, "traversal")})
        for k in chain_counts:
            sets = list(enumerate_chain_sets(k, 2, q[:2]))
            add(("iid chains", f"k={k}, depth 2"), {
                "token (trie)": expected_length([(token_stops(chains_tree(c, "trie_slots"), p, q), w)
                                                 for c, w in sets]),
                "traversal (separate)": expected_length([(traversal_stops(chains_tree(c), p, q), w) for c, w in sets]),
                "gbv": gbv_acceptance(p[:3], q[:2], k, 2)})
    return [{"temperature": temperature, "scheme": scheme, "setting": setting,
             **{name: float(np.mean([r[name] for r in vals])) for name in vals[0]}}
            for (scheme, setting), vals in rows.items()]
