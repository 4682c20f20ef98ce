"""The aggregated race (`transport.optimal.race`, α* without replacement for k >= 3) against brute force (every cut
H enumerated, and the HiGHS LP), the full-sort python-loop reference `reference.alpha_wor`, and its own pieces
(series truncation, heavy scan, quadrature grid, pruning)."""
import itertools

import numpy as np
import pytest

from .cases import correlated_softmax_pair, random_pair
from transport import laws, optimal_acceptance
from transport.optimal import lp, race, reference


def _cut_value(p, sets, probs, h):
    return p[~h].sum() + laws.hit_probability(sets, probs, h)


def _brute_force(p, q, k):
    """min over every H of p(V∖H) + P(X hits H) for k drafts without replacement (enumerated set law)."""
    sets, probs = laws.set_law(*laws.tuple_law(q, k, "without_replacement"), len(p))
    return min(_cut_value(p, sets, probs, np.array(h, bool)) for h in itertools.product([0, 1], repeat=len(p)))


def test_race_equals_brute_force_min_cut_and_lp_on_many_small_cases():
    rng = np.random.default_rng(31)
    checked = 0
    for case in range(240):
        v, k = int(rng.integers(3, 8)), int(rng.integers(3, 7))
        p, q = random_pair(rng, v, case)
        k_eff = min(k, laws.support_size(q))
        if k_eff < 3:
            continue
        a, h = race.race_row(p, q, k_eff)
        assert a == pytest.approx(_brute_force(p, q, k), abs=1e-13)
        sets, probs = laws.set_law(*laws.tuple_law(q, k, "without_replacement"), v)
        assert _cut_value(p, sets, probs, h) == pytest.approx(a, abs=1e-13)      # H attains the value
        assert optimal_acceptance(p, q, k, "without_replacement") == pytest.approx(a, abs=1e-15)   # dispatcher
        if case % 6 == 0:
            assert a == pytest.approx(lp.lp_optimum(p, q, k, "without_replacement").value, abs=1e-9)
        checked += 1
    assert checked > 100


def _adversarial_rows(rng, v):
    rows = [correlated_softmax_pair(rng, 1, v, 3.0, 0.8, 2.0)]
    p, q = rng.integers(1, 3, v).astype(float), rng.integers(1, 3, v).astype(float)   # massive ratio ties
    rows.append((p / p.sum(), q / q.sum()))
    p2, q2 = rng.dirichlet(np.ones(v)), rng.dirichlet(np.ones(v))                      # zeros on both sides
    p2[: v // 5] = 0.0
    q2[v // 6: v // 3] = 0.0
    rows.append((p2 / p2.sum(), q2 / q2.sum()))
    q3 = np.full(v, 1e-12)
    q3[:3] = (0.9, 0.05, 0.02)                                                          # a few tokens hold q
    rows.append((rng.dirichlet(np.ones(v)), q3 / q3.sum()))
    rows.append((np.full(v, 1.0 / v), np.full(v, 1.0 / v)))                            # uniform: no heavy token
    q5 = np.exp(rng.normal(0, 6, v))                                                    # masses over many decades
    rows.append((rng.dirichlet(np.full(v, 0.3)), q5 / q5.sum()))
    rows.append((q5 / q5.sum(), q5 / q5.sum()))                                         # p = q
    return [(np.ravel(p), np.ravel(q)) for p, q in rows]


@pytest.mark.parametrize("k", [3, 5, 8])
def test_race_equals_full_sort_reference_at_moderate_vocabulary(k):
    rng = np.random.default_rng(32 + k)
    for p, q in _adversarial_rows(rng, 1500):
        a, h = race.race_row(p, q, k)
        ref, _ = reference.alpha_wor(p, q, k)
        assert a == pytest.approx(ref, abs=1e-13)
        assert h.dtype == bool and h.shape == p.shape
        assert a == pytest.approx(_value_of_set(p, q, k, h), abs=1e-12)


def _value_of_set(p, q, k, h):
    """J(H) for a returned H by the reference's recursion: f(H) from the race of the complement."""
    t, w = reference.race_grid(q[q > 0], k)
    lam = q[h].sum()
    dist = np.zeros((k, len(t)))
    dist[0] = 1.0
    for a in q[~h]:
        hit, stay = -np.expm1(-a * t), np.exp(-a * t)
        dist[1:] = dist[1:] * stay + dist[:-1] * hit
        dist[0] *= stay
    return p[~h].sum() + min(1.0, np.sum(w * lam * np.exp(-lam * t) * dist.sum(0)))


def test_race_at_full_vocabulary_matches_reference_and_converges_in_nodes():
    """V = 49,152 (SmolLM2's vocabulary): the reference's python loop over every token, and twice the nodes."""
    rng = np.random.default_rng(33)
    p, q = correlated_softmax_pair(rng, 1, 49_152, 3.0, 0.8, 2.0)
    for k in (3, 8):
        a = optimal_acceptance(p[0], q[0], k, "without_replacement")
        assert a == pytest.approx(reference.alpha_wor(p[0], q[0], k)[0], abs=1e-13)
        assert a == pytest.approx(optimal_acceptance(p[0], q[0], k, "without_replacement", nodes_per_decade=40),
                                  abs=1e-13)


def test_series_of_the_light_tokens_is_within_its_bound():
    """P_j = Σ (e^x − 1)^j from the moments (Stirling coefficients, N = series_terms terms) against direct
    evaluation, relative 1e-15 for x up to X0; and the truncation bound is what makes it so: fewer terms fail."""
    rng = np.random.default_rng(34)
    for k in (3, 5, 8, 12):
        for x_max in (race.X_TINY, 0.01, race.X0):
            x = rng.uniform(0, x_max, 200)
            n = race.series_terms(x_max, k)
            coef = race.stirling_coefficients(k, n)
            moments = (x[:, None] ** np.arange(1, n + 1)).sum(0)
            direct = np.array([(np.expm1(x) ** j).sum() for j in range(1, k)])
            np.testing.assert_allclose(coef @ moments, direct, rtol=2e-15, atol=0)
            if n > k:                                  # negative control: half the terms is visibly wrong
                short = race.stirling_coefficients(k, n // 2) @ moments[: n // 2]
                assert np.max(np.abs(short - direct) / direct) > 1e-13


def test_light_coefficients_equal_the_poisson_binomial_law():
    """The light part alone (no heavy token): e^{-t q(S)} e_j(y) by Newton's identities = the exact law of N_S(t)."""
    rng = np.random.default_rng(35)
    for k in (3, 8):
        q = rng.dirichlet(np.full(4000, 0.5))
        row = race.prepare_row(np.full(4000, 1 / 4000), q, k, 20)
        light = np.where(np.isin(np.arange(4000), row.heavy_pos), 0.0, row.x)
        pos = np.array([0, 1000, 3999])
        moments = np.stack([(light[m:, None] ** np.arange(1, row.n_terms + 1)).sum(0) for m in pos])
        light_q = np.where(light > 0, q[row.order], 0.0)
        coeffs = race._light_coefficients(moments, np.array([light_q[m:].sum() for m in pos]), row)
        qs = q[row.order]
        for b, m in enumerate(pos):
            rates = np.where(light[m:] > 0, qs[m:], 0.0)
            exact = reference.poisson_binomial_cdf(rates, row.t, k - 1)
            # both round over 4000 factors: n·ε = 4000 × 1.1e-16 ≈ 4.4e-13 bounds either side's rounding (2e-14 held
            # on an earlier machine and missed by 4.7e-14 on this one, numpy 2.4.6 both times)
            np.testing.assert_allclose(coeffs.sum(0)[b], exact, rtol=0, atol=2e-13)


def test_heavy_scan_equals_the_token_by_token_recursion():
    rng = np.random.default_rng(36)
    t = np.geomspace(0.01, 300, 30)
    for nh, k in ((0, 3), (1, 4), (15, 8), (16, 3), (37, 8)):
        q = rng.uniform(0.001, 0.2, nh)
        stay, hit = np.exp(-np.outer(q, t)), -np.expm1(-np.outer(q, t))
        partial, bounds = race._heavy_scan(stay, hit, k)
        dist = np.zeros((k, len(t)))
        dist[0] = 1.0
        for i in range(nh - 1, -1, -1):
            dist[1:] = dist[1:] * stay[i] + dist[:-1] * hit[i]
            dist[0] *= stay[i]
            g, o = divmod(i, race.HEAVY_GROUP)
            got = race._polymul(partial[g, o], bounds[g + 1])
            np.testing.assert_allclose(got, dist, rtol=1e-13, atol=1e-300)


def test_grid_is_the_reference_grid():
    """The grid search without V·grid exponentials lands on the reference's nodes (its bounds are valid either way;
    on these rows they are as tight)."""
    rng = np.random.default_rng(37)
    rows = [correlated_softmax_pair(rng, 1, 20_000, 3.0, 0.8, 2.0)[1][0], rng.dirichlet(np.full(50, 0.3)),
            rng.dirichlet(np.full(3000, 0.05)), np.full(5000, 1 / 5000)]
    for q in rows:
        for k in (3, 4, 8):
            t, w = race.race_grid(q[q > 0], k)
            t_ref, w_ref = reference.race_grid(q[q > 0], k)
            np.testing.assert_array_equal(t, t_ref)
            np.testing.assert_array_equal(w, w_ref)


def _every_prefix(p, q, k):
    """(row, the sums at every prefix m = 0..V, J `[V+1]`, P(N_{S_m}(t) <= k − 1) `[V+1, T]`) by the race's own J."""
    row = race.prepare_row(p, q, k, 20)
    powers = row.x[:, None] ** np.arange(1, row.n_terms + 1)
    moments = np.concatenate([np.cumsum(powers[::-1], axis=0)[::-1], np.zeros((1, powers.shape[1]))])
    pre = race.Prefixes(np.arange(len(p) + 1), moments, reference.suffix_sums(row.p_sorted[:-1]),
                        reference.prefix_sums(row.q_sorted[:-1]))
    return (row, pre, *race._j_values(pre, row))


def test_pruning_bound_holds_and_a_wrong_bound_fails():
    """The lower bound of every interval is below J at each prefix inside it (checked at every prefix, several
    interval widths); without its gain bound, i.e. assuming f grows by r_{b−1} per unit of q as p(S) falls (a
    negative control), it exceeds J."""
    rng = np.random.default_rng(38)
    violated = 0
    for case in range(4):
        p, q = correlated_softmax_pair(rng, 1, 2000, 3.0, 0.8, 2.0)
        row, pre, vals, survive = _every_prefix(p[0], q[0], 3 + case)
        for width in (7, 50, 400):
            at = np.append(np.arange(0, 2000, width), 2000)
            bounds = race._lower_bounds(race.Prefixes(*(x[at][None] for x in pre)), vals[None, at], survive[None, at],
                                        row)[0]
            inside = np.array([vals[a:b + 1].min() for a, b in zip(at[:-1], at[1:])])
            assert np.all(bounds <= inside + 1e-13)
            a, b = at[:-1], at[1:]
            ratio = row.r[row.order]
            wrong = vals[a] - pre.p_suffix[a] + pre.p_suffix[b] + ratio[b - 1] * (pre.q_prefix[b] - pre.q_prefix[a])
            violated += int(np.any(wrong > inside + 1e-6))
        assert race.race_row(p[0], q[0], 3 + case)[0] == pytest.approx(vals.min(), abs=1e-15)
    assert violated > 0


def test_degenerate_rows():
    """k_eff = |supp q| (every supported token drafted), q on exactly 3 tokens, p = q, disjoint supports."""
    v = 200
    q = np.zeros(v)
    q[[3, 50, 120]] = (0.5, 0.3, 0.2)
    p = np.full(v, 1.0 / v)
    assert optimal_acceptance(p, q, 8, "without_replacement") == pytest.approx(p[[3, 50, 120]].sum(), abs=1e-14)
    assert optimal_acceptance(q, q, 3, "without_replacement") == pytest.approx(1.0, abs=1e-14)
    p2 = np.zeros(v)
    p2[:100] = 1 / 100
    q2 = np.zeros(v)
    q2[100:] = 1 / 100
    assert optimal_acceptance(p2, q2, 5, "without_replacement") == pytest.approx(0.0, abs=1e-14)
    uniform = np.full(v, 1.0 / v)
    assert optimal_acceptance(uniform, uniform, 4, "without_replacement") == pytest.approx(1.0, abs=1e-13)


@pytest.mark.parametrize("k", [40, 64])
def test_many_drafts_need_longer_series_and_still_match_the_reference(k):
    """Large k: the series needs ~100 terms (more than the old cap of 64 raised a ValueError on valid input)."""
    rng = np.random.default_rng(39)
    assert race.series_terms(race.X0, k) > 64
    for v in (300, 2000):
        p, q = rng.dirichlet(np.full(v, 0.3)), rng.dirichlet(np.full(v, 0.3))
        assert race.race_row(p, q, k)[0] == pytest.approx(reference.alpha_wor(p, q, k)[0], abs=1e-13)


def test_descending_order_is_exact_with_near_ties():
    """The packed-key sort of the ratios: exact descending order with values a few ulps apart (the repair path),
    exact ties, zeros and -0.0."""
    rng = np.random.default_rng(40)
    base = rng.uniform(0.5, 2.0, 3000)
    near = np.concatenate([base, base * (1 + 2.0 ** -50), base * (1 - 2.0 ** -48), base[:100], np.zeros(50), [-0.0]])
    for r in (rng.permutation(near), rng.uniform(0, 10, 5000), np.ones(7), np.array([3.0])):
        order = race._descending(r)
        assert np.array_equal(np.sort(order), np.arange(len(r)))
        assert np.all(np.diff(r[order]) <= 0)
