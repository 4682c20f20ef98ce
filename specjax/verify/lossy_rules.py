"""The formulas of the lossy chain rules, written once for numpy (the exact audit in transport, float64) and
jax.numpy (the decode loop, `specjax.verify.lossy`): pass `xp`. Imports no jax, so the theory package may use it.

Every rule keeps token verification's skeleton — draft i passes with probability a_i, the round stops at the first
draft that does not, and one token comes from a fallback law — and changes a_i, the fallback, or (FLy) which drafts
count as passed (transport/THEORY.md §5.6):

    typical[:EPS,DELTA]  Medusa's typical acceptance: a_i = 1[p(x_i) > min(EPS, DELTA·exp(−H(p_i)))]; fallback p_n
                         (defaults 0.09, 0.3: Medusa's posterior_threshold and posterior_alpha)
    fuzzy[:T]            fuzzy speculative decoding (Holsman et al.): pass outright where JS(p_i, q_i) ≤ T (nats),
                         else the token rule min(1, p/q); fallback the residual norm((p − q)_+) (default T = 0.1)
    ears[:BETA]          uncertainty-relaxed rejection (EARS, Sun et al.): a_i = min(1, p/q + BETA·(1 − max p_i));
                         fallback the residual (default BETA = 0.2)
    topm[:M]             a judge-style lenient rule: pass a draft among the target's M likeliest tokens (p > 0);
                         fallback p_n (default M = 2)
    fly[:W,THETA]        FLy (Li et al.) over the token rule: a draft i that failed still passes when the next W − 1
                         drafts passed and the target is unsure at i (entropy of its top-3 probabilities ≥ THETA);
                         fallback the residual (defaults W = 3, THETA = 0.3; the paper uses W = 6 over longer drafts
                         and, at temperature > 0, a lossy base rule of its own — the token rule here isolates FLy's
                         loosening)

At temperature 0 (one-hot laws) each of these passes exactly the drafts equal to the target's argmax (FLy with
THETA > 0: a one-hot law has entropy 0, so THETA = 0 lets mismatches through).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from specjax.verify.names import LossyRule

FALLBACK_TARGET = ("typical", "topm")        # these emit from p_n after a failed draft; the others the residual


def entropy(p: Any, xp=np) -> Any:
    """Shannon entropy (nats) along the last axis, 0 log 0 = 0."""
    return -xp.sum(xp.where(p > 0, p * xp.log(xp.where(p > 0, p, 1.0)), 0.0), axis=-1)


def js_divergence(p: Any, q: Any, xp=np) -> Any:
    """Jensen–Shannon divergence (nats) along the last axis: H((p + q)/2) − (H(p) + H(q))/2."""
    return entropy(0.5 * (p + q), xp) - 0.5 * (entropy(p, xp) + entropy(q, xp))


def pass_probabilities(rule: LossyRule, p: Any, q: Any, xp=np) -> Any:
    """a `[..., V]`: the probability that a draft of each token passes on its own (FLy: its token-rule base), from
    the target's law p `[..., V]` and the draft's q `[..., V]` at one position."""
    token = xp.where(q <= p, 1.0, p / xp.where(q > 0, q, 1.0))                  # min(1, p/q) without 0/0
    if rule.name == "typical":
        eps, delta = rule.params
        return xp.where(p > xp.minimum(eps, delta * xp.exp(-entropy(p, xp)))[..., None], 1.0, 0.0)
    if rule.name == "fuzzy":
        return xp.where((js_divergence(p, q, xp) <= rule.params[0])[..., None], 1.0, token)
    if rule.name == "ears":
        return xp.minimum(1.0, token + rule.params[0] * (1.0 - xp.max(p, axis=-1, keepdims=True)))
    if rule.name == "topm":
        m = min(int(rule.params[0]), p.shape[-1])
        kth = -xp.partition(-p, m - 1, axis=-1)[..., m - 1]        # the M-th largest (a partition, not a V log V sort)
        return xp.where((p >= kth[..., None]) & (p > 0), 1.0, 0.0)
    if rule.name == "fly":
        return token
    raise ValueError(f"{rule.name!r} is not a rule of this form")


def pass_probability(rule: LossyRule, p: Any, q: Any, x: Any, xp=np) -> Any:
    """a_i `[..., K]`: `pass_probabilities` at the drafted tokens x `[..., K]` (int), with p and q `[..., K, V]`."""
    return xp.take_along_axis(pass_probabilities(rule, p, q, xp), x[..., None], axis=-1)[..., 0]


def one_step_law(rule: LossyRule, p: Any, q: Any, xp=np) -> Any:
    """The law `[..., V]` of the token a one-draft round emits first: the draft x ~ q when it passes, else a token
    of the fallback law — q·a + (1 − Σ q·a)·fallback. The per-token distortion of a rule without look-ahead (FLy
    with one draft is the token rule: its window needs later drafts)."""
    a = pass_probabilities(rule, p, q, xp)
    kept = q * a
    if rule.name in FALLBACK_TARGET:
        fallback = p
    else:
        res = xp.maximum(p - q, 0.0)
        mass = xp.sum(res, axis=-1, keepdims=True)
        fallback = xp.where(mass > 0, res / xp.where(mass > 0, mass, 1.0), p)
    return kept + (1.0 - xp.sum(kept, axis=-1, keepdims=True)) * fallback


def loosen(rule: LossyRule, passed: Any, p: Any, num_drafted: Any, xp=np) -> Any:
    """Which drafts count as passed `[..., K]` (bool) given those that passed on their own `passed` `[..., K]`, the
    target's laws p `[..., K, V]` and num_drafted `[...]` (drafts beyond it never pass). Only FLy loosens: a draft
    i that failed passes when drafts i+1..i+W−1 all passed on their own (inside the drafted block) and the entropy
    of the target's top-3 probabilities at i is >= THETA."""
    k = passed.shape[-1]
    index = xp.arange(k)
    drafted = index < xp.asarray(num_drafted)[..., None]
    passed = passed & drafted
    if rule.name != "fly":
        return passed
    window, theta = int(rule.params[0]), rule.params[1]
    follow = xp.ones_like(passed)
    for j in range(1, window):                    # static W: unrolled
        follow = follow & xp.concatenate([passed[..., j:], xp.zeros_like(passed[..., :j])], axis=-1)
    fits = index + window <= xp.asarray(num_drafted)[..., None]
    top = min(3, p.shape[-1])
    unsure = entropy(-xp.partition(-p, top - 1, axis=-1)[..., :top], xp) >= theta   # the 3 largest, in any order
    return passed | (~passed & follow & fits & unsure)
