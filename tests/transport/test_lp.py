"""The reduced LP (HiGHS) against brute-force min-cut, and its plan as a lossless optimal verifier."""
import numpy as np
import pytest

from .cases import random_pair
from transport import laws
from transport.exact import kernels
from transport.optimal import lp


def test_reduced_lp_equals_bruteforce_min_cut_for_every_law():
    rng = np.random.default_rng(0)
    worst = 0.0
    for case in range(300):
        v, k = int(rng.integers(2, 8)), int(rng.integers(1, 4))
        p, q = random_pair(rng, v, case)
        law = ["iid", "without_replacement", "greedy", "spechub", "indep", "table"][case % 6]
        if law == "indep":
            tuples, probs = laws.independent_tuple_law(np.stack([random_pair(rng, v, case + i)[1] for i in range(k)]))
        elif law == "table":                        # an arbitrary joint law: random weights on random tuples
            tuples = rng.integers(0, v, (int(rng.integers(1, 12)), k))
            probs = rng.dirichlet(np.ones(len(tuples)))
        else:
            if (law == "greedy" and laws.support_size(q) < k) or (law == "spechub" and laws.support_size(q) < 2):
                continue
            tuples, probs = laws.tuple_law(q, 2 if law == "spechub" else k, law)
        sets, set_probs = laws.set_law(tuples, probs, v)
        plan = lp.solve_set_lp(p, sets, set_probs)
        brute, h = laws.min_cut_bruteforce(p, sets, set_probs)
        worst = max(worst, abs(plan.value - brute))
        assert p[~h].sum() + laws.hit_probability(sets, set_probs, h) == pytest.approx(brute, abs=1e-15)
    assert worst < 1e-9


def test_full_tuple_lp_equals_reduced_lp():
    """SpecTr's ordered-tuple LP (THEORY §1.1) has the same optimum as the set LP (§1.2)."""
    import scipy.optimize
    rng = np.random.default_rng(1)
    for case in range(20):
        v, k = int(rng.integers(2, 5)), int(rng.integers(1, 3))
        p, q = random_pair(rng, v, case)
        tuples, probs = laws.tuple_law(q, k, "iid")
        t = len(tuples)
        member = np.zeros((t, v))
        member[np.arange(t)[:, None], tuples] = 1.0
        a_eq = np.vstack([np.kron(np.eye(t), np.ones((1, v))), np.kron(np.ones((1, t)), np.eye(v))])
        res = scipy.optimize.linprog(-member.ravel(), A_eq=a_eq, b_eq=np.concatenate([probs, p]), method="highs")
        assert res.status == 0
        assert -res.fun == pytest.approx(lp.lp_optimum(p, q, k, "iid").value, abs=1e-9)


@pytest.mark.parametrize("law", ["iid", "without_replacement", "greedy"])
def test_lp_plan_is_lossless_and_reaches_its_value(law):
    rng = np.random.default_rng(2)
    for case in range(40):
        v, k = int(rng.integers(2, 6)), int(rng.integers(1, 4))
        p, q = random_pair(rng, v, case)
        if law == "greedy" and laws.support_size(q) < k:
            continue
        plan = lp.lp_optimum(p, q, k, law)
        tuples, probs = laws.tuple_law(q, k, law)
        out_law, member = np.zeros(v), 0.0
        for x, w in zip(tuples, probs):
            y = kernels.kernel_lp(plan, x).sum(0)
            out_law += w * y
            member += w * y[np.unique(x)].sum()
        assert np.abs(out_law - p).max() < 1e-9     # HiGHS feasibility tolerance is 1e-10
        assert member == pytest.approx(plan.value, abs=1e-9)
