"""Exact numpy float64 kernels of the one-step verifier rules (transport/THEORY.md §3): for one draft tuple, the joint
law of (slot, token).

Each `kernel_*` returns out `[k+1, V]`, out[j+1, y] = P(slot j accepted with token y), out[0, y] = P(no slot accepted,
correction y). These mirror `specjax.verify.multi_draft` step by step (same slot semantics) and are the reference for
exact enumeration (losslessness, acceptance) and for Monte Carlo checks of the jax rules. Khisti's two-step rule builds
on `residual` / `place_law` here (transport.exact.importance); the by-name dispatch over all rules is
transport.exact.dispatch.
"""
from __future__ import annotations

import numpy as np

from transport import laws


def residual(p: np.ndarray, sub: np.ndarray) -> np.ndarray:
    """norm((p - sub)_+) `[V]`; zeros when there is no residual mass (that branch then has probability 0)."""
    res = np.maximum(p - sub, 0.0)
    mass = res.sum()
    return res / mass if mass > 0 else np.zeros_like(p)


def _ratio(num: float, den: float) -> float:
    """min(1, num/den) with den == 0 meaning certain acceptance (mirrors `u * den < num`)."""
    return 1.0 if num >= den else num / den


def place_law(out: np.ndarray, law: np.ndarray, weight: float, drafts: np.ndarray, to_slots: bool) -> None:
    """Add weight·law to the correction row; tokens landing on a draft go to its first slot if `to_slots` (a
    negative id marks a padded slot, never credited)."""
    law = weight * law
    if to_slots:
        for j, x in enumerate(drafts):
            if x >= 0 and law[x] > 0:
                out[j + 1, x] += law[x]
                law[x] = 0.0
    out[0] += law


def kernel_rrs(p, q, drafts, without_replacement: bool) -> np.ndarray:
    out = np.zeros((len(drafts) + 1, len(p)))
    pi, qi, reach = p.copy(), q.copy(), 1.0
    for j, x in enumerate(drafts):
        qn = qi / qi.sum() if without_replacement else qi
        acc = _ratio(pi[x], qn[x])
        out[j + 1, x] += reach * acc
        reach *= 1.0 - acc
        pi = residual(pi, qn)
        if without_replacement:
            qi[x] = 0.0
    out[0] += reach * pi
    return out


def kseq_rho_star(p: np.ndarray, q: np.ndarray, k: int) -> float:
    """ρ* in float64 (bisection to 1e-15 relative, upper end returned so the residual is non-negative)."""
    def h(rho):
        not_beta = np.maximum(q - p / rho, 0.0).sum()
        return rho * (1.0 - not_beta) - (1.0 - not_beta ** k)
    if h(1.0) >= 0:
        return 1.0
    lo, hi = 1.0, float(k)
    while hi - lo > 1e-15 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if h(mid) >= 0 else (mid, hi)
    return hi


def kernel_kseq(p, q, drafts, rho: float | None = None) -> np.ndarray:
    k = len(drafts)
    rho = kseq_rho_star(p, q, k) if rho is None else rho
    out = np.zeros((k + 1, len(p)))
    reach = 1.0
    for j, x in enumerate(drafts):
        acc = _ratio(p[x], rho * q[x])
        out[j + 1, x] += reach * acc
        reach *= 1.0 - acc
    m = np.minimum(q, p / rho)
    beta = m.sum()
    gamma = (1.0 - np.maximum(q - p / rho, 0.0).sum() ** k) / beta if beta > 0 else k
    out[0] += reach * residual(p, gamma * m)
    return out


def spechub_second_law(q: np.ndarray) -> np.ndarray:
    """Law `[V]` of SpecHub's second draft alone (hub a): r_a = q(V∖a), r_i = q_a q_i / q(V∖a) off the hub."""
    a = int(laws.greedy_set(q, 1)[0])
    hub = np.arange(len(q)) == a
    not_a = laws.complement_mass(q, hub)
    return np.where(hub, not_a, q[a] * q / not_a if not_a > 0 else 0.0)


def kernel_spechub(p, q, drafts, valid=None) -> np.ndarray:
    """Positional slots (slot 0: x1 ~ q, slot 1: x2); `valid` `[k]` masks slots (default: all valid). One valid
    slot is one draft of its own law (x1: q; x2: `spechub_second_law`), verified by the single-draft rule; none:
    y ~ p."""
    drafts = np.asarray(drafts, np.int64)
    valid = np.ones(len(drafts), bool) if valid is None else np.asarray(valid, bool)
    if len(drafts) == 2 and valid.tolist() == [False, True]:
        return kernel_padded(lambda x: kernel_rrs(p, spechub_second_law(q), x, False), drafts, valid)
    if len(drafts) < 2 or not valid.all():
        return kernel_padded(lambda x: kernel_rrs(p, q, x, False), drafts, valid)
    a = int(laws.greedy_set(q, 1)[0])
    not_hub = np.arange(len(p)) != a
    q_not_a = q[not_hub].sum()
    w = np.where(not_hub, spechub_second_law(q), 0.0)
    p1 = np.where(not_hub, np.maximum(p - q, 0.0), 0.0)
    big_u = np.where(not_hub, np.maximum(q - p, 0.0), 0.0).sum()
    big_w = np.where(not_hub, np.maximum(w - p1, 0.0), 0.0).sum()
    pa1 = max(p[a] - big_w, 0.0)
    accepted = np.where(not_hub, np.minimum(p, q / q_not_a), min(p[a], big_u + big_w))
    hub_first = drafts[0] == a
    i = drafts[1] if hub_first else drafts[0]
    slot_i = 1 if hub_first else 0
    first = _ratio(p1[i], w[i]) if hub_first else _ratio(p[i], q[i])
    second = _ratio(p[a], big_w) if hub_first else _ratio(pa1, big_u)
    out = np.zeros((3, len(p)))
    out[slot_i + 1, i] += first
    out[2 - slot_i, a] += (1.0 - first) * second
    out[0] += (1.0 - first) * (1.0 - second) * residual(p, accepted)
    return out


def kernel_greedy(p, q, drafts, valid=None) -> np.ndarray:
    """Positional slots (0..k-2: G = top-(k-1) of q, read from q; k-1: the draw from q' = q(·|V∖G)); `valid` `[k]`
    masks slots (default: all valid). A padded G slot is never credited; a padded draw leaves point-mass
    verification of the valid slots (y ~ p)."""
    drafts = np.asarray(drafts, np.int64)
    k = len(drafts)
    if k == 0:                          # no draft: y ~ p
        return kernel_rrs(p, q, drafts, False)
    valid = np.ones(k, bool) if valid is None else np.asarray(valid, bool)
    in_g = np.zeros(len(p), bool)
    in_g[laws.greedy_set(q, k - 1)] = True
    q_rest = np.where(in_g, 0.0, q)
    rest = q_rest.sum()
    x = drafts[-1]
    out = np.zeros((k + 1, len(p)))
    acc = _ratio(p[x] * rest, q[x]) if valid[-1] else 0.0
    out[k, x] += acc
    q_last = q_rest / rest if valid[-1] and rest > 0 else np.zeros_like(q)
    place_law(out[:-1], residual(p, q_last), 1.0 - acc, np.where(valid[:-1], drafts[:-1], -1), to_slots=True)
    return out


def kernel_lp(plan, drafts) -> np.ndarray:
    """Kernel of the LP-plan verifier (`transport.optimal.lp.LPPlan`) for the tuple `drafts`."""
    drafts = np.asarray(drafts, np.int64)
    member = np.zeros(plan.sets.shape[1], bool)
    member[drafts] = True
    out = np.zeros((len(drafts) + 1, plan.sets.shape[1]))
    if len(drafts) == 0:                # no draft: y ~ p = Σ_S π(S, ·) + (1 - α*) · residual
        out[0] = plan.plan.sum(0) + (1.0 - plan.value) * plan.residual
        return out
    row = int(np.flatnonzero(np.all(plan.sets == member, axis=1))[0])
    place_law(out, plan.output_law(row), 1.0, drafts, to_slots=True)
    return out


def kernel_point_mass(p, drafts) -> np.ndarray:
    """Kernel of the point-mass rule for deterministic drafts: y ~ p, accepted at the first slot holding y."""
    drafts = np.asarray(drafts, np.int64)
    out = np.zeros((len(drafts) + 1, len(p)))
    place_law(out, np.asarray(p, np.float64), 1.0, drafts, to_slots=True)
    return out


def kernel_padded(kernel_of, drafts, valid) -> np.ndarray:
    """The padding contract: the kernel `[k+1, V]` of a call whose slots `valid` `[k]` mark the drafts is
    `kernel_of(valid drafts in slot order)` with each row moved back to its slot (padded slots: all-zero rows)."""
    drafts, valid = np.asarray(drafts, np.int64), np.asarray(valid, bool)
    slots = np.flatnonzero(valid)
    inner = kernel_of(drafts[slots])
    out = np.zeros((len(drafts) + 1, inner.shape[1]))
    out[0] = inner[0]
    out[slots + 1] = inner[1:]
    return out
