"""Exact laws of the coupled (drafter-invariant) rules, numpy float64 (transport/THEORY.md §3.11).

One exponential race, shared through the PRNG key: E_v ~ Exp(1) i.i.d. over the vocabulary; the drafter's race times
are E_v/q_v, the target's E_v/p_v (Gumbel-max: E = exp(-g) for the Gumbel noise g of `specjax.verify.coupled`).
* DISD (k = 1, Daliri, Musco & Suresh): the draft X = argmin E/q, the target's token Y = argmin E/p; the rule emits Y,
  and the draft is accepted iff X = Y.
* Gumbel list (k drafts): X_1..X_k = the k smallest E/q in increasing order (a without-replacement sample of q, in
  sampling order), Y as above; the slot holding Y is accepted, if any.
* Race with i.i.d. drafts (Kobus & Gündüz's ERSD; the Poisson functional representation of channel simulation): the
  drafter's points are i.i.d. q at Poisson arrival times, the first k are the drafts; the target's token is the first
  arrival of the token Y above (token v's first arrival is at E_v/q_v), accepted iff it is among the first k points.
The rule emits Y, so its output law is p whatever the drafts: what these laws give is how Y and the drafts are coupled.

Closed forms (derivations in THEORY §3.11; zero masses: a token with q = 0 never finishes the drafter's race, one with
p = 0 never wins the target's):
* P(X = Y = v) = 1 / Σ_j max(q_j/q_v, p_j/p_v): given E_v = e every other E_j must exceed e·max(q_j/q_v, p_j/p_v).
* P(X = a, Y = b), a ≠ b: with E_a = s, E_b = r·s the constraints are linear in s, so the law is
  ∫ dr / L(r)², r from q_b/q_a to p_b/p_a, L(r) = 1 + r + Σ_{j∉{a,b}} max(q_j/q_a, r·p_j/p_b) — piecewise linear in
  r, so the integral is a finite sum of (r2 − r1) / (L(r1) L(r2)) (every term positive).
* DISD acceptance Σ_v p_v q_v / (p_v Q(ρ < ρ_v) + q_v P(ρ ≥ ρ_v)), ρ = p/q (one sort): the diagonal above with the
  tokens split by ratio.
* Race acceptance Σ_v p_v [1 − (1 − s_v)^k], s_v = q_v / (p_v Q(ρ < ρ_v) + q_v P(ρ ≥ ρ_v)): given Y = v and E_v = e,
  each other token j has lost the target's race (E_j > e p_j/p_v) and, by memorylessness, puts Poisson(e (q_j/q_v −
  p_j/p_v)_+) points before v's first arrival; integrated against the density e^{−e/p_v} of (Y = v, E_v = e) the count
  is geometric with success probability s_v (k = 1: the DISD diagonal).
* P(Y = y, y finishes m-th in the drafter's race): given E_y = e each other token j independently loses the target's
  race (E_j > e a_j, a_j = p_j/p_y) and beats y in the drafter's (E_j < e b_j, b_j = q_j/q_y) with probability
  (e^{-e a_j} − e^{-e b_j})_+, or loses both with e^{-e max(a_j, b_j)}; the coefficient of z^m of the product,
  integrated against e^{-e}, expands into Σ ± 1/(1 + rates) over 3^n terms (n = tokens that can beat y): exact
  rational arithmetic in float64, with a rounding error below (terms)·2^-52 (small V only: MAX_TERMS).
"""
from __future__ import annotations

import numpy as np

from transport.optimal.reference import prefix_sums, suffix_sums
from transport.validate import as_float64_rows, check_pair

MAX_TERMS = 3 ** 12            # inclusion–exclusion terms per token (n <= 12 possible beaters: V <= 13)


def _pair(p, q) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies of one target/draft pair `[V]` (ValueError otherwise)."""
    check_pair(p, q, 1, batch=False)
    return as_float64_rows(p), as_float64_rows(q)


def disd_diagonal(p, q) -> np.ndarray:
    """P(X = Y = v) `[V]` for the single coupled draft: 1 / Σ_j max(q_j/q_v, p_j/p_v) (0 where p_v q_v = 0)."""
    p, q = _pair(p, q)
    out = np.zeros(len(p))
    for v in np.flatnonzero((p > 0) & (q > 0)):
        out[v] = 1.0 / np.sum(np.maximum(q / q[v], p / p[v]))
    return out


def _off_diagonal(p: np.ndarray, q: np.ndarray, a: int, b: int) -> float:
    """P(X = a, Y = b), a ≠ b, q_a > 0, p_b > 0: ∫ dr / L(r)² over r in (q_b/q_a, p_b/p_a), L piecewise linear."""
    lo = q[b] / q[a]
    hi = p[b] / p[a] if p[a] > 0 else np.inf
    if lo >= hi:                                     # a cannot win the drafter's race while b wins the target's
        return 0.0
    others = np.ones(len(p), bool)
    others[[a, b]] = False
    qo, po = q[others] / q[a], p[others] / p[b]

    def lin(r):                                      # L(r), evaluated directly at each breakpoint
        return 1.0 + r + np.sum(np.maximum(qo, r * po))

    with np.errstate(divide="ignore", invalid="ignore"):
        kinks = np.where((qo > 0) & (po > 0), qo / po, np.nan)   # where q_j/q_a = r p_j/p_b
    kinks = kinks[(kinks > lo) & (kinks < hi)]
    points = np.concatenate([[lo], np.sort(kinks)] + ([[hi]] if np.isfinite(hi) else []))
    values = np.array([lin(r) for r in points])
    total = float(np.sum(np.diff(points) / (values[:-1] * values[1:])))
    if not np.isfinite(hi):                          # last piece to infinity: slope 1 + Σ_j p_j/p_b
        total += 1.0 / ((1.0 + np.sum(po)) * values[-1])
    return total


def disd_joint(p, q) -> np.ndarray:
    """The joint law `[V, V]` of (draft X, target token Y) of the single coupled draft: out[a, b] = P(X = a, Y = b).
    Rows sum to q, columns to p; the diagonal is `disd_diagonal`. Cost O(V³): small V."""
    p, q = _pair(p, q)
    out = np.diag(disd_diagonal(p, q))
    for a in np.flatnonzero(q > 0):
        for b in np.flatnonzero(p > 0):
            if a != b:
                out[a, b] = _off_diagonal(p, q, int(a), int(b))
    return out


def _race_shares(p, q) -> tuple[np.ndarray, np.ndarray]:
    """(p, s) `[N, V]`, tokens sorted by ρ = p/q, with s_v = q_v / (p_v Q(ρ < ρ_v) + q_v P(ρ ≥ ρ_v)) in [0, 1]
    (0 where p_v q_v = 0): given that the target's race picks v, the chance that v is the drafter's next arrival."""
    p2, q2 = np.atleast_2d(as_float64_rows(p)), np.atleast_2d(as_float64_rows(q))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(q2 > 0, p2 / np.where(q2 > 0, q2, 1.0), np.inf)
    order = np.argsort(rho, axis=1, kind="stable")    # ties: either side gives q_j/q_v = p_j/p_v
    ps, qs = np.take_along_axis(p2, order, 1), np.take_along_axis(q2, order, 1)
    den = ps * prefix_sums(qs)[:, :-1] + qs * suffix_sums(ps)[:, :-1]   # p_v Q(before v) + q_v P(from v on)
    live = (ps > 0) & (qs > 0)
    return ps, np.clip(np.where(live, qs / np.where(live, den, 1.0), 0.0), 0.0, 1.0)


def disd_acceptance(p, q):
    """P(X = Y) of the single coupled draft for p, q `[V]` or `[N, V]` -> float or `[N]`, in O(V log V):
    Σ_v p_v q_v / (p_v Q(ρ < ρ_v) + q_v P(ρ ≥ ρ_v)), ρ = p/q (q = 0 -> ρ = +inf)."""
    check_pair(p, q, 1)
    ps, s = _race_shares(p, q)
    out = np.sum(ps * s, axis=1)
    return float(out[0]) if np.ndim(p) == 1 else out


def race_acceptance(p, q, k: int):
    """Acceptance of the exponential race with k i.i.d. drafts (THEORY §3.12; Kobus & Gündüz's ERSD, the Poisson
    functional representation): the drafter's points X_1, X_2, … are i.i.d. q at the arrival times T_1 < T_2 < … of a
    rate-1 Poisson process, the target's token is X_K at K = argmin_i T_i q(X_i)/p(X_i) (a sample of p), and the
    first k points are the drafts. P(K <= k) = Σ_v p_v [1 − (1 − s_v)^k] with s_v of `_race_shares`, O(V log V);
    p, q `[V]` or `[N, V]` -> float or `[N]`. k = 1 is DISD."""
    k = check_pair(p, q, k)
    ps, s = _race_shares(p, q)
    with np.errstate(divide="ignore"):
        hit = -np.expm1(k * np.log1p(-s))             # 1 − (1 − s)^k without cancellation
    out = np.sum(ps * hit, axis=1)
    return float(out[0]) if np.ndim(p) == 1 else out


def _rank_terms(a: np.ndarray, b: np.ndarray, max_rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand ∫ e^{-e} Π_j (e^{-e c_j} + z (e^{-e a_j} − e^{-e b_j})_+) de into (rate sums, z-degree, sign) `[T]`;
    the coefficient of z^m is Σ_{degree = m} sign / (1 + rate). Degrees above max_rank are dropped as they appear."""
    rates, deg, sign = np.zeros(1), np.zeros(1, np.int64), np.ones(1)
    for aj, bj in zip(a, b):
        if bj > aj:                                  # j can finish the drafter's race before y
            rates = np.concatenate([rates + bj, rates + aj, rates + bj])
            deg = np.concatenate([deg, deg + 1, deg + 1])
            sign = np.concatenate([sign, sign, -sign])
            keep = deg <= max_rank
            rates, deg, sign = rates[keep], deg[keep], sign[keep]
        else:
            rates = rates + aj
    return rates, deg, sign


def race_rank_law(p, q, max_rank: int | None = None) -> np.ndarray:
    """out `[R, V]`, out[m, y] = P(Y = y and exactly m tokens finish the drafter's race before y), for
    m < R = max_rank (default V). A token with q_y = 0 never finishes (all its mass is left out: add p_y).
    Exact by inclusion–exclusion (module doc); small V only (ValueError beyond MAX_TERMS terms)."""
    p, q = _pair(p, q)
    v = len(p)
    r = v if max_rank is None else int(max_rank)
    out = np.zeros((r, v))
    for y in np.flatnonzero((p > 0) & (q > 0)):
        rest = np.arange(v) != y
        a, b = p[rest] / p[y], q[rest] / q[y]
        if 3.0 ** np.count_nonzero(b > a) > MAX_TERMS:
            raise ValueError(f"race_rank_law is exact by inclusion–exclusion over 3^n terms, n = "
                             f"{np.count_nonzero(b > a)} tokens can beat token {y}: more than {MAX_TERMS}")
        rates, deg, sign = _rank_terms(a, b, r - 1)
        out[:, y] = np.bincount(deg, weights=sign / (1.0 + rates), minlength=r)[:r]
    return out


def gumbel_list_law(p, q, k: int) -> np.ndarray:
    """Joint law `[k+1, V]` of (slot, token) of the Gumbel list rule with k coupled drafts (the `transport.exact
    .kernels` convention): out[j+1, y] = P(the target's token is y and it is draft j), out[0, y] = P(the target's token
    is y and no draft holds it). Columns sum to p; k = 1 is DISD (out[1] = `disd_diagonal`)."""
    check_pair(p, q, k, batch=False)
    p, q = _pair(p, q)
    ranks = race_rank_law(p, q)
    out = np.zeros((k + 1, len(p)))
    out[1:min(k, len(p)) + 1] = ranks[:k]
    out[0] = ranks[k:].sum(0) + np.where(q > 0, 0.0, p)    # later finishers, and tokens the drafter never proposes
    return out


def gumbel_list_acceptance(p, q, k: int) -> float:
    """P(the target's token is one of the k coupled drafts), exact (small V; k = 1: `disd_acceptance`)."""
    return float(gumbel_list_law(p, q, k)[1:].sum())
