"""Exact enumeration of every rule (numpy kernels): lossless, acceptance = closed form, never above α*."""
import numpy as np
import pytest

from .cases import correlated_softmax_pair, random_pair
from transport import laws, optimal_acceptance, verifier_acceptance
from transport.exact import dispatch

OWN_LAW = {"rrs": "iid", "kseq": "iid", "rrs_without_replacement": "without_replacement", "greedy": "greedy",
           "spechub": "greedy"}   # SpecHub's set law is the greedy(q, 2) set law


@pytest.mark.parametrize("rule", dispatch.RULES)
def test_rule_is_lossless_and_matches_its_acceptance_formula(rule):
    rng = np.random.default_rng(abs(hash(rule)) % 2**32)
    checked = 0
    for case in range(120):
        v, k = int(rng.integers(2, 7)), (2 if rule == "spechub" else int(rng.integers(1, 4)))
        p, q = random_pair(rng, v, case)
        if rule in ("greedy", "spechub") and laws.support_size(q) < max(k, 2 if rule == "spechub" else 1):
            continue
        law, member, first = dispatch.enumerate_rule(rule, p, q, k)
        assert np.abs(law - p).max() < 1e-12
        assert verifier_acceptance(p, q, k, rule) == pytest.approx(member, abs=1e-12)
        if rule != "greedy":                       # residual never lands on a rejected draft (THEORY §0)
            assert first == pytest.approx(member, abs=1e-12)
        assert member <= optimal_acceptance(p, q, k, OWN_LAW[rule]) + 1e-12
        checked += 1
    assert checked > 60


def test_optimal_rules_reach_alpha_star():
    """SpecHub and the greedy verifier are optimal for their own draft laws."""
    rng = np.random.default_rng(7)
    for case in range(100):
        p, q = random_pair(rng, int(rng.integers(2, 7)), case)
        if laws.support_size(q) < 2:
            continue
        assert verifier_acceptance(p, q, 2, "spechub") == pytest.approx(optimal_acceptance(p, q, 2, "greedy"), abs=1e-13)
        assert verifier_acceptance(p, q, 2, "greedy") == pytest.approx(optimal_acceptance(p, q, 2, "greedy"), abs=1e-13)


def test_kseq_membership_differs_from_first_stage_away_from_rho_star():
    """At ρ = k (valid but not ρ*) the residual can land on rejected drafts: membership >= first stage."""
    rng = np.random.default_rng(8)
    strict = 0
    for case in range(60):
        p, q = rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4))
        law, member, first = dispatch.enumerate_rule("kseq", p, q, 3, rho=3.0)
        assert np.abs(law - p).max() < 1e-12
        from transport.exact.verifiers import kseq_acceptance
        assert kseq_acceptance(p, q, 3, rho=3.0) == pytest.approx(member, abs=1e-12)
        assert member >= first - 1e-15
        strict += member > first + 1e-9
    assert strict > 0


def test_rrs_wor_k2_closed_form_with_near_one_hot_q():
    q = np.array([1 - 3e-11, 1e-11, 1e-11, 1e-11])
    p = np.array([0.4, 0.3, 0.2, 0.1])
    exact = dispatch.enumerate_rule("rrs_without_replacement", p, q, 2)[1]
    assert verifier_acceptance(p, q, 2, "rrs_without_replacement") == pytest.approx(exact, abs=1e-14)


def test_large_vocabulary_closed_forms_run_and_are_ordered():
    rng = np.random.default_rng(9)
    p, q = correlated_softmax_pair(rng, 2, 20000, scale=2, mix=0.8, noise=1)
    for k in (2, 4):
        star = optimal_acceptance(p, q, k, "iid")
        assert np.all(verifier_acceptance(p, q, k, "rrs") <= star + 1e-12)
        assert np.all(verifier_acceptance(p, q, k, "kseq") <= star + 1e-12)
    assert np.all(verifier_acceptance(p, q, 2, "rrs_without_replacement")
                  <= optimal_acceptance(p, q, 2, "without_replacement") + 1e-12)
