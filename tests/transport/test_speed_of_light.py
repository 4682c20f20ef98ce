"""The speed-of-light caps (transport.optimal.speed_of_light, THEORY §4.4) against brute force on tiny
context-dependent tables: the best-first tree equals a knapsack over every prefix-closed tree, the chain's branch and
bound equals the enumeration of every path, no verifier of any deterministic tree of any shape exceeds the cap and the
target's own top-m tree of the best shape reaches it; sampled drafts are outside its scope (negative control); the
entropy bounds hold (threshold inequality, renewal bound, Lorden) and are tight where the text says."""
import itertools
from functools import lru_cache

import numpy as np
import pytest

from transport.exact.tree_kernels import tree_acceptance
from transport.optimal.speed_of_light import (chain_cap, chain_search, greedy_chain, pool_law, renewal_bound,
                                              surprisal_moments, tables_law, threshold_mass, tree_cap)


def random_tables(rng, v: int, depth: int, conc: float = 0.7) -> list[np.ndarray]:
    """Context-dependent laws: tables[d] `[V]*d + [V]` (d = 0..depth), Dirichlet rows, some zeros."""
    out = []
    for d in range(depth + 1):
        t = rng.dirichlet(np.full(v, conc), size=v ** d)
        t[rng.random(t.shape) < 0.15] = 0.0
        t[np.arange(len(t)), rng.integers(v, size=len(t))] += 0.05       # never an all-zero row
        out.append((t / t.sum(1, keepdims=True)).reshape((v,) * (d + 1)))
    return out


def knapsack_tree_value(law, v: int, n: int) -> float:
    """max Σ p(u) over prefix-closed sets of n prefixes, by splitting the budget among the children (independent of
    the best-first search)."""
    @lru_cache(maxsize=None)
    def best(prefix: tuple, prob: float, budget: int) -> float:      # best value of `budget` nodes below prefix
        p = law(prefix)
        kids = [(prefix + (t,), prob * p[t]) for t in range(v) if p[t] > 0]
        table = np.zeros(budget + 1)                                  # over children processed so far
        for kid, kp in kids:
            new = table.copy()
            for b in range(1, budget + 1):
                for take in range(1, b + 1):                          # the kid and take-1 nodes below it
                    new[b] = max(new[b], table[b - take] + kp + (best(kid, kp, take - 1) if take > 1 else 0.0))
            table = new
        return float(table[budget])
    return best((), 1.0, n)


def shapes(n: int):
    """Every ordered tree shape (nested tuples, trees.reward's convention) with n nodes below the root."""
    if n == 0:
        yield ()
        return
    for first in range(1, n + 1):
        for sub in shapes(first - 1):
            for rest in shapes(n - first):
                yield (sub,) + rest


def test_tree_cap_equals_the_best_prefix_closed_tree():
    rng = np.random.default_rng(0)
    for seed in range(40):
        v = int(rng.integers(2, 4))
        law = tables_law(random_tables(rng, v, 3))
        for n in (1, 2, 3, 5, 7):
            cap = tree_cap(law, n)
            assert cap.accepted == pytest.approx(knapsack_tree_value(law, v, n), abs=1e-12)
            assert len(set(cap.prefixes)) == n and all(x[:-1] in cap.prefixes or len(x) == 1 for x in cap.prefixes)
            probs = [np.prod([law(x[:d])[x[d]] for d in range(len(x))]) for x in cap.prefixes]
            np.testing.assert_allclose(cap.probabilities, probs, atol=1e-15)


def test_chain_cap_equals_the_best_of_every_path():
    rng = np.random.default_rng(1)
    for seed in range(40):
        v = int(rng.integers(2, 5))
        law = tables_law(random_tables(rng, v, 3, conc=float(rng.choice([0.3, 1.0, 3.0]))))
        for n in (1, 2, 3, 5):
            brute = 0.0
            for path in itertools.product(range(v), repeat=n):
                prob, total = 1.0, 0.0
                for d in range(n):
                    prob *= law(path[:d])[path[d]]
                    total += prob
                brute = max(brute, total)
            cap = chain_cap(law, n)
            assert cap.accepted == pytest.approx(brute, abs=1e-12)
            assert greedy_chain(law, n).accepted <= cap.accepted + 1e-15
            assert cap.accepted <= tree_cap(law, n).accepted + 1e-15          # a chain is a tree
            cut = chain_search(law, n, max_expansions=2)                      # a bracket when stopped early
            assert cut.best.accepted - 1e-15 <= brute <= cut.upper + 1e-15


def test_no_verifier_of_a_deterministic_tree_exceeds_the_cap_and_the_targets_own_tree_reaches_it():
    """Every shape with n <= 4 nodes, children = the top-m of a drafter's q (law "deterministic"), verified token-level
    (point masses) and by traversal: E[accepted] <= tree_cap (chains: <= chain_cap). With q = p the best shape
    reaches tree_cap exactly: the cap is the optimum of deterministic drafting, not just a bound."""
    rng = np.random.default_rng(2)
    for seed in range(6):
        p_tables = random_tables(rng, 3, 4)
        q_tables = random_tables(rng, 3, 3, conc=0.4)
        law = tables_law(p_tables)
        for n in (1, 2, 3, 4):
            cap, chain = tree_cap(law, n).accepted, chain_cap(law, n).accepted
            best_own = 0.0
            for shape in shapes(n):
                for verifier in ("token", "traversal"):
                    got = tree_acceptance(shape, "deterministic", p_tables, q_tables, verifier)
                    assert got <= cap + 1e-12
                own = tree_acceptance(shape, "deterministic", p_tables, p_tables[:4], "token")
                best_own = max(best_own, own)
                if all(len(node) <= 1 for node in _nodes(shape)):                 # a chain
                    assert own <= chain + 1e-12
            assert best_own == pytest.approx(cap, abs=1e-12)


def _nodes(shape):
    yield shape
    for sub in shape:
        yield from _nodes(sub)


def test_sampled_drafts_are_outside_the_scope():
    """Negative control: a drafter that *samples* from the target (q = p, i.i.d. children) with the standard rule
    accepts every draft of a chain, n > chain_cap: the cap is for deterministic trees only."""
    rng = np.random.default_rng(3)
    p_tables = random_tables(rng, 3, 3)
    chain_shape = ((((),),),)                                    # three drafts in a row
    got = tree_acceptance(chain_shape, "iid", p_tables, p_tables[:3], "token")
    assert got == pytest.approx(3.0, abs=1e-12)
    assert chain_cap(tables_law(p_tables), 3).accepted < 3.0 - 0.1


def test_threshold_inequality_and_renewal_bound():
    """For every t: tree_cap <= N(t) + n e^{-t}. Context-free laws (i.i.d. surprisals): N(t) <= t/μ + μ₂/μ² − 1
    (Lorden) and tree_cap <= renewal_bound, for n up to 64 (60 laws)."""
    rng = np.random.default_rng(4)
    for case in range(60):
        v = int(rng.integers(2, 7))
        p = rng.dirichlet(np.full(v, float(rng.choice([0.2, 1.0, 5.0]))))
        law = tables_law([p])
        mu, mu2 = surprisal_moments(p)
        for t in (0.0, 0.5, 2.0, 4.0):
            n_t = threshold_mass(law, t)
            assert n_t <= t / mu + mu2 / mu**2 - 1 + 1e-12
            for n in (1, 4, 16):
                assert tree_cap(law, n).accepted <= n_t + n * np.exp(-t) + 1e-12
        for n in (1, 8, 16, 32, 64):
            assert tree_cap(law, n).accepted <= renewal_bound(mu, mu2, n) + 1e-12


def test_renewal_bound_is_tight_where_lorden_is():
    """Uniform law on m tokens: the cap counts full levels; the bound exceeds it by at most (log(μ n / m^L) + 1)/μ
    (here <= 1.9 drafts for n <= 64); bound / cap = 1.20 at n = 8**5 (m = 8), and tends to 1 as n grows."""
    for m in (2, 4, 8):
        p = np.full(m, 1.0 / m)
        mu, mu2 = surprisal_moments(p)
        for n in (8, 64):
            cap = tree_cap(tables_law([p]), n).accepted
            assert 0 <= renewal_bound(mu, mu2, n) - cap <= 1.9
    p = np.full(8, 1 / 8)
    mu, mu2 = surprisal_moments(p)
    n = 8 ** 5
    assert 1.0 < renewal_bound(mu, mu2, n) / tree_cap(tables_law([p]), n).accepted < 1.21


def test_pool_model_monte_carlo_stays_below_the_renewal_bound():
    """Laws i.i.d. across prefixes from a pool (the paper's model): the mean cap over 300 random trees is below the
    renewal bound of the pool's mean moments."""
    rng = np.random.default_rng(5)
    pool = rng.dirichlet(np.full(6, 0.5), size=12)
    mu, mu2 = (m.mean() for m in surprisal_moments(pool))
    for n in (4, 16):
        caps = [tree_cap(pool_law(pool, rng), n).accepted for _ in range(300)]
        assert np.mean(caps) + 3 * np.std(caps) / np.sqrt(300) <= renewal_bound(mu, mu2, n)


def test_bad_input_raises():
    law = tables_law([np.array([0.5, 0.5])])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            tree_cap(law, bad)
        with pytest.raises(ValueError):
            chain_cap(law, bad)
    with pytest.raises(ValueError):
        tree_cap(lambda prefix: np.array([0.5, 0.6]), 2)
    with pytest.raises(ValueError):
        renewal_bound(0.0, 1.0, 4)
    with pytest.raises(ValueError):
        renewal_bound(1.0, 0.5, 4)                                    # μ₂ < μ²: no such surprisal


def test_study_rows_on_a_small_pool():
    """The study's rows (transport.studies.speed_of_light): in tokens per call, the tree cap of the pool model lies
    between the one-level cap (a one-level tree is a tree: E[top-n mass of the root law]) and the renewal bound; the
    chain bracket is ordered and below the tree; a drafter's one-level tree is below the one-level cap."""
    from transport.studies.speed_of_light import SpeedOfLightSetting, speed_of_light_rows
    rng = np.random.default_rng(6)
    pool = rng.dirichlet(np.full(8, 0.4), size=16)
    drafter = rng.dirichlet(np.full(8, 0.4), size=16)
    rows = speed_of_light_rows(pool, (2, 4, 8), rng, SpeedOfLightSetting(400, 40, 2000), {"d": drafter})
    for r in rows:
        slack = 3 * r["tree_cap_se"]
        assert r["one_level_cap"] - slack <= r["tree_cap"] <= r["renewal_bound"] + slack
        assert r["chain_cap_low"] <= r["chain_cap_high"] and r["chain_exact_share"] == 1.0
        assert r["chain_cap_low"] <= r["tree_cap"] + slack
        assert r["chain_cap_low"] <= r["tree_cap_paired"] + 1e-12                     # the same laws: never above
        assert r["one_level_d"] <= r["one_level_cap"] + 1e-12
