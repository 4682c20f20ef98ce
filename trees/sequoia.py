"""Sequoia's dynamic program (Chen et al. 2024, arXiv 2402.12374): the static tree of rank paths with the largest
expected accepted length for a node budget, under positional acceptance (transport/THEORY.md §4.3).

Positional acceptance (`specjax.costs.latency.AcceptanceProfile`): the rank-j child of an accepted node at depth d is
accepted with probability `a[d, j]`, whatever else happened. Then a tree's expected accepted length is additive
over its nodes (THEORY §4.2, the DTR with positional edge weights):

    E[L](tree) = Σ_{path p in tree} Π_i a[i, p_i]

and the best tree below a node splits its budget among children of distinct ranks:

    F(l, m) = max over disjoint child ranks j with subtree sizes s_j (Σ s_j <= m) of Σ_j a[l, j] (1 + F(l+1, s_j - 1))
    F(D, m) = 0  (depth limit D)

solved per depth l as a knapsack over ranks, O(D k m²). The answer is a tuple of rank paths, the input of
`trees.builders.StaticTree` (`make_builder("static", paths=...)`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from specjax.costs.latency import AcceptanceProfile
from specjax.validation import check_int

Path = tuple[int, ...]


@dataclass(frozen=True)
class SequoiaTree:
    """The best static tree for a budget and depth limit under positional acceptance."""

    paths: tuple[Path, ...]
    """Rank paths, parents first (StaticTree's order); at most `budget` of them."""
    expected_accepted: float
    """E[accepted drafts] per round under the acceptance profile (τ - 1)."""
    budget: int
    """The node budget N it was solved for."""
    max_depth: int
    """The depth limit D it was solved for."""

    @property
    def tau(self) -> float:
        return 1.0 + self.expected_accepted

    @property
    def depth(self) -> int:
        return max((len(p) for p in self.paths), default=0)


def positional_reward(paths: Sequence[Sequence[int]], acceptance: AcceptanceProfile) -> float:
    """E[accepted drafts] of a tree of rank paths: Σ_p Π_i a[i, p_i]. ValueError unless the paths are
    distinct and closed under prefixes."""
    paths = [tuple(int(r) for r in p) for p in paths]
    known = set(paths)
    if len(known) != len(paths) or any(not p or min(p) < 0 or (len(p) > 1 and p[:-1] not in known) for p in paths):
        raise ValueError("paths must be distinct non-empty rank tuples (ranks >= 0), closed under prefixes")
    return float(sum(np.prod([acceptance.rate(i, r) for i, r in enumerate(p)]) for p in paths))


def empirical_reward(paths: Sequence[Sequence[int]], ranks) -> float:
    """E[accepted drafts] of a tree of rank paths on observed greedy rounds, with no independence assumption:
    the mean over starts t of the number of paths p with ranks[t, :len(p)] == p (`ranks [starts, D]`,
    `specjax.bench.acceptance`). A greedy round accepts exactly the deepest such path, and its prefixes."""
    r = np.asarray(ranks)
    if r.ndim != 2:
        raise ValueError(f"ranks must be [starts, D], got shape {r.shape}")
    paths = [tuple(int(x) for x in p) for p in paths]
    positional_reward(paths, AcceptanceProfile((1.0,)))          # the same checks on the paths
    if max(map(len, paths)) > r.shape[1]:
        raise ValueError(f"a path of depth {max(map(len, paths))} needs ranks of that many depths ({r.shape[1]})")
    return float(sum(np.mean(np.all(r[:, :len(p)] == np.asarray(p), axis=1)) for p in paths))


def _solve(rates: np.ndarray, budget: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """F `[D+1, M+1]` and the choice table `[D, k, M+1]` (subtree size given to rank j at depth l with m nodes
    left for ranks >= j; 0 = no child of that rank). rates `[D, k]` (already expanded to the depth limit)."""
    k = rates.shape[1]
    f = np.zeros((depth + 1, budget + 1))
    choice = np.zeros((depth, k, budget + 1), np.int64)
    for l in range(depth - 1, -1, -1):
        g = np.zeros(budget + 1)                     # G_k = 0: no more ranks to place
        for j in range(k - 1, -1, -1):
            child = rates[l, j] * (1.0 + f[l + 1, :budget])       # child[s - 1]: a child subtree of s nodes
            new = g.copy()
            for m in range(1, budget + 1):
                cand = child[:m] + g[m - 1::-1]                    # s = 1..m: child of s nodes + G_{j+1}(m - s)
                s = int(np.argmax(cand)) + 1
                if cand[s - 1] > g[m] + 1e-15:                     # strictly better than skipping rank j
                    new[m], choice[l, j, m] = cand[s - 1], s
            g = new
        f[l] = g
    return f, choice


def _paths(choice: np.ndarray, l: int, m: int, prefix: Path, out: list[Path]) -> None:
    for j in range(choice.shape[1]):
        s = int(choice[l, j, m])
        if s:
            out.append(prefix + (j,))
            if l + 1 < choice.shape[0]:
                _paths(choice, l + 1, s - 1, prefix + (j,), out)
            m -= s


def sequoia_trees(acceptance: AcceptanceProfile, budgets: Sequence[int], max_depth: int) -> list[SequoiaTree]:
    """The best tree for each budget at one depth limit, from one dynamic program."""
    budgets = [check_int("budget", b, low=1) for b in budgets]
    depth = check_int("max_depth", max_depth, low=1)
    if not isinstance(acceptance, AcceptanceProfile):
        raise ValueError("acceptance must be an AcceptanceProfile")
    rates = np.array([[acceptance.rate(l, j) for j in range(acceptance.ranks)] for l in range(depth)])
    f, choice = _solve(rates, max(budgets), depth)
    trees = []
    for b in budgets:
        paths: list[Path] = []
        _paths(choice, 0, b, (), paths)
        paths.sort(key=lambda p: (len(p), p))
        trees.append(SequoiaTree(tuple(paths), float(f[0, b]), b, depth))
    return trees


def sequoia_tree(acceptance: AcceptanceProfile, budget: int, max_depth: int | None = None) -> SequoiaTree:
    """The static tree of at most `budget` nodes and depth <= `max_depth` (default: budget, i.e. none) with the
    largest expected accepted length under `acceptance`. Its `paths` go to `make_builder("static", paths=...)`."""
    budget = check_int("budget", budget, low=1)
    return sequoia_trees(acceptance, [budget], budget if max_depth is None else max_depth)[0]
