"""Khisti et al.'s two-step rule in float64: exact enumeration is lossless for both selections, the membership
acceptance formula equals enumeration, the k = 2 selection LP reaches α*(iid, 2), degenerate cases, bad input."""
import numpy as np
import pytest

from .cases import random_pair
from transport import optimal_acceptance, verifier_acceptance
from transport.exact import dispatch
from transport.exact.importance import argmax_marginal, pair_selection_lp, weights_below


def test_two_step_rules_are_lossless_and_match_their_acceptance():
    rng = np.random.default_rng(0)
    for case in range(160):
        v, k = int(rng.integers(2, 7)), int(rng.integers(1, 5))
        p, q = random_pair(rng, v, case)
        law, member, first = dispatch.enumerate_rule("khisti", p, q, k)
        assert np.abs(law - p).max() < 1e-12
        assert verifier_acceptance(p, q, k, "khisti") == pytest.approx(member, abs=1e-12)
        assert first <= member + 1e-15
        assert member <= optimal_acceptance(p, q, k, "iid") + 1e-12
        assert argmax_marginal(p, q, k).sum() == pytest.approx(1.0, abs=1e-12)


def test_pair_lp_selection_reaches_alpha_star():
    """Khisti et al.: for two i.i.d. drafts the best selection + speculative sampling is optimal."""
    rng = np.random.default_rng(1)
    for case in range(80):
        p, q = random_pair(rng, int(rng.integers(2, 8)), case)
        sel = pair_selection_lp(p, q)
        star = optimal_acceptance(p, q, 2, "iid")
        assert sel.value == pytest.approx(star, abs=1e-9)
        law, member, _ = dispatch.enumerate_rule("khisti_lp", p, q, 2, selection=sel)
        assert np.abs(law - p).max() < 1e-9
        assert member == pytest.approx(star, abs=1e-9)
        off = ~np.eye(len(p), dtype=bool)
        assert np.allclose((sel.pair + sel.pair.T)[off], 1.0) and np.allclose(sel.marginal.sum(), 1.0)


def test_degenerate_cases():
    q = np.array([0.5, 0.3, 0.2, 0.0])
    assert verifier_acceptance(q, q, 1, "khisti") == pytest.approx(1.0)            # p = q, one draft
    disjoint_p = np.array([0.0, 0.0, 0.0, 1.0])
    assert verifier_acceptance(disjoint_p, q, 3, "khisti") == pytest.approx(0.0)
    onehot = np.array([0.0, 1.0, 0.0, 0.0])
    p = np.array([0.1, 0.2, 0.3, 0.4])
    assert verifier_acceptance(p, onehot, 4, "khisti") == pytest.approx(0.2)       # k >= support: one token drafted
    key, below = weights_below(p, q)
    assert below[np.argmax(key)] == pytest.approx(q[key < key.max()].sum())


def test_bad_input():
    p = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="k"):
        verifier_acceptance(p, p, 0, "khisti")
    with pytest.raises(ValueError, match="khisti_lp"):
        verifier_acceptance(p, p, 3, "khisti_lp")
    with pytest.raises(ValueError, match="sum to 1"):
        verifier_acceptance(p * 2, p, 2, "khisti")
    with pytest.raises(ValueError, match="small vocabularies"):
        pair_selection_lp(np.full(300, 1 / 300), np.full(300, 1 / 300))
