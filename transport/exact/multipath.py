"""Greedy multi-path block verification (after Thomas & Pal, arXiv 2602.16961) in numpy float64
(transport/THEORY.md §5.4): K i.i.d. draft chains of L tokens; select the lexicographically best chain under a
per-position token ranking; verify it with block verification under the *selected path's own law*.

Ranking: at a prefix, tokens are ordered by a key (RANKS: "ratio" p/q, "target" p, "draft" q; higher first, ties to
the smaller id); chains compare token by token. The best of K i.i.d. chains, Γ, is drawn from an autoregressive law
q^Γ computed exactly from order statistics: with M_d the number of chains sharing Γ_<d (M_0 = K), "below(y)" the
q-mass of tokens ranked after y and "upto(y)" = below(y) + q(y),
    q^Γ(y | Γ_<d) = Σ_m P(M_d = m) [upto(y)^m − below(y)^m] = q(y) Σ_m P(M_d = m) Σ_{l<m} upto^l below^(m−1−l),
    P(M_{d+1} = j | M_d = m, Γ_d = y) ∝ C(m, j) q(y)^j below(y)^(m−j)          (j = 1..m),
all terms positive (no cancellation at any K). Block verification is lossless for any autoregressive draft law, so
verifying Γ against q^Γ is lossless.
"""
from __future__ import annotations

from math import comb
from typing import Sequence

import numpy as np

from transport.exact.chain import along, stop_law
from transport.exact.tree_laws import table_law

RANKS = ("ratio", "target", "draft")


def rank_keys(p: np.ndarray, q: np.ndarray, rank: str) -> np.ndarray:
    """Ranking key `[V]` (higher = better) at one prefix; tokens with q = 0 last (never drafted)."""
    if rank == "ratio":
        key = np.where(q > 0, p / np.where(q > 0, q, 1.0), -1.0)
    elif rank == "target":
        key = np.where(q > 0, p, -1.0)
    elif rank == "draft":
        key = q.copy()
    else:
        raise ValueError(f"unknown ranking {rank!r}; expected one of {RANKS}")
    return key


def mass_below(q: np.ndarray, key: np.ndarray) -> np.ndarray:
    """below(y) `[V]`: q-mass of the tokens ranked strictly after y (key ascending, then id descending)."""
    order = np.lexsort((-np.arange(len(q)), key))                   # worst first
    below = np.zeros(len(q))
    below[order] = np.concatenate([[0.0], np.cumsum(q[order])[:-1]])
    return below


def best_chain(chains: Sequence[Sequence[int]], p_tables, q_tables, rank: str) -> int:
    """Index of the lexicographically best chain (the first of identical ones)."""
    alive = list(range(len(chains)))
    for d in range(len(chains[0])):
        ctx = tuple(chains[alive[0]][:d])
        key = rank_keys(table_law(p_tables, ctx), table_law(q_tables, ctx), rank)
        best = max((chains[j][d] for j in alive), key=lambda t: (key[t], -t))
        alive = [j for j in alive if chains[j][d] == best]
    return alive[0]


def selected_law(path: Sequence[int], p_tables, q_tables, k: int, rank: str) -> np.ndarray:
    """q^Γ conditionals `[L, V]` along a selected path (each row the law of Γ_d given Γ_<d)."""
    pi = np.zeros(k + 1)
    pi[k] = 1.0                                                     # P(M_0 = K) = 1
    rows = []
    for d in range(len(path)):
        ctx = tuple(path[:d])
        q = table_law(q_tables, ctx)
        below = mass_below(q, rank_keys(table_law(p_tables, ctx), q, rank))
        upto = below + q
        law = np.zeros(len(q))
        for m in range(1, k + 1):
            law += pi[m] * sum(upto ** l * below ** (m - 1 - l) for l in range(m))
        rows.append(q * law)
        y = path[d]
        nxt = np.zeros(k + 1)
        for m in range(1, k + 1):
            for j in range(1, m + 1):
                nxt[j] += pi[m] * comb(m, j) * q[y] ** j * below[y] ** (m - j)
        pi = nxt / nxt.sum()
    return np.stack(rows)


def gbv_stops(chains: Sequence[Sequence[int]], p_tables, q_tables, rank: str = "ratio"):
    """Stops (accepted prefix, final-token law, probability) of GBV on one draw of K chains."""
    best = tuple(chains[best_chain(chains, p_tables, q_tables, rank)])
    depth = len(best)
    q_sel = selected_law(best, p_tables, q_tables, len(chains), rank)
    pi, final = stop_law("block", along(p_tables, best, depth + 1), q_sel, best)
    return [(best[:n], final[n], pi[n]) for n in range(depth + 1) if pi[n] > 0]


def gbv_acceptance(p_tables, q_tables, k: int, depth: int, rank: str = "ratio") -> float:
    """Exact E[accepted drafts] of GBV with k chains of `depth` tokens: Σ_Γ q^Γ(Γ) Σ_i p_i(Γ) over the V^depth
    selectable paths (cost O(V^depth · depth · k² V), any k)."""
    v = q_tables[0].shape[-1]
    total = 0.0
    for path in np.ndindex(*(v,) * depth):
        q_sel = selected_law(path, p_tables, q_tables, k, rank)
        prob = float(np.prod([q_sel[d, path[d]] for d in range(depth)]))
        if prob > 0:
            pi, _ = stop_law("block", along(p_tables, path, depth + 1), q_sel, path)
            total += prob * float(np.arange(depth + 1) @ pi)
    return total
