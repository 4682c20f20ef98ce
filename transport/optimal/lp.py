"""The optimal-transport LP of multi-draft acceptance over draft *sets* (transport/THEORY.md §1.2), solved by HiGHS
in float64.

max Σ π(S,y)  s.t.  Σ_{y∈S} π(S,y) ≤ Q(S),  Σ_{S∋y} π(S,y) ≤ p(y),  π ≥ 0.
Its optimum is α* for the draft law; its plan, completed by the global residual, is a lossless optimal verifier.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.sparse

from transport import laws
from transport.validate import check_draft_law, check_pair, check_table

# Tight HiGHS tolerances: the defaults (1e-7) are far looser than the 1e-9 agreement the tests demand.
_HIGHS_OPTIONS = {"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10}


@dataclass(frozen=True)
class LPPlan:
    """Optimal reduced plan. sets `[M, V]` bool, set_probs `[M]`, plan `[M, V]` (π(S,y), zero off S),
    residual `[V]` = norm((p - Σ_S π(S,·))_+) (the correction law), value = α*."""

    value: float
    sets: np.ndarray
    set_probs: np.ndarray
    plan: np.ndarray
    residual: np.ndarray

    def accept_probs(self) -> np.ndarray:
        """π(y | S) = π(S,y) / Q(S): `[M, V]`, the verifier's per-set acceptance law."""
        return self.plan / np.where(self.set_probs > 0, self.set_probs, 1.0)[:, None]

    def output_law(self, set_index: int) -> np.ndarray:
        """Exact output law `[V]` of the plan verifier given draft set `set_index`."""
        acc = self.accept_probs()[set_index]
        return acc + max(0.0, 1.0 - acc.sum()) * self.residual


def solve_set_lp(p: np.ndarray, sets: np.ndarray, set_probs: np.ndarray) -> LPPlan:
    """Solve the reduced LP for target p `[V]` and set law (sets `[M, V]` bool, set_probs `[M]`) with HiGHS."""
    p = np.asarray(p, np.float64)
    rows, cols = np.nonzero(sets)                      # one variable per (S, y ∈ S)
    n = len(rows)
    m = len(sets)
    a_ub = scipy.sparse.vstack([
        scipy.sparse.csr_matrix((np.ones(n), (rows, np.arange(n))), shape=(m, n)),
        scipy.sparse.csr_matrix((np.ones(n), (cols, np.arange(n))), shape=(len(p), n)),
    ]).tocsc()
    b_ub = np.concatenate([set_probs, p])
    res = scipy.optimize.linprog(-np.ones(n), A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs",
                                 options=_HIGHS_OPTIONS)
    if res.status != 0:
        raise RuntimeError(f"HiGHS failed on the reduced LP: {res.message}")
    plan = np.zeros(sets.shape)
    plan[rows, cols] = np.maximum(res.x, 0.0)
    accepted = plan.sum(axis=0)
    residual = np.maximum(p - accepted, 0.0)
    mass = residual.sum()
    residual = residual / mass if mass > 0 else np.zeros_like(p)
    return LPPlan(value=float(-res.fun), sets=sets, set_probs=np.asarray(set_probs, np.float64), plan=plan,
                  residual=residual)


def lp_optimum(p: np.ndarray, q: np.ndarray, k: int, drafts: str = "iid") -> LPPlan:
    """Optimal plan for target p `[V]` and the draft law `drafts` of q `[V]` with k drafts (small V only)."""
    k = check_pair(p, q, k, batch=False)
    check_draft_law(drafts, laws.DRAFT_LAWS)
    p64, q64 = np.asarray(p, np.float64), np.asarray(q, np.float64)
    tuples, probs = laws.tuple_law(q64, k, drafts)
    return solve_set_lp(p64, *laws.set_law(tuples, probs, len(p64)))


def lp_optimum_table(p: np.ndarray, tuples: np.ndarray, probs: np.ndarray) -> LPPlan:
    """Optimal plan for an arbitrary tuple law: tuples `[T, k]` int, probs `[T]` (any joint law, e.g. independent
    non-identical drafts from `laws.independent_tuple_law`)."""
    p = np.asarray(p, np.float64)
    check_table(p, tuples, probs)
    return solve_set_lp(p, *laws.set_law(np.asarray(tuples), np.asarray(probs, np.float64), len(p)))
