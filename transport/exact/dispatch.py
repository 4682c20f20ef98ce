"""Every verifier rule by name: `kernel(rule, p, q, drafts) -> out [k+1, V]` (the joint law of (slot, token) for one
draft tuple, out[j+1, y] = P(slot j accepted with token y), out[0, y] = P(no slot accepted, correction y)) and
`enumerate_rule`, exact enumeration over the rule's draft law.

This module sits above the one-step kernels (transport.exact.kernels) and Khisti's two-step rule
(transport.exact.importance), which builds on them: the dispatch needs both, so it lives in neither.
"""
from __future__ import annotations

import numpy as np

from specjax.verify.names import POSITIONAL_RULES, RULE_LAWS
from transport import laws
from transport.exact import importance
from transport.exact.kernels import (kernel_greedy, kernel_kseq, kernel_padded, kernel_point_mass, kernel_rrs,
                                     kernel_spechub)

# Khisti et al.'s two-step rules (transport.exact.importance): their residual may land on an unselected draft, so their
# membership acceptance exceeds the first-stage one; kept apart from RULES, whose tests assume the two coincide
TWO_STEP_RULES = ("khisti", "khisti_lp")
RULES = tuple(r for r in RULE_LAWS if r not in TWO_STEP_RULES + ("point_mass",))
DRAFT_LAW_OF = RULE_LAWS


def kernel(rule: str, p: np.ndarray, q: np.ndarray, drafts, **kw) -> np.ndarray:
    """Joint law `[k+1, V]` of (slot, token) of `rule` (see module doc) given one ordered draft tuple."""
    drafts = np.asarray(drafts)
    if rule == "rrs":
        return kernel_rrs(p, q, drafts, False)
    if rule == "rrs_without_replacement":
        return kernel_rrs(p, q, drafts, True)
    if rule == "kseq":
        return kernel_kseq(p, q, drafts, **kw)
    if rule == "spechub":
        return kernel_spechub(p, q, drafts)
    if rule == "greedy":
        return kernel_greedy(p, q, drafts)
    if rule in TWO_STEP_RULES:
        return importance.kernel_importance(p, q, drafts, kw.get("selection"))
    raise ValueError(f"unknown verifier {rule!r}; expected one of {RULES + TWO_STEP_RULES}")


def padded_kernel(rule: str, p: np.ndarray, q: np.ndarray, drafts, valid, **kw) -> np.ndarray:
    """Joint law `[k+1, V]` of (slot, token) of a padded call, drafts and valid `[k]`, by the rule's padding contract
    (`specjax.verify.multi_draft`, transport/THEORY.md §3.10): the positional rules (greedy, SpecHub) mask slots of
    their law's own k-slot layout; every other rule verifies the valid slots, in slot order, as its drafts."""
    if rule in POSITIONAL_RULES:
        return (kernel_greedy if rule == "greedy" else kernel_spechub)(p, q, drafts, valid)
    if rule == "point_mass":
        return kernel_padded(lambda x: kernel_point_mass(p, x), drafts, valid)
    return kernel_padded(lambda x: kernel(rule, p, q, x, **kw), drafts, valid)


def enumerate_rule(rule: str, p: np.ndarray, q: np.ndarray, k: int, **kw) -> tuple[np.ndarray, float, float]:
    """Exact enumeration over the rule's draft law: (output law `[V]`, membership acceptance P(Y ∈ X),
    first-stage acceptance P(slot >= 0 before any correction)). Cost O(|supp q|^k · k V): small V only."""
    tuples, probs = laws.tuple_law(q, k, DRAFT_LAW_OF[rule])
    if rule == "khisti_lp" and k == 2 and "selection" not in kw:
        kw = {**kw, "selection": importance.pair_selection_lp(p, q)}
    law, member, first = np.zeros(len(p)), 0.0, 0.0
    for x, w in zip(tuples, probs):
        out = kernel(rule, p, q, x, **kw)
        y = out.sum(0)
        law += w * y
        member += w * y[np.unique(x)].sum()
        first += w * out[1:].sum()
    return law, member, first
