"""The bucketed exact path of optimal_acceptance (numpy backend) against the full-sort reference and the LP."""
import numpy as np
import pytest

from .cases import random_pair
from transport import laws, lp, optimal_acceptance, optimal_ref


def _ref(p, q, k, law):
    k_eff = min(k, laws.support_size(q)) if law == "without_replacement" else k
    if law == "iid" or k_eff == 1:
        return optimal_ref.alpha_iid(p[None], q[None], k_eff)[0][0]
    return optimal_ref.alpha_wor2(p[None], q[None])[0][0]


def _set_value(p, q, k, law, h):
    sets, probs = laws.set_law(*laws.tuple_law(q, k, law), len(p))
    return p[~h].sum() + laws.hit_probability(sets, probs, h)


@pytest.mark.parametrize("law", ["iid", "without_replacement"])
def test_fast_path_matches_reference_and_lp_on_edge_cases(law):
    rng = np.random.default_rng(21)
    for case in range(400):
        v, k = int(rng.integers(1, 8)), int(rng.integers(1, 4 if law == "iid" else 3))
        p, q = random_pair(rng, v, case)
        a, h = optimal_acceptance(p, q, k, law, return_set=True)
        assert a == pytest.approx(_ref(p, q, k, law), abs=1e-13)
        assert _set_value(p, q, k, law, h) == pytest.approx(a, abs=1e-13)
        if case % 8 == 0:
            assert a == pytest.approx(lp.lp_optimum(p, q, k, law).value, abs=1e-9)


@pytest.mark.parametrize("law", ["iid", "without_replacement"])
def test_adversarial_rows(law):
    v = 3000
    rng = np.random.default_rng(22)
    rows = []
    p = rng.integers(1, 3, v).astype(float); q = rng.integers(1, 3, v).astype(float)     # massive ratio ties
    rows.append((p / p.sum(), q / q.sum()))
    q1 = np.zeros(v); q1[7] = 1.0; rows.append((rng.dirichlet(np.ones(v)), q1))            # one-hot q
    p2 = np.zeros(v); p2[: v // 2] = rng.random(v // 2); q2 = np.zeros(v); q2[v // 2:] = rng.random(v - v // 2)
    rows.append((p2 / p2.sum(), q2 / q2.sum()))                                          # disjoint supports
    p3 = rng.dirichlet(np.ones(v)); q3 = rng.dirichlet(np.ones(v))
    p3[:100] = 1e-30; q3[100:200] = 1e-30; p3[200:300] = 0.0; q3[250:350] = 0.0
    rows.append((p3 / p3.sum(), q3 / q3.sum()))                                          # tiny masses and zeros
    q4 = np.full(v, 1e-12); q4[0] = 1.0; rows.append((rng.dirichlet(np.ones(v)), q4 / q4.sum()))   # q_a ~ 1
    rows.append((q3 / q3.sum(), q3 / q3.sum()))                                           # p = q
    for k in (1, 2, 3):
        for p, q in rows:
            a, h = optimal_acceptance(p, q, k, law, return_set=True)
            if law == "without_replacement" and min(k, laws.support_size(q)) > 2:
                continue
            ref = _ref(p, q, k, law)
            assert a == pytest.approx(ref, abs=1e-12)
            assert h.shape == p.shape


def test_large_vocabulary_spot_check_against_full_sort():
    rng = np.random.default_rng(23)
    v = 128_000
    z = rng.normal(0, 3, (3, v))
    zq = 0.8 * z + 0.6 * rng.normal(0, 3, (3, v))
    p, q = np.exp(z - z.max(1, keepdims=True)), np.exp(zq - zq.max(1, keepdims=True))
    p, q = p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)
    for k in (2, 4, 16):
        a, h = optimal_acceptance(p, q, k, "iid", return_set=True)
        ref = optimal_ref.alpha_iid(p, q, k)[0]
        np.testing.assert_allclose(a, ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(p[~h].sum(1) if False else (p * ~h).sum(1) + 1 - (q * ~h).sum(1) ** k, ref,
                                   rtol=0, atol=1e-12)
    a = optimal_acceptance(p, q, 2, "without_replacement")
    np.testing.assert_allclose(a, optimal_ref.alpha_wor2(p, q, with_set=False)[0], rtol=0, atol=1e-12)
    a32 = optimal_acceptance(p.astype(np.float32), q.astype(np.float32), 2, "iid")
    assert np.all(np.abs(a32 - optimal_acceptance(p, q, 2, "iid")) < 1e-5)
