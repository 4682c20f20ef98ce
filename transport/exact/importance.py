"""Khisti et al.'s two-step rule in numpy float64 (transport/THEORY.md §3.9): selection laws, the k = 2 selection LP,
the exact kernel of `specjax.verify.importance` and its membership acceptance.

Step 1 selects a draft z (law r), step 2 accepts z w.p. min(1, p(z)/r(z)) else emits norm((p − r)_+). First-stage
acceptance Σ_y min(r_y, p_y); for k = 2 the LP below maximises it over all selection rules and reaches α*(iid, 2)
(Khisti et al., Theorems 1–3).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np
import scipy.optimize
import scipy.sparse

from transport.exact.kernels import place_law, residual

PAIR_LP_MAX_V = 256          # the pair LP has V(V-1)/2 selection variables


@dataclass(frozen=True)
class PairSelection:
    """pair `[V, V]`: P(select a | drafts {a, b}) (pair[a, b] + pair[b, a] = 1, pair[a, a] = 1); marginal `[V]` the
    selection law of two i.i.d. drafts; value = Σ min(marginal, p) = the rule's acceptance."""

    pair: np.ndarray
    marginal: np.ndarray
    value: float


def weights_below(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Importance weights p/q `[V]` (q = 0 -> -1, never drafted) and below(y): q-mass ranked after y (weight
    descending, ties to the smaller id)."""
    key = np.where(q > 0, p / np.where(q > 0, q, 1.0), -1.0)
    order = np.lexsort((-np.arange(len(q)), key))                   # worst first
    below = np.zeros(len(q))
    below[order] = np.concatenate([[0.0], np.cumsum(q[order])[:-1]])
    return key, below


def argmax_marginal(p: np.ndarray, q: np.ndarray, m: int) -> np.ndarray:
    """Law `[V]` of the largest-weight draft among m i.i.d. draws: q(y) Σ_{l<m} upto^l below^(m−1−l)."""
    _, below = weights_below(p, q)
    upto = below + q
    return q * sum(upto ** l * below ** (m - 1 - l) for l in range(m))


def pair_selection_lp(p: np.ndarray, q: np.ndarray) -> PairSelection:
    """The optimal k = 2 selection: maximise Σ_y t_y, t_y <= p_y, t_y <= r_y(β), 0 <= β <= 1, where β_ab
    (a < b in supp q) = P(select a | {a, b}) and r_y = q_y² + 2 q_y Σ_{b≠y} q_b P(select y | {y, b}). HiGHS, float64."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    v = len(p)
    if v > PAIR_LP_MAX_V:
        raise ValueError(f"the pair-selection LP is for small vocabularies (V <= {PAIR_LP_MAX_V}), got V = {v}")
    supp = np.flatnonzero(q > 0)
    pairs = [(a, b) for i, a in enumerate(supp) for b in supp[i + 1:]]
    n_beta = len(pairs)
    rows, cols, vals = [], [], []
    rhs = q ** 2 + 0.0
    for col, (a, b) in enumerate(pairs):
        w = 2.0 * q[a] * q[b]
        rows += [a, b]
        cols += [col, col]
        vals += [-w, w]                          # r_a gains w β, r_b gains w (1 − β): constant w moves to rhs
        rhs[b] += w
    rows += list(range(v))
    cols += [n_beta + y for y in range(v)]
    vals += [1.0] * v
    a_ub = scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(v, n_beta + v))
    bounds = [(0.0, 1.0)] * n_beta + [(0.0, float(py)) for py in p]
    res = scipy.optimize.linprog(np.r_[np.zeros(n_beta), -np.ones(v)], A_ub=a_ub, b_ub=rhs, bounds=bounds,
                                 method="highs", options={"primal_feasibility_tolerance": 1e-10,
                                                          "dual_feasibility_tolerance": 1e-10})
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the pair-selection LP: {res.message}")
    pair = np.full((v, v), 0.5)                 # pairs outside supp q are never drafted
    np.fill_diagonal(pair, 1.0)
    for (a, b), beta in zip(pairs, np.clip(res.x[:n_beta], 0.0, 1.0)):
        pair[a, b], pair[b, a] = beta, 1.0 - beta
    marginal = pair_marginal(q, pair)
    return PairSelection(pair=pair, marginal=marginal, value=float(np.minimum(marginal, p).sum()))


def pair_marginal(q: np.ndarray, pair: np.ndarray) -> np.ndarray:
    """Selection law `[V]` of two i.i.d. drafts under a pair table: r_y = q_y² + 2 q_y Σ_{b≠y} q_b pair[y, b]."""
    return q * (pair * q[None, :]).sum(1) * 2.0 - q ** 2 * np.diag(pair)


def kernel_importance(p: np.ndarray, q: np.ndarray, drafts, selection: PairSelection | None = None) -> np.ndarray:
    """Joint law `[k+1, V]` of (slot, token) of the two-step rule for one draft tuple (slot = first slot holding the
    emitted token; row 0 = a token outside the drafts). selection None: largest weight (any k); else the pair table."""
    drafts = np.asarray(drafts)
    k, v = len(drafts), len(p)
    if selection is None or k == 1:
        key, _ = weights_below(p, q)
        best = max(range(k), key=lambda j: (key[drafts[j]], -drafts[j], -j))
        picks = [(best, 1.0)]
        r = argmax_marginal(p, q, k) if selection is None else q
    else:
        a, b = drafts
        picks = [(0, selection.pair[a, b]), (1, 1.0 - selection.pair[a, b])]
        r = selection.marginal
    out = np.zeros((k + 1, v))
    res = residual(p, r)
    for slot, w in picks:
        z = drafts[slot]
        acc = 1.0 if p[z] >= r[z] else p[z] / r[z]
        first = int(np.flatnonzero(drafts == z)[0])
        out[first + 1, z] += w * acc
        place_law(out, res.copy(), w * (1.0 - acc), drafts, to_slots=True)
    return out


def importance_membership(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """Exact P(Y ∈ X) of the largest-weight two-step rule with k i.i.d. drafts, O(V k): with a_z = min(1, p_z/r_z),
    Σ_z r_z a_z + Σ_y res_y hit_y, hit_y = Σ_z (1 − a_z) P(y ∈ X, z selected), where for y ranked after z
    P(y ∈ X, z selected) = r_z − [(upto_z − q_y)^k − (below_z − q_y)^k] (r_z when y = z, 0 when y ranks first).
    Expanding the bracket in powers of q_y, the r_z terms cancel: hit_y = −Σ_{j=1}^{k-1} C(k, j) (−q_y)^j
    S_{k−j}(y) + [y = z] term, S_m(y) = Σ_{z ranked before y} (1 − a_z)(upto_z^m − below_z^m), prefix sums in rank
    order (each term's size is at most C(k, j) q_y^j, so rounding stays below 2^k·eps)."""
    key, below = weights_below(p, q)
    upto = below + q
    r = argmax_marginal(p, q, k)
    a = np.where(p >= r, 1.0, p / np.where(r > 0, r, 1.0))
    first = float(np.sum(r * a))
    res = residual(p, r)
    c = np.where((r > 0) & (a < 1), 1.0 - a, 0.0)                  # weight of a rejected selection of z
    if not res.any() or not c.any():
        return first
    order = np.lexsort((np.arange(len(q)), -key))                   # best first (largest weight, smaller id)
    hit = c * r                                                     # y = z: selected, rejected, y ∈ X
    qy = q[order]
    for j in range(1, k):
        m = k - j
        diff = q * sum(upto ** l * below ** (m - 1 - l) for l in range(m))       # upto^m − below^m, positive terms
        before = np.concatenate([[0.0], np.cumsum((c * diff)[order])[:-1]])     # Σ over z ranked before y
        hit[order] -= comb(k, j) * (-qy) ** j * before
    return first + float(np.sum(res * np.maximum(hit, 0.0)))
