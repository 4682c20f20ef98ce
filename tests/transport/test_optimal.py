"""optimal_acceptance (prefix theorem, closed forms, race quadrature) against the HiGHS LP and brute force."""
import numpy as np
import pytest

from .cases import correlated_softmax_pair, random_pair
from transport import laws, optimal_acceptance
from transport.optimal import lp, reference


@pytest.mark.parametrize("law", ["iid", "without_replacement", "greedy"])
def test_optimal_acceptance_equals_lp_on_many_small_cases(law):
    rng = np.random.default_rng({"iid": 10, "without_replacement": 11, "greedy": 12}[law])
    ps, qs, ks, lps = [], [], [], []
    for case in range(700):
        v, k = int(rng.integers(1, 9)), int(rng.integers(1, 5))
        p, q = random_pair(rng, v, case)
        if law == "greedy" and laws.support_size(q) < k:
            continue
        ps.append(p), qs.append(q), ks.append(k)
        lps.append(lp.lp_optimum(p, q, k, law).value)
    ks = np.array(ks)
    if law != "greedy":                              # k larger than the support is covered (greedy refuses it)
        assert np.any(ks > np.array([laws.support_size(q) for q in qs]))
    for k in np.unique(ks):                          # batched call per (k, V)
        for v in {len(p) for p in ps}:
            idx = [i for i in range(len(ps)) if ks[i] == k and len(ps[i]) == v]
            if not idx:
                continue
            got = optimal_acceptance(np.stack([ps[i] for i in idx]), np.stack([qs[i] for i in idx]), int(k), law)
            np.testing.assert_allclose(got, [lps[i] for i in idx], rtol=0, atol=1e-9)


@pytest.mark.parametrize("law", ["iid", "without_replacement", "greedy"])
def test_minimising_set_and_backends(law):
    rng = np.random.default_rng(3)
    for case in range(40):                           # few distinct shapes: each costs a jax compile
        v, k = int(rng.choice([4, 7])), int(rng.integers(1, 5))
        p, q = random_pair(rng, v, case)
        if law == "greedy" and laws.support_size(q) < k:
            continue
        sets, probs = laws.set_law(*laws.tuple_law(q, k, law), v)
        brute, _ = laws.min_cut_bruteforce(p, sets, probs)
        for backend in ("numpy", "jax"):
            alpha, h = optimal_acceptance(p, q, k, law, return_set=True, backend=backend)
            assert alpha == pytest.approx(brute, abs=1e-13)
            assert p[~h].sum() + laws.hit_probability(sets, probs, h) == pytest.approx(brute, abs=1e-13)


def test_without_replacement_dominates_iid():
    rng = np.random.default_rng(4)
    for k in (2, 3, 5):
        p, q = rng.dirichlet(np.full(40, 0.3), 30), rng.dirichlet(np.full(40, 0.3), 30)
        gap = optimal_acceptance(p, q, k, "without_replacement") - optimal_acceptance(p, q, k, "iid")
        assert gap.min() >= -1e-13


def test_race_quadrature_is_converged_at_moderate_vocabulary():
    """Doubling the nodes changes α* (without replacement, k >= 3) by < 1e-13; the python reference agrees."""
    rng = np.random.default_rng(5)
    p, q = correlated_softmax_pair(rng, 3, 3000, scale=3, mix=0.7, noise=2)
    for k in (5,):
        a = optimal_acceptance(p, q, k, "without_replacement")
        np.testing.assert_allclose(optimal_acceptance(p, q, k, "without_replacement", nodes_per_decade=40), a,
                                   rtol=0, atol=1e-13)
        np.testing.assert_allclose(reference.alpha_wor(p[0], q[0], k)[0], a[0], rtol=0, atol=1e-13)
        assert np.all(a >= optimal_acceptance(p, q, k, "iid") - 1e-13)


def test_single_pair_batch_and_float32_agree():
    rng = np.random.default_rng(6)
    p, q = rng.dirichlet(np.ones(50), 4), rng.dirichlet(np.ones(50), 4)
    batch = optimal_acceptance(p, q, 3, "iid")
    assert isinstance(optimal_acceptance(p[1], q[1], 3, "iid"), float)
    assert optimal_acceptance(p[1], q[1], 3, "iid") == pytest.approx(batch[1], abs=1e-15)
    assert optimal_acceptance(p.astype(np.float32), q.astype(np.float32), 3, "iid") == pytest.approx(batch, abs=1e-6)


def test_special_values():
    q = np.array([0.5, 0.3, 0.2, 0.0])
    assert optimal_acceptance(q, q, 2, "iid") == pytest.approx(1.0, abs=1e-15)       # p = q
    p = np.array([0.0, 0.0, 0.0, 1.0])
    assert optimal_acceptance(p, q, 3, "without_replacement") == 0.0                  # disjoint supports
    p = np.array([0.0, 1.0, 0.0, 0.0])                                                # greedy target: P(y* ∈ X)
    assert optimal_acceptance(p, q, 2, "iid") == pytest.approx(1 - 0.7 ** 2, abs=1e-15)
    assert optimal_acceptance(p, q, 2, "without_replacement") == pytest.approx(0.3 + 0.5 * 0.6 + 0.2 * 0.375)
