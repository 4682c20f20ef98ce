"""The numpy backend of `transport.optimal.acceptance` (CPU; transport/THEORY.md §2.3–2.4): ratio buckets with exact
pruning for iid drafts and two drafts without replacement (`transport.optimal.buckets`), O(V) greedy by partition, and
the aggregated exponential-race quadrature for without replacement with k_eff >= 3 (`transport.optimal.race`: heavy
tokens explicitly, light tokens through their moments, pruned ratio prefixes).
Backend functions take raw rows `[N, V]` with their float64 row sums and return (α* `[N]`, H `[N, V]` or None).
"""
from __future__ import annotations

import numpy as np

from transport.optimal import race, reference
from transport.optimal.buckets import bucketed

def _take_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x[rows] for sorted unique rows, as a view (no copy of `[N, V]`) when they are one contiguous range."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return x[rows[0]:rows[-1] + 1]
    return x[rows]



def _greedy_np(p: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`reference.alpha_greedy` in O(V): G = top-(k-1) of q by partition instead of a full sort, `[n, V]`.

    G holds every token above the (k-1)-th largest value t of q and, of the tokens equal to t, those with the
    smallest ids: the first k-1 of a stable sort of -q, exactly the reference's G. Same closed form afterwards.
    """
    v = q.shape[1]
    t = np.partition(q, v - (k - 1), axis=1)[:, v - (k - 1), None]
    in_g = q >= t
    ties = np.flatnonzero(np.count_nonzero(in_g, axis=1) > k - 1)     # more tokens equal t than places left
    for i in ties:
        tied = np.flatnonzero(q[i] == t[i])
        in_g[i, tied[k - 1 - np.count_nonzero(q[i] > t[i]):]] = False
    return reference.greedy_given_set(p, q, in_g)


def iid(p_raw, q_raw, p_sum, q_sum, k, return_set, nodes_per_decade):
    """α*, H for k iid drafts (and greedy with k = 1): bucketed, no full sort."""
    return bucketed(p_raw, q_raw, p_sum, q_sum, "iid", k, return_set)


def greedy(p_raw, q_raw, p_sum, q_sum, k, return_set, nodes_per_decade):
    """α*, H for greedy drafts: top-(k-1) by partition, then the closed form."""
    if k == 1:
        return iid(p_raw, q_raw, p_sum, q_sum, 1, return_set, nodes_per_decade)
    p64, q64 = p_raw / p_sum[:, None], q_raw / q_sum[:, None]
    return reference.run_chunked(p64, q64, [(np.arange(len(p64)), lambda pp, qq, rows: _greedy_np(pp, qq, k))])


def without_replacement(p_raw, q_raw, p_sum, q_sum, k, return_set, nodes_per_decade):
    """α*, H for k drafts without replacement: bucketed for k_eff <= 2, the race quadrature for k_eff >= 3."""
    k_eff = np.minimum(k, np.count_nonzero(q_raw, axis=1))     # q >= 0 checked (-0.0 counts as zero)
    alpha = np.zeros(len(p_raw))
    mask = np.zeros(p_raw.shape, bool) if return_set else None
    for rows, law, kk in ((np.flatnonzero(k_eff == 1), "iid", 1), (np.flatnonzero(k_eff == 2), "wor2", 2)):
        if len(rows):
            a, h = bucketed(_take_rows(p_raw, rows), _take_rows(q_raw, rows), p_sum[rows], q_sum[rows], law, kk,
                            return_set)
            alpha[rows] = a
            if return_set:
                mask[rows] = h
    for i in np.flatnonzero(k_eff >= 3):                       # the aggregated race (transport.optimal.race)
        pp, qq = p_raw[i] / p_sum[i], q_raw[i] / q_sum[i]
        alpha[i], h = race.race_row(pp, qq, int(k_eff[i]), nodes_per_decade, return_set)
        if return_set:
            mask[i] = h
    return alpha, mask
