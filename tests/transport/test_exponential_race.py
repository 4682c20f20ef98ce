"""The exponential race with i.i.d. drafts (transport.exact.coupled.race_acceptance, THEORY §3.12): the closed form
against a literal simulation of the Poisson race, DISD at k = 1, never above α*_iid nor the Gumbel list, the edge
cases, and a negative control."""
import numpy as np
import pytest
from scipy import stats

from .cases import random_pair
from transport import optimal_acceptance, verifier_acceptance
from transport.exact.coupled import (_race_shares, disd_acceptance, disd_diagonal, gumbel_list_acceptance,
                                     race_acceptance)


def _race_hits(ps: np.ndarray, s: np.ndarray, k: int) -> np.ndarray:
    return ps * (1.0 - (1.0 - s) ** k)


def simulate_race(p, q, k: int, trials: int, rng: np.random.Generator, points: int = 64):
    """A literal simulation of the race: points i.i.d. q at the arrival times of a rate-1 Poisson process; token v's
    first arrival time F_v gives E_v = q_v F_v ~ Exp(1) (tokens with q_v = 0 never arrive and get their own Exp(1));
    the target's token Y = argmin E/p, accepted iff Y's first arrival is among the first k points.
    Returns (Y, accepted) `[trials]`."""
    v = len(p)
    x = rng.choice(v, size=(trials, points), p=q)
    times = np.cumsum(rng.exponential(size=(trials, points)), axis=1)
    first_idx = np.full((trials, v), points)                # index of v's first point (points = not yet arrived)
    for tok in range(v):
        hit = x == tok
        first_idx[:, tok] = np.where(hit.any(1), hit.argmax(1), points)
    arrived = first_idx < points
    first_time = np.take_along_axis(times, np.minimum(first_idx, points - 1), 1)
    # a token not arrived by the last point T_M has, by memorylessness, F_v = T_M + Exp(1)/q_v, i.e. E_v = q_v T_M +
    # Exp(1); its first point comes after the M-th, so it is never among k <= M drafts
    e = np.where(arrived, q * first_time, q * times[:, -1:] + rng.exponential(size=(trials, v)))
    with np.errstate(divide="ignore"):
        score = np.where(p > 0, e / np.where(p > 0, p, 1.0), np.inf)
    y = np.argmin(score, 1)
    accepted = first_idx[np.arange(trials), y] < k
    return y, accepted


def test_closed_form_matches_a_literal_simulation_of_the_race():
    """Chi-square of the (token, accepted) counts against p_v [1 − (1 − s_v)^k] and its complement: the emitted token
    follows p (lossless) and the acceptance is the closed form (6 pairs, k = 1..3, 20,000 races each)."""
    rng = np.random.default_rng(3)
    for case in (0, 1, 2, 4, 6, 7):
        p, q = random_pair(rng, 4, case)
        for k in (1, 2, 3):
            y, acc = simulate_race(p, q, k, 20_000, rng)
            with np.errstate(divide="ignore"):
                order = np.argsort(np.where(q > 0, p / q, np.inf), kind="stable")
            hit = np.zeros(4)
            ps, s = _race_shares(p, q)
            hit[order] = _race_hits(ps[0], s[0], k)
            expected = np.concatenate([hit, p - hit]) * len(y)
            observed = np.concatenate([np.bincount(y[acc], minlength=4), np.bincount(y[~acc], minlength=4)])
            live = expected > 0
            assert observed[~live].sum() == 0
            _, pval = stats.chisquare(observed[live], expected[live])
            assert pval > 1e-4, (case, k, pval)
            assert acc.mean() == pytest.approx(race_acceptance(p, q, k), abs=0.02)


def test_simulation_rejects_the_wrong_draft_law():
    """Negative control: the same counts against the closed form of a *different* k, or against acceptance as if the
    drafts were without replacement (the Gumbel list), fail the chi-square."""
    rng = np.random.default_rng(5)
    p = np.array([0.4, 0.3, 0.2, 0.1])
    q = np.array([0.1, 0.2, 0.3, 0.4])
    y, acc = simulate_race(p, q, 2, 20_000, rng)
    for wrong in (race_acceptance(p, q, 1), race_acceptance(p, q, 3), gumbel_list_acceptance(p, q, 2)):
        assert stats.binomtest(int(acc.sum()), len(acc), wrong).pvalue < 1e-6
    assert stats.binomtest(int(acc.sum()), len(acc), race_acceptance(p, q, 2)).pvalue > 1e-4


def test_k1_is_disd_and_the_race_never_beats_alpha_star_nor_the_list():
    """k = 1 equals DISD (the O(V²) diagonal); for every k the race's acceptance is non-decreasing, at most α*_iid
    (its drafts are k i.i.d. draws of q and the rule is lossless) and at most the Gumbel list's (the same race read
    by distinct tokens accepts whenever the race does). 240 edge-case pairs, k <= 4."""
    rng = np.random.default_rng(0)
    for case in range(240):
        p, q = random_pair(rng, int(rng.integers(2, 7)), case)
        assert race_acceptance(p, q, 1) == pytest.approx(disd_diagonal(p, q).sum(), abs=1e-12)
        assert race_acceptance(p, q, 1) == pytest.approx(disd_acceptance(p, q), abs=1e-15)
        last = 0.0
        for k in range(1, 5):
            a = race_acceptance(p, q, k)
            assert last - 1e-12 <= a <= optimal_acceptance(p, q, k, "iid") + 1e-12
            assert a <= gumbel_list_acceptance(p, q, k) + 1e-12
            last = a


def test_edge_cases_and_tightness():
    """p = q: 1; disjoint supports: 0; one-hot p = δ_a: 1 − (1 − q_a)^k = α*_iid (tight); k → ∞: p(supp q);
    batched rows agree with single rows at V = 50,000; bad input raises ValueError."""
    rng = np.random.default_rng(1)
    q = rng.dirichlet(np.ones(6))
    for k in (1, 3, 8):
        assert race_acceptance(q, q, k) == pytest.approx(1.0, abs=1e-14)
        assert race_acceptance(np.array([0.5, 0.5, 0, 0]), np.array([0, 0, 0.3, 0.7]), k) == 0.0
        onehot = np.eye(6)[2]
        assert race_acceptance(onehot, q, k) == pytest.approx(1 - (1 - q[2]) ** k, abs=1e-14)
        assert race_acceptance(onehot, q, k) == pytest.approx(optimal_acceptance(onehot, q, k, "iid"), abs=1e-12)
    p = np.array([0.5, 0.3, 0.2, 0.0])
    q2 = np.array([0.0, 0.2, 0.3, 0.5])
    assert race_acceptance(p, q2, 10_000) == pytest.approx(0.5, abs=1e-12)
    big_p, big_q = rng.dirichlet(np.full(50_000, 0.1), size=2), rng.dirichlet(np.full(50_000, 0.1), size=2)
    rows = race_acceptance(big_p, big_q, 4)
    assert rows[1] == pytest.approx(race_acceptance(big_p[1], big_q[1], 4), abs=1e-15)
    with pytest.raises(ValueError):
        race_acceptance(p, q2, 0)
    with pytest.raises(ValueError):
        race_acceptance(p, q2[:3], 2)


def test_race_table_of_theory():
    """The figures of THEORY §3.12's table (seed-0 softmax pair of §3.11, V = 6): race, RRS with i.i.d. drafts,
    α*_iid, the Gumbel list, for k = 1..4."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, 6)
    p = np.exp(z) / np.exp(z).sum()
    z2 = 0.7 * z + rng.normal(0, 1.0, 6)
    q = np.exp(z2) / np.exp(z2).sum()
    for k, row in zip((1, 2, 3, 4), TABLE):
        got = (race_acceptance(p, q, k), verifier_acceptance(p, q, k, "rrs"), optimal_acceptance(p, q, k, "iid"),
               gumbel_list_acceptance(p, q, k))
        assert got == pytest.approx(row, abs=5e-5)


TABLE = [(0.5413, 0.5797, 0.5797, 0.5413), (0.7058, 0.7058, 0.7746, 0.7681), (0.8016, 0.7547, 0.8770, 0.9156),
         (0.8620, 0.7890, 0.9642, 0.9850)]


def test_race_and_rrs_iid_do_not_dominate_each_other():
    """Same draft law (k i.i.d. draws of q): on 300 edge-case pairs the race is strictly ahead of RRS on some and
    behind on others at each k = 2, 3, 4 (k = 1: DISD <= 1 − TV = RRS always)."""
    rng = np.random.default_rng(9)
    for k in (2, 3, 4):
        diff = []
        for case in range(300):
            p, q = random_pair(rng, int(rng.integers(2, 8)), case)
            diff.append(race_acceptance(p, q, k) - verifier_acceptance(p, q, k, "rrs"))
        assert max(diff) > 0.03 and min(diff) < -0.03
