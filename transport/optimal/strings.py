"""The optimum across tokenizations (transport/THEORY.md §5.7): a lossless verifier that accepts a prefix of the
drafted string X ~ Q emits Y ~ P and accepts at most LCP(X, Y) characters (longest common prefix), so on an
m-character horizon E[accepted characters] ≤ max over couplings π of Q and P of E_π[LCP(X, Y)] — an optimal-transport
LP (HiGHS, float64). LCP is a tree cost (the prefix tree), so the optimum has a closed form,
Σ_{non-empty strings v} min(P(v·), Q(v·)) with P(v·) the mass of the strings that start with v (`prefix_overlap`).

Laws over strings are dicts {string: probability}; the strings may have different lengths (a short draft).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse


_HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


def lcp(a: str, b: str) -> int:
    """Length of the longest common prefix of a and b."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _checked(law: dict[str, float], who: str) -> dict[str, float]:
    probs = np.array(list(law.values()), np.float64)
    if not law or not np.all(np.isfinite(probs)) or np.any(probs < 0) or abs(probs.sum() - 1.0) > 1e-9:
        raise ValueError(f"{who} must be a law over strings (finite, >= 0, sum 1 within 1e-9)")
    return {s: float(v) for s, v in law.items() if v > 0}


def truncate(law: dict[str, float], m: int) -> dict[str, float]:
    """The law of the first m characters."""
    out: dict[str, float] = {}
    for s, prob in law.items():
        out[s[:m]] = out.get(s[:m], 0.0) + prob
    return out


@dataclass(frozen=True)
class LcpCoupling:
    """An optimal coupling of a draft law Q (rows) and a target law P (columns) for E[LCP]."""
    value: float
    """max_π E_π[LCP(X, Y)]."""
    plan: np.ndarray
    """`[S_Q, S_P]` π(x, y), rows summing to Q, columns to P."""
    drafts: tuple[str, ...]
    """The row strings (support of Q)."""
    targets: tuple[str, ...]
    """The column strings (support of P)."""


def optimal_lcp(p_law: dict[str, float], q_law: dict[str, float]) -> LcpCoupling:
    """Solve max_π E_π[LCP(X, Y)] over couplings of X ~ q_law and Y ~ p_law by HiGHS (|supports| ≲ 100 each)."""
    p_law, q_law = _checked(p_law, "p_law"), _checked(q_law, "q_law")
    xs, ys = tuple(sorted(q_law)), tuple(sorted(p_law))
    cost = np.array([[lcp(x, y) for y in ys] for x in xs], np.float64)
    rows = scipy.sparse.kron(scipy.sparse.eye(len(xs)), np.ones((1, len(ys))))      # Σ_y π(x, y) = Q(x)
    cols = scipy.sparse.kron(np.ones((1, len(xs))), scipy.sparse.eye(len(ys)))      # Σ_x π(x, y) = P(y)
    res = scipy.optimize.linprog(-cost.ravel(), A_eq=scipy.sparse.vstack([rows, cols]).tocsc(),
                                 b_eq=np.array([q_law[x] for x in xs] + [p_law[y] for y in ys]),
                                 bounds=(0, None), method="highs", options=_HIGHS_OPTIONS)
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the LCP transport LP: {res.message}")
    plan = np.maximum(res.x, 0.0).reshape(len(xs), len(ys))
    return LcpCoupling(float((cost * plan).sum()), plan, xs, ys)


def prefix_overlap(p_law: dict[str, float], q_law: dict[str, float]) -> float:
    """Closed form of the LP: Σ_{v non-empty} min(P(v·), Q(v·)) = Σ_j (1 − TV of the j-character prefixes)."""
    p_law, q_law = _checked(p_law, "p_law"), _checked(q_law, "q_law")
    mass: dict[str, list[float]] = {}
    for i, law in enumerate((p_law, q_law)):
        for s, prob in law.items():
            for j in range(1, len(s) + 1):
                mass.setdefault(s[:j], [0.0, 0.0])[i] += prob
    return float(sum(min(a, b) for a, b in mass.values()))


def full_match_bound(p_law: dict[str, float], q_law: dict[str, float]) -> float:
    """Σ_s min(P(s), Q(s)): the most P(every drafted character accepted) can be when X ~ Q, Y ~ P."""
    p_law, q_law = _checked(p_law, "p_law"), _checked(q_law, "q_law")
    return float(sum(min(prob, q_law.get(s, 0.0)) for s, prob in p_law.items()))
