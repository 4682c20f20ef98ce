"""Speed of light: the most any lossless verifier can accept from a deterministic draft tree or chain, numpy float64
(transport/THEORY.md §4.4; after Pankratov & Alistarh, arXiv 2512.11718).

A verification call with P slots scores P positions: the root (the law of the first new token) and n = P − 1 draft
nodes, a chain of n drafts or a tree of n nodes below the root. The tree is *deterministic*: a function of the
context, drawn without the target's randomness. Whatever the verifier, its emitted tokens Y_1 Y_2 … have the target's
law (lossless) and are independent of the fixed tree, and it can only accept drafted nodes on Y's path, so

    E[accepted drafts] ≤ Σ_{v in tree} P(v is a prefix of Y) = Σ_{v in tree} p(v),     p(v) = Π_d p(v_d | v_<d),

which the point-mass rule (accept the child holding y ~ p) reaches (§4.2). The best tree of n nodes therefore holds the
n likeliest prefixes (a child is never likelier than its parent, so they form a tree): `tree_cap`, a best-first search.
The best chain maximises Σ_{d ≤ n} p(x_≤d) over paths: `chain_cap`, a branch and bound. Both are exact caps.

Entropy bounds (the paper's question: the cap from moments of the target's surprisal). For any threshold t and any
n-node tree, Σ p(v) ≤ N(t) + n e^{−t} with N(t) = Σ_{v: p(v) ≥ e^{−t}} p(v) = Σ_d P(S_d ≤ t), S_d = −log p(Y_≤d) the
path's surprisal. When the per-step surprisals are i.i.d. with mean μ (the entropy) and second moment μ₂ (the second
log-moment Σ p log² p) — the paper's branching-random-walk model: laws i.i.d. across prefixes — renewal theory
(Wald's identity and Lorden's bound on the overshoot, E[S_τ − t] ≤ μ₂/μ) gives N(t) ≤ t/μ + μ₂/μ² − 1, hence
`renewal_bound`. Names: p `[V]` a law, n the number of draft nodes.
"""
from __future__ import annotations

import heapq
from typing import Callable, NamedTuple, Sequence

import numpy as np

NextLaw = Callable[[tuple[int, ...]], np.ndarray]
"""prefix (the drafted tokens after the context) -> the target's next-token law `[V]` there"""


class Cap(NamedTuple):
    """The best deterministic tree or chain and what it accepts."""

    accepted: float
    """max E[accepted drafts] over the trees (chains) of n nodes: Σ p(v) over `prefixes`"""
    prefixes: tuple[tuple[int, ...], ...]
    """the best tree's nodes (the chain's prefixes), each a token path from the root, in the order found"""
    probabilities: np.ndarray
    """`[n]` float64: p(v) of each prefix"""


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of draft nodes must be an integer >= 1, got {n!r}")
    return int(n)


def _law(next_law: NextLaw, prefix: tuple[int, ...]) -> np.ndarray:
    p = np.asarray(next_law(prefix), np.float64)
    if p.ndim != 1 or not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-6:
        raise ValueError(f"next_law{prefix} must be a probability row [V] (finite, >= 0, sum 1 within 1e-6)")
    return p


def _top(p: np.ndarray, m: int) -> np.ndarray:
    """The ids of the m largest positive entries of p, largest first (ties: smaller id), O(V)."""
    live = np.flatnonzero(p > 0)
    if len(live) > m:
        live = live[np.argpartition(-p[live], m - 1)[:m]]
    return live[np.lexsort((live, -p[live]))]


def tree_cap(next_law: NextLaw, n: int) -> Cap:
    """The n likeliest prefixes under the target (best-first search) and their total probability: the most a lossless
    verifier accepts from any deterministic tree of n nodes below the root. Only the top-(n − found) children of an
    expanded node can still enter, so each expansion reads `_top` of one law (O(V))."""
    n = _check_n(n)
    heap: list = []
    count = 0

    def push_children(prefix: tuple[int, ...], prob: float, room: int) -> None:
        nonlocal count
        p = _law(next_law, prefix)
        for tok in _top(p, room):
            heapq.heappush(heap, (-prob * p[tok], count, prefix + (int(tok),)))
            count += 1                                # ties pop in push order: a parent before its children

    push_children((), 1.0, n)
    chosen, probs = [], []
    while heap and len(chosen) < n:
        neg, _, prefix = heapq.heappop(heap)
        chosen.append(prefix)
        probs.append(-neg)
        if len(chosen) < n:
            push_children(prefix, -neg, n - len(chosen))
    probs = np.array(probs)
    return Cap(float(probs.sum()), tuple(chosen), probs)


def greedy_chain(next_law: NextLaw, n: int) -> Cap:
    """The target's argmax path of n tokens (ties: smaller id) and Σ_d p(x_≤d): a lower bound on `chain_cap`."""
    n = _check_n(n)
    prefix, prob, probs = (), 1.0, []
    for _ in range(n):
        p = _law(next_law, prefix)
        tok = int(np.argmax(p))
        prefix, prob = prefix + (tok,), prob * p[tok]
        probs.append(prob)
    return Cap(float(np.sum(probs)), tuple(prefix[:d] for d in range(1, n + 1)), np.array(probs))


class ChainSearch(NamedTuple):
    """What the chain search found: the best chain and an upper bound on the optimum (= best.accepted when exact)."""

    best: Cap
    upper: float

    @property
    def exact(self) -> bool:
        return self.upper <= self.best.accepted


def chain_search(next_law: NextLaw, n: int, max_expansions: int = 100_000) -> ChainSearch:
    """Best-first branch and bound over paths x_1..x_n for max Σ_d p(x_≤d): a partial path of depth d, value s and
    probability π can reach at most s + π (n − d); the lower bound starts at the greedy path and rises with every
    complete path met. Stops when no partial path can beat the best (exact) or after `max_expansions` expansions,
    with the largest remaining bound as `upper`."""
    n = _check_n(n)
    best = greedy_chain(next_law, n)
    heap = [(-float(n), 0, (), 0.0, 1.0, ())]        # (−bound, tie, prefix, value, prob, probs)
    count = 0
    for _ in range(max_expansions):
        if not heap or -heap[0][0] <= best.accepted:   # nothing left can beat the best: it is optimal
            return ChainSearch(best, best.accepted)
        _, _, prefix, value, prob, probs = heapq.heappop(heap)
        p = _law(next_law, prefix)
        room = n - len(prefix)
        # a child can still beat the best only if value + prob p_x room > best: one O(V) scan, then the few
        floor = max((best.accepted - value) / (prob * room), 0.0)
        for tok in np.flatnonzero(p > floor):
            step = prob * p[tok]
            path, steps = prefix + (int(tok),), probs + (step,)
            if room == 1:                              # a complete path: the new best if it beats it
                if value + step > best.accepted:
                    best = Cap(value + step, tuple(path[:d] for d in range(1, n + 1)), np.array(steps))
                continue
            count += 1
            heapq.heappush(heap, (-(value + step * room), count, path, value + step, step, steps))
    upper = max(-heap[0][0], best.accepted) if heap else best.accepted
    return ChainSearch(best, upper)


def chain_cap(next_law: NextLaw, n: int, max_expansions: int = 100_000) -> Cap:
    """The path x_1..x_n maximising Σ_d p(x_≤d): the most a lossless verifier accepts from any deterministic chain of n
    drafts (`chain_search`, exact). ValueError if the search needs more than `max_expansions` expansions."""
    found = chain_search(next_law, n, max_expansions)
    if not found.exact:
        raise ValueError(f"chain_cap: not settled in {max_expansions} expansions (optimum in "
                         f"[{found.best.accepted:.6g}, {found.upper:.6g}]; raise max_expansions)")
    return found.best


def surprisal_moments(p) -> tuple[np.ndarray, np.ndarray]:
    """(entropy Σ p log(1/p), second log-moment Σ p log²(1/p)) `[N]` (or floats) of laws `[N, V]` (or `[V]`), in
    nats; zero masses contribute 0."""
    p = np.asarray(p, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(p > 0, -np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.sum(p * s, axis=-1), np.sum(p * s * s, axis=-1)


def renewal_bound(mu, mu2, n: int):
    """Bound on E[accepted drafts] of any deterministic n-node tree when the surprisals along the target's path are
    i.i.d. with mean mu > 0 and second moment mu2 (nats): min_t [t/μ + μ₂/μ² − 1 + n e^{−t}] capped at n, i.e.
    log(μn)/μ + 1/μ + μ₂/μ² − 1 (at t = log(μn), when μn ≥ 1). Works elementwise on arrays."""
    n = _check_n(n)
    mu, mu2 = np.asarray(mu, np.float64), np.asarray(mu2, np.float64)
    if np.any(mu <= 0) or np.any(mu2 < mu * mu * (1 - 1e-12)):
        raise ValueError("renewal_bound needs mu > 0 and mu2 >= mu² (moments of one nonnegative surprisal)")
    t = np.maximum(np.log(mu * n), 0.0)
    out = np.minimum(t / mu + mu2 / mu**2 - 1.0 + n * np.exp(-t), float(n))
    return float(out) if out.ndim == 0 else out


def paper_leading_term(mu, mu2, slots: int):
    """Pankratov & Alistarh's (μ + μ₂) log(P) / μ² with P slots, without its unspecified O(1): a guide, not a bound."""
    return (np.asarray(mu) + np.asarray(mu2)) * np.log(slots) / np.asarray(mu) ** 2


def threshold_mass(next_law: NextLaw, t: float, max_nodes: int = 1_000_000) -> float:
    """N(t) = Σ p(v) over the prefixes v (depth >= 1) with p(v) >= e^{−t}, by depth-first enumeration (small cases)."""
    floor, total, stack, seen = np.exp(-t), 0.0, [((), 1.0)], 0
    while stack:
        prefix, prob = stack.pop()
        p = _law(next_law, prefix)
        for tok in np.flatnonzero(prob * p >= floor):
            seen += 1
            if seen > max_nodes:
                raise ValueError(f"threshold_mass: more than {max_nodes} prefixes above e^-t")
            total += prob * p[tok]
            stack.append((prefix + (int(tok),), prob * p[tok]))
    return total


def pool_law(pool: np.ndarray, rng: np.random.Generator) -> NextLaw:
    """The branching-random-walk model on a pool of laws `[M, V]`: each prefix gets a law drawn uniformly from the
    pool, independently, once (memoised), so the surprisals along the target's path are i.i.d."""
    memo: dict[tuple[int, ...], np.ndarray] = {}

    def law(prefix: tuple[int, ...]) -> np.ndarray:
        if prefix not in memo:
            memo[prefix] = pool[int(rng.integers(len(pool)))]
        return memo[prefix]
    return law


def tables_law(tables: Sequence[np.ndarray]) -> NextLaw:
    """Context-dependent tables (`tables[d]` `[V]*d + [V]`, as in `transport.exact.chain`) as a NextLaw; prefixes
    deeper than the tables reuse the last table on the most recent tokens."""
    last = len(tables) - 1

    def law(prefix: tuple[int, ...]) -> np.ndarray:
        d = min(len(prefix), last)
        return tables[d][tuple(prefix[len(prefix) - d:])]
    return law
