"""Exact membership acceptance P(Y ∈ X) of each multi-draft verifier rule as a function of (p, q, k), float64.

Closed forms (transport/THEORY.md §3): RRS (iid) 1 - Π τ_i; RRS without replacement for k_eff <= 2 in O(V log V);
K-SEQ at ρ*; SpecHub; greedy; the coupled rules (§3.11, `transport.exact.coupled`). RRS without replacement with
k_eff >= 3 and the coupled list rule with k >= 2 are exact by enumeration (small vocabularies only).
"""
from __future__ import annotations

import numpy as np

from specjax.verify.names import COUPLED_RULES
from transport import laws
from transport.exact import coupled, dispatch, importance, kernels
from transport.optimal.reference import leave_one_out, prefix_sums, suffix_sums
from transport.validate import as_float64_rows, check_draft_law, check_pair

VERIFIERS = dispatch.RULES + dispatch.TWO_STEP_RULES + COUPLED_RULES
MAX_ENUMERATION = 200_000   # tuples; beyond this rrs_without_replacement with k >= 3 is refused


def rrs_iid_acceptance(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """1 - Π_i τ_i with τ_i = TV(p_i, q), p_{i+1} = norm((p_i - q)_+) (p, q `[V]`)."""
    pi, reject = p, 1.0
    for _ in range(k):
        tau = np.maximum(pi - q, 0.0).sum()
        reject *= tau
        if tau == 0:
            break
        pi = kernels.residual(pi, q)
    return 1.0 - reject


def rrs_wor2_acceptance(p: np.ndarray, q: np.ndarray) -> float:
    """k = 2 without replacement: Σ min(p,q) + Σ_x (q_x - min(p_x,q_x)) g(1/q(V∖x)), g(c) = Σ_y min(r_y, c q_y),
    r = norm((p - q)_+). g is piecewise linear in c with breakpoints r_y/q_y: one sort, prefix sums, searchsorted."""
    first = np.minimum(p, q).sum()
    r = kernels.residual(p, q)
    pos = q > 0
    b = r[pos] / q[pos]
    o = np.argsort(b)
    b, r_sorted, q_sorted = b[o], r[pos][o], q[pos][o]
    c = 1.0 / leave_one_out(q)[pos]                  # 1/(1 - q_x) without subtraction
    idx = np.searchsorted(b, c, side="right")        # y with b_y <= c contribute r_y, the rest c q_y
    g = prefix_sums(r_sorted)[idx] + c * suffix_sums(q_sorted)[idx]
    return float(first + np.sum((q[pos] - np.minimum(p[pos], q[pos])) * g))


def kseq_acceptance(p: np.ndarray, q: np.ndarray, k: int, rho: float | None = None) -> float:
    """Membership acceptance of K-SEQ with ρ (default ρ*): α_first + (1-β)^k Σ_y p_res(y) [1 - (1 - r(y))^k],
    r = law of a rejected draft. At ρ* it equals the first-stage acceptance 1 - (1-β)^k."""
    rho = kernels.kseq_rho_star(p, q, k) if rho is None else rho
    m = np.minimum(q, p / rho)
    not_beta = np.maximum(q - p / rho, 0.0).sum()
    first = 1.0 - not_beta ** k
    if not_beta == 0:
        return first
    gamma = first / m.sum() if m.sum() > 0 else k
    p_res = kernels.residual(p, gamma * m)
    rejected_law = np.maximum(q - p / rho, 0.0) / not_beta
    return float(first + not_beta ** k * np.sum(p_res * (1.0 - (1.0 - rejected_law) ** k)))


def spechub_acceptance(p: np.ndarray, q: np.ndarray) -> float:
    """min(1, p_a + Σ_{i≠a} min(p_i, q_i/(1-q_a))), a = argmax q (our identity, transport/THEORY.md §3.5)."""
    a = int(laws.greedy_set(q, 1)[0])
    not_hub = np.arange(len(q)) != a
    return float(min(1.0, p[a] + np.minimum(p, q / q[not_hub].sum())[not_hub].sum()))


def greedy_acceptance(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """p(G) + Σ_{x∉G} min(p_x, q_x / q(V∖G)), G = top-(k-1) of q."""
    in_g = np.zeros(len(q), bool)
    in_g[laws.greedy_set(q, k - 1)] = True
    q_rest = np.where(in_g, 0.0, q)
    return float(np.where(in_g, p, np.minimum(p, q_rest / q_rest.sum())).sum())


def _one(p: np.ndarray, q: np.ndarray, k: int, verifier: str) -> float:
    n_supp = laws.support_size(q)
    if verifier == "rrs":
        return rrs_iid_acceptance(p, q, k)
    if verifier == "kseq":
        return kseq_acceptance(p, q, k)
    if verifier == "spechub":
        return spechub_acceptance(p, q)
    if verifier == "greedy":
        return greedy_acceptance(p, q, k)
    if verifier == "khisti":
        return importance.importance_membership(p, q, k)
    if verifier == "khisti_lp":
        return float(np.minimum(p, q).sum()) if k == 1 else dispatch.enumerate_rule("khisti_lp", p, q, 2)[1]
    if verifier in COUPLED_RULES:
        return coupled.disd_acceptance(p, q) if k == 1 else coupled.gumbel_list_acceptance(p, q, k)
    k_eff = min(k, n_supp)
    if k_eff == 1:
        return float(np.minimum(p, q).sum())
    if k_eff == 2:
        return rrs_wor2_acceptance(p, q)
    if float(n_supp) ** k_eff > MAX_ENUMERATION:
        raise ValueError(f"rrs_without_replacement with k = {k_eff} >= 3 is exact by enumeration only: "
                         f"|supp q|^k = {n_supp}^{k_eff} exceeds {MAX_ENUMERATION}")
    return dispatch.enumerate_rule("rrs_without_replacement", p, q, k)[1]


def verifier_acceptance(p, q, k: int, verifier: str = "rrs"):
    """Exact membership acceptance P(Y ∈ X) of `verifier` with its own draft law, for p, q `[V]` or `[N, V]`
    (float32: sum within 1e-4; float64: within 1e-9). verifier: "rrs" (iid drafts, SpecInfer),
    "rrs_without_replacement" (RSD; k_eff = min(k, |supp q|)), "kseq" (iid, ρ*), "spechub" (k = 2),
    "greedy" (Hu et al., |supp q| >= k), "khisti" (Khisti et al.'s two-step rule, largest importance weight
    selected, any k), "khisti_lp" (the two-step rule with the optimal k = 2 selection LP; k <= 2, small V),
    "disd" (one coupled draft, any V) and "gumbel_list" (k coupled drafts; k >= 2 exact for small V only).
    Returns a float or `[N]`. Raises ValueError on bad input."""
    k = check_pair(p, q, k)
    check_draft_law(verifier, VERIFIERS, "verifier")
    p64, q64 = np.atleast_2d(as_float64_rows(p)), np.atleast_2d(as_float64_rows(q))
    n_supp = np.count_nonzero(q64 > 0, axis=1)
    if verifier == "spechub" and (k != 2 or np.any(n_supp < 2)):
        raise ValueError(f"spechub needs k = 2 and |supp q| >= 2 (got k = {k})")
    if verifier == "greedy" and np.any(n_supp < k):
        raise ValueError(f"greedy drafts need |supp q| >= k = {k}")
    if verifier == "disd" and k != 1:
        raise ValueError(f"disd verifies one coupled draft (got k = {k}); gumbel_list is its k-draft version")
    if verifier == "khisti_lp" and (k > 2 or p64.shape[1] > importance.PAIR_LP_MAX_V):
        raise ValueError(f"khisti_lp is the k <= 2 selection LP for V <= {importance.PAIR_LP_MAX_V} "
                         f"(got k = {k}, V = {p64.shape[1]}); use \"khisti\" for larger k or V")
    out = np.array([_one(pp, qq, k, verifier) for pp, qq in zip(p64, q64)])
    return float(out[0]) if np.ndim(p) == 1 else out
