"""Joint draft laws as explicit tables (small vocabularies, numpy float64; transport/THEORY.md §0, §2): ordered
tuples -> sets -> hit function.

A tuple law is `(tuples [T, k'] int64, probs [T] float64)`; a set law is `(sets [M, V] bool, probs [M] float64)`.
These tables feed the LP (`transport.optimal.lp`) and exact enumeration of verifier rules (`transport.exact.kernels`).
"""
from __future__ import annotations

import itertools

import numpy as np

from specjax.verify import names

DRAFT_LAWS = tuple(law for law in names.DRAFT_LAWS if law != names.DETERMINISTIC)   # laws with a tuple table


def support_size(q: np.ndarray) -> int:
    """Number of tokens with q > 0 (q: `[V]`)."""
    return int(np.count_nonzero(np.asarray(q) > 0))


def complement_mass(q: np.ndarray, mask: np.ndarray) -> float:
    """q(V \\ mask) summed directly over the complement (never as 1 - q(mask): pitfall 6.1.1)."""
    return float(np.sum(np.where(mask, 0.0, q)))


def greedy_set(q: np.ndarray, size: int) -> np.ndarray:
    """Indices of the top-`size` tokens of q (`[size]`), ties to the smaller id (matches `jax.lax.top_k`)."""
    order = np.lexsort((np.arange(len(q)), -np.asarray(q)))
    return order[:size]


def tuple_law(q: np.ndarray, k: int, law: str) -> tuple[np.ndarray, np.ndarray]:
    """Ordered k-tuple law of `law` in {"iid","without_replacement","greedy","spechub"} for q `[V]`.

    Returns tuples `[T, k']` and probs `[T]` (zero-probability tuples dropped). For without replacement
    k' = min(k, |supp q|); otherwise k' = k. Cost O(|supp q|^k): small V only.
    """
    q = np.asarray(q, np.float64)
    supp = np.flatnonzero(q > 0)
    if law == "iid":
        tuples = np.array(list(itertools.product(supp, repeat=k)), np.int64).reshape(-1, k)
        return tuples, np.prod(q[tuples], axis=1)
    if law == "without_replacement":
        k_eff = min(k, len(supp))
        tuples = np.array(list(itertools.permutations(supp, k_eff)), np.int64).reshape(-1, k_eff)
        probs = np.ones(len(tuples))
        for j in range(k_eff):
            used = np.zeros((len(tuples), len(q)), bool)
            used[np.arange(len(tuples))[:, None], tuples[:, :j]] = True
            remaining = np.sum(np.where(used, 0.0, q[None, :]), axis=1)  # complement as a direct sum
            probs *= q[tuples[:, j]] / remaining
        return tuples, probs
    if law == "greedy":
        if len(supp) < k:
            raise ValueError(f"greedy drafts need |supp q| >= k (got {len(supp)} < {k})")
        g = greedy_set(q, k - 1)
        in_g = np.zeros(len(q), bool)
        in_g[g] = True
        rest = np.flatnonzero((q > 0) & ~in_g)
        tuples = np.concatenate([np.tile(g, (len(rest), 1)), rest[:, None]], axis=1).astype(np.int64)
        return tuples, q[rest] / complement_mass(q, in_g)
    if law == "spechub":
        if k != 2:
            raise ValueError(f"spechub drafts are defined for k = 2 only, got k = {k}")
        if len(supp) < 2:
            raise ValueError("spechub drafts need |supp q| >= 2")
        a = int(greedy_set(q, 1)[0])
        rest = np.array([i for i in supp if i != a], np.int64)
        not_a = complement_mass(q, np.arange(len(q)) == a)
        tuples = np.concatenate([np.stack([rest, np.full_like(rest, a)], 1),
                                 np.stack([np.full_like(rest, a), rest], 1)])
        probs = np.concatenate([q[rest], q[a] * q[rest] / not_a])
        return tuples, probs
    raise ValueError(f"unknown draft law {law!r}; expected one of {DRAFT_LAWS}")


def independent_tuple_law(qs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tuple law of independent, non-identical drafts x_i ~ qs[i] (qs: `[k, V]`) -> tuples `[T, k]`, probs `[T]`."""
    qs = np.asarray(qs, np.float64)
    supports = [np.flatnonzero(row > 0) for row in qs]
    tuples = np.array(list(itertools.product(*supports)), np.int64).reshape(-1, len(qs))
    return tuples, np.prod(qs[np.arange(len(qs))[None, :], tuples], axis=1)


def set_law(tuples: np.ndarray, probs: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Aggregate a tuple law into its set law Q(S): sets `[M, V]` bool, probs `[M]` (duplicates merged)."""
    masks = np.zeros((len(tuples), vocab_size), bool)
    if tuples.size:
        masks[np.arange(len(tuples))[:, None], tuples] = True
    sets, inverse = np.unique(masks, axis=0, return_inverse=True)
    return sets, np.bincount(inverse.ravel(), weights=probs, minlength=len(sets))


def hit_probability(sets: np.ndarray, probs: np.ndarray, hit_mask: np.ndarray) -> np.ndarray:
    """f(H) = P(set(X) ∩ H ≠ ∅) for each row of hit_mask `[..., V]` -> `[...]`."""
    hits = np.any(sets[None, :, :] & np.asarray(hit_mask, bool).reshape(-1, sets.shape[1])[:, None, :], axis=2)
    return (hits @ probs).reshape(np.shape(hit_mask)[:-1])


def min_cut_bruteforce(p: np.ndarray, sets: np.ndarray, probs: np.ndarray) -> tuple[float, np.ndarray]:
    """α* = min_H [p(V∖H) + f(H)] over all 2^V subsets (V <= ~14). Returns (value, minimising H mask `[V]`)."""
    v = len(p)
    masks = ((np.arange(2 ** v)[:, None] >> np.arange(v)[None, :]) & 1).astype(bool)
    vals = np.sum(np.where(masks, 0.0, p[None, :]), axis=1) + hit_probability(sets, probs, masks)
    best = int(np.argmin(vals))
    return float(vals[best]), masks[best]
