"""Exact laws of the coupled rules (transport.exact.coupled, THEORY §3.11): the joint law of (draft, target token) has
marginals q and p (the output is lossless), the closed forms agree with each other and with quadrature, DISD's
acceptance lies between (1 − TV)/(1 + TV) and 1 − TV, the list rule never exceeds α*, and the acceptance table."""
import numpy as np
import pytest
from scipy import integrate

from .cases import random_pair
from transport import optimal_acceptance, verifier_acceptance
from transport.exact.coupled import (disd_acceptance, disd_diagonal, disd_joint, gumbel_list_acceptance, gumbel_list_law,
                                     race_rank_law)

TOL = 1e-12


def _tv(p, q):
    return float(np.maximum(p - q, 0.0).sum())


def test_disd_joint_has_marginals_q_and_p_and_agrees_with_the_rank_law():
    """Rows sum to q (the draft is a sample of q), columns to p (the output is lossless), for every edge-case
    family; the diagonal is the rank law's rank-0 row (a 1-d integral against the 2-d one) and the O(V log V)
    acceptance."""
    rng = np.random.default_rng(0)
    for case in range(160):
        p, q = random_pair(rng, int(rng.integers(2, 7)), case)
        joint = disd_joint(p, q)
        assert joint.min() >= 0.0
        assert np.abs(joint.sum(0) - p).max() < TOL and np.abs(joint.sum(1) - q).max() < TOL
        np.testing.assert_allclose(np.diag(joint), race_rank_law(p, q)[0], atol=TOL)
        assert disd_acceptance(p, q) == pytest.approx(np.trace(joint), abs=TOL)


def test_disd_acceptance_batched_at_large_vocabulary_equals_the_quadratic_sum():
    rng = np.random.default_rng(1)
    p, q = rng.dirichlet(np.full(300, 0.3), size=3), rng.dirichlet(np.full(300, 0.3), size=3)
    batched = disd_acceptance(p, q)
    for row in range(3):
        assert batched[row] == pytest.approx(disd_diagonal(p[row], q[row]).sum(), abs=TOL)
    big = rng.dirichlet(np.full(50_000, 0.1), size=2)
    assert disd_acceptance(big, big) == pytest.approx([1.0, 1.0], abs=1e-12)     # p = q: always accepted


def _rank_integrand(p, q, y, m):
    """e^{-e} [z^m] Π_j (e^{-e c_j} + z (e^{-e a_j} − e^{-e b_j})_+), by a positive Poisson-binomial recursion."""
    rest = np.arange(len(p)) != y
    a, b = p[rest] / p[y], q[rest] / q[y]

    def f(e):
        poly = np.zeros(m + 1)
        poly[0] = 1.0
        for aj, bj in zip(a, b):
            lose = np.exp(-e * max(aj, bj))
            beat = np.exp(-e * aj) * -np.expm1(-e * (bj - aj)) if bj > aj else 0.0
            poly[1:] = poly[1:] * lose + poly[:-1] * beat
            poly[0] *= lose
        return np.exp(-e) * poly[m]
    return f


def test_rank_law_columns_sum_to_p_and_equal_quadrature():
    rng = np.random.default_rng(2)
    for case in range(60):
        p, q = random_pair(rng, int(rng.integers(2, 7)), case)
        ranks = race_rank_law(p, q)
        assert ranks.min() > -TOL
        np.testing.assert_allclose(ranks.sum(0), np.where(q > 0, p, 0.0), atol=TOL)
    p, q = rng.dirichlet(np.ones(5)), rng.dirichlet(np.ones(5))
    ranks = race_rank_law(p, q)
    for y in range(5):
        for m in range(3):
            value, _ = integrate.quad(_rank_integrand(p, q, y, m), 0, np.inf, epsabs=1e-14, epsrel=1e-12)
            assert ranks[m, y] == pytest.approx(value, abs=1e-11)


def test_gumbel_list_law_is_lossless_monotone_and_never_above_alpha_star():
    rng = np.random.default_rng(3)
    for case in range(120):
        p, q = random_pair(rng, int(rng.integers(2, 6)), case)
        previous = 0.0
        for k in (1, 2, 3):
            law = gumbel_list_law(p, q, k)
            assert 0.5 * np.abs(law.sum(0) - p).sum() < TOL                       # TV(output, p) = 0
            accept = law[1:].sum()
            assert accept >= previous - TOL                                         # more drafts never hurt
            assert accept <= optimal_acceptance(p, q, k, "without_replacement") + TOL   # a coupling: at most α*
            previous = accept
        np.testing.assert_allclose(gumbel_list_law(p, q, 1)[1], disd_diagonal(p, q), atol=TOL)
        if np.all(q[p > 0] > 0):                  # k >= |supp q| drafts every token p can emit
            assert gumbel_list_acceptance(p, q, len(p)) == pytest.approx(1.0, abs=TOL)


def test_disd_acceptance_lies_between_the_papers_bounds():
    """(1 − TV)/(1 + TV) <= Σ_v m_v/(m_v + Σ_{j≠v} M_j) (the paper's per-token bound; m = min, M = max of p, q)
    <= DISD <= 1 − TV (the optimum for one draft, which the standard rule reaches), on every edge-case family."""
    rng = np.random.default_rng(4)
    for case in range(400):
        p, q = random_pair(rng, int(rng.integers(2, 9)), case)
        tv, alpha = _tv(p, q), disd_acceptance(p, q)
        m, big = np.minimum(p, q), np.maximum(p, q)
        per_token = float(np.sum(m / (m + big.sum() - big)))
        assert (1 - tv) / (1 + tv) <= per_token + TOL
        assert per_token <= alpha + TOL
        assert alpha <= 1 - tv + TOL
        assert alpha <= verifier_acceptance(p, q, 1, "rrs") + TOL
        if len(p) == 2:                            # two tokens: the coupled draw is an optimal coupling
            assert alpha == pytest.approx(1 - tv, abs=TOL)


def test_bounds_are_tight():
    # uniform laws on two overlapping sets: DISD = Jaccard = (1 − TV)/(1 + TV) exactly
    for n, shift in ((3, 1), (5, 2), (8, 1)):
        p = np.r_[np.full(n, 1 / n), np.zeros(shift)]
        q = np.r_[np.zeros(shift), np.full(n, 1 / n)]
        tv = _tv(p, q)
        assert disd_acceptance(p, q) == pytest.approx((1 - tv) / (1 + tv), abs=TOL)
    # a one-hot target: the draft is accepted iff it is that token, 1 − TV = q(token)
    q = np.array([0.1, 0.6, 0.3])
    assert disd_acceptance(np.array([0.0, 0.0, 1.0]), q) == pytest.approx(0.3, abs=TOL)


def test_degenerate_cases():
    q = np.array([0.2, 0.5, 0.3, 0.0])
    assert disd_acceptance(q, q) == pytest.approx(1.0, abs=TOL)                    # p = q: always accepted
    np.testing.assert_allclose(disd_joint(q, q), np.diag(q), atol=TOL)
    disjoint = np.array([0.0, 0.0, 0.0, 1.0])
    assert disd_acceptance(disjoint, q) == 0.0 and gumbel_list_acceptance(disjoint, q, 3) == 0.0   # never
    one_hot = np.array([0.0, 1.0, 0.0, 0.0])                                       # one-hot drafter: X = 1 surely
    np.testing.assert_allclose(disd_joint(q, one_hot), np.outer(one_hot, q), atol=TOL)
    law = gumbel_list_law(q, q, 2)                                                 # p = q: Y is always draft 0
    np.testing.assert_allclose(law, np.stack([np.zeros(4), q, np.zeros(4)]), atol=TOL)


# THEORY §3.11's table: (p, q) -> TV, (1−TV)/(1+TV), DISD, and (k, Gumbel list, RRS without replacement, α*_wor)
TABLE = {
    "toy": (np.array([1 / 3, 2 / 3]), np.array([2 / 3, 1 / 3]), 1 / 3, 1 / 2, 2 / 3, [(2, 1.0, 1.0, 1.0)]),
    "sets": (np.array([1, 1, 1, 0]) / 3, np.array([0, 1, 1, 1]) / 3, 1 / 3, 1 / 2, 1 / 2,
             [(2, 2 / 3, 2 / 3, 2 / 3), (3, 2 / 3, 2 / 3, 2 / 3)]),
}


def _softmax_case():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 6)
    z2 = 0.7 * z + rng.normal(0, 1, 6)
    return np.exp(z) / np.exp(z).sum(), np.exp(z2) / np.exp(z2).sum()


def test_acceptance_table_of_theory():
    p, q = _softmax_case()
    table = dict(TABLE, softmax=(p, q, 0.420272, 0.408181, 0.541251,
                                 [(2, 0.768088, 0.750180, 0.836593), (3, 0.915577, 0.850197, 1.0)]))
    for name, (p, q, tv, lower, disd, rows) in table.items():
        assert _tv(p, q) == pytest.approx(tv, abs=5e-7), name
        assert (1 - tv) / (1 + tv) == pytest.approx(lower, abs=5e-7), name
        assert disd_acceptance(p, q) == pytest.approx(disd, abs=5e-7), name
        for k, listed, rrs, star in rows:
            assert gumbel_list_acceptance(p, q, k) == pytest.approx(listed, abs=5e-7), (name, k)
            assert verifier_acceptance(p, q, k, "rrs_without_replacement") == pytest.approx(rrs, abs=5e-7), (name, k)
            assert optimal_acceptance(p, q, k, "without_replacement") == pytest.approx(star, abs=5e-7), (name, k)


def test_list_rule_and_rrs_without_replacement_do_not_dominate_each_other():
    """Same draft law (without replacement), different rules: over random cases each wins somewhere."""
    rng = np.random.default_rng(5)
    diff = []
    for case in range(80):
        p, q = rng.dirichlet(np.full(5, 0.7)), rng.dirichlet(np.full(5, 0.7))
        diff.append(gumbel_list_acceptance(p, q, 2) - verifier_acceptance(p, q, 2, "rrs_without_replacement"))
    assert min(diff) < -1e-3 and max(diff) > 1e-3


def test_verifier_acceptance_names_the_coupled_rules():
    rng = np.random.default_rng(6)
    p, q = rng.dirichlet(np.ones(5), size=2), rng.dirichlet(np.ones(5), size=2)
    np.testing.assert_allclose(verifier_acceptance(p, q, 1, "disd"), disd_acceptance(p, q), atol=TOL)
    np.testing.assert_allclose(verifier_acceptance(p, q, 1, "gumbel_list"), disd_acceptance(p, q), atol=TOL)
    assert verifier_acceptance(p[0], q[0], 3, "gumbel_list") == pytest.approx(
        gumbel_list_acceptance(p[0], q[0], 3), abs=TOL)
    with pytest.raises(ValueError, match="one coupled draft"):
        verifier_acceptance(p, q, 2, "disd")


def test_bad_input_raises():
    p = np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="k must be >= 1"):
        gumbel_list_law(p, p, 0)
    with pytest.raises(ValueError, match="same shape"):
        disd_joint(p, np.ones(3) / 3)
    with pytest.raises(ValueError, match="sum to 1"):
        disd_acceptance(p * 2, p)
    big = np.full(16, 1 / 16)
    with pytest.raises(ValueError, match="inclusion"):
        race_rank_law(np.r_[0.5, np.full(15, 0.5 / 15)], big)


def test_experiment_writes_its_tables(tmp_path):
    from experiments.coupled_gap import CoupledGapConfig, run
    cfg = CoupledGapConfig(vocab_size=64, list_vocab=4, ks=(2,), temperatures=(1.0,), pairs=3)
    result = run(cfg, tmp_path / "gap")
    assert len(result["one_draft"]) == 3 and len(result["lists"]) == 3
    for row in result["one_draft"]:
        assert row["bound"] <= row["disd"] <= row["standard_1_minus_tv"]
    for row in result["lists"]:
        assert row["gumbel_list"] <= row["alpha_star_wor"] + TOL
    assert (tmp_path / "gap.csv").read_text().startswith("family,temperature,")
