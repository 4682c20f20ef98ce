"""Sequoia's dynamic program is optimal (brute force over every tree on small budgets); its paths build a static
tree speculator; the hardware-aware search prefers AR on a steep-cost device and a tree on a flat one."""
import functools

import numpy as np
import pytest

import trees
from specjax.costs.profile import CostCurve, CostProfile
from specjax.costs.latency import AcceptanceProfile, Workload, ar_plan, chain_plan, predict
from trees.builders import StaticTree, default_static_paths, make_builder
from trees.configure import best_configuration, tree_round_plan
from trees.sequoia import positional_reward, sequoia_tree, sequoia_trees


@functools.lru_cache(maxsize=None)
def all_trees(budget, ranks, depth, prefix=()):
    """Every set of rank paths below `prefix` (prefix-closed, ranks < `ranks`, depth <= `depth`) with at most
    `budget` nodes: each node's children are any subset of ranks. Cached: the tests share the enumeration."""
    if budget == 0 or len(prefix) == depth:
        return ((),)

    def place(j, left):
        if j == ranks:
            return [()]
        res = list(place(j + 1, left))                             # no child of rank j
        for size in range(1, left + 1):
            child = prefix + (j,)
            for sub in all_trees(size - 1, ranks, depth, child):
                for rest in place(j + 1, left - size):
                    res.append((child,) + sub + rest)
        return res
    return tuple(sorted({tuple(sorted(t)) for t in place(0, budget)}))     # a subtree of at most s nodes repeats


def brute_force(acc, budget, ranks, depth):
    """[budget + 1]: the best E[accepted] = Σ_paths Π_i a[i, p_i] of any tree of at most b nodes, b = 0..budget,
    by enumeration (each path's weight computed once)."""
    weight = functools.lru_cache(maxsize=None)(lambda p: float(np.prod([acc.rate(i, r) for i, r in enumerate(p)])))
    best = np.zeros(budget + 1)
    for t in all_trees(budget, ranks, depth):
        best[len(t):] = np.maximum(best[len(t):], sum(map(weight, t)))
    return best


def _random_acceptance(seed, depth_rows, ranks):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(depth_rows):
        r = rng.dirichlet(np.ones(ranks + 1))[:ranks]               # leaves mass for "no child accepted"
        rows.append(tuple(r))                                      # not necessarily decreasing in rank
    return AcceptanceProfile(tuple(rows))


def test_enumeration_counts_trees():
    """The brute force sees every tree: ordered trees over rank subsets (1 + 2 + 2 ... for k = 2)."""
    assert len(all_trees(1, 2, 3)) == 3                          # {}, {(0,)}, {(1,)}
    assert len(all_trees(2, 2, 3)) == 3 + 1 + 4                  # + both roots' children, + each's one child (2x2)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("depth", [1, 2, 3, 6])
def test_dynamic_program_is_optimal_on_small_budgets(seed, depth):
    ranks = 3
    acc = _random_acceptance(seed, 3 if seed % 2 else 1, ranks)     # depth-dependent or Sequoia's vector
    best = brute_force(acc, 6, ranks, depth)
    for t in sequoia_trees(acc, [1, 2, 3, 4, 5, 6], depth):
        assert t.expected_accepted == pytest.approx(best[t.budget], abs=1e-12), (seed, depth, t.budget)
        assert positional_reward(t.paths, acc) == pytest.approx(t.expected_accepted, abs=1e-12)
        assert len(t.paths) <= t.budget and t.depth <= depth


def test_a_heuristic_tree_is_beaten():
    """Negative control (the brute force can tell trees apart): the position-only guess of `default_static_paths`
    is strictly worse than the optimum for a drafter whose second rank is nearly as good as its first."""
    acc = AcceptanceProfile(((0.45, 0.4, 0.05),))
    guess = default_static_paths(6, max_rank=3)
    best = brute_force(acc, 6, 3, 6)[6]
    assert positional_reward(guess, acc) < best - 1e-3
    assert sequoia_tree(acc, 6).expected_accepted == pytest.approx(best)


def test_chain_when_only_rank_zero_is_ever_accepted():
    acc = AcceptanceProfile(((0.7, 0.0),))
    t = sequoia_tree(acc, 5)
    assert t.paths == tuple((0,) * d for d in range(1, 6))
    assert t.tau == pytest.approx(acc.chain_tau(5))
    assert sequoia_tree(acc, 5, max_depth=2).paths == ((0,), (0, 0))      # zero-value nodes are left out


def test_paths_build_a_static_tree_speculator():
    acc = AcceptanceProfile(((0.6, 0.2, 0.1), (0.5, 0.2, 0.1)))
    t = sequoia_tree(acc, 12, max_depth=4)
    builder = make_builder("static", budget=12, paths=t.paths)
    assert isinstance(builder, StaticTree) and builder.num_nodes == len(t.paths) and builder.max_depth == t.depth
    spec = trees.make_speculator("static", budget=12, paths=t.paths)
    assert spec.builder.paths == builder.paths


def test_bad_input():
    acc = AcceptanceProfile((0.5,))
    with pytest.raises(ValueError):
        sequoia_tree(acc, 0)
    with pytest.raises(ValueError):
        sequoia_tree(acc, 4, max_depth=0)
    with pytest.raises(ValueError, match="prefixes"):
        positional_reward([(0, 1)], acc)
    with pytest.raises(ValueError):
        sequoia_tree([0.5], 4)


# --- the hardware-aware search -------------------------------------------------------------------------------

ACC = AcceptanceProfile(((0.7, 0.15, 0.05), (0.6, 0.15, 0.05)))
GRID = tuple(range(1, 130))


def _profile(target_seconds):
    return CostProfile(target=CostCurve(GRID, tuple(target_seconds)),
                       drafter=CostCurve(GRID, tuple(0.001 + 1e-5 * t for t in GRID)),
                       tree_level=CostCurve(GRID, tuple(0.0012 + 1e-5 * t for t in GRID)),
                       round_overhead=2e-4)


FLAT = _profile([0.010 + 1e-6 * t for t in GRID])               # an accelerator: T barely matters
STEEP = _profile([0.010 * t ** 0.9 for t in GRID])               # verification cost grows with T


def test_search_prefers_a_tree_on_a_flat_device_and_ar_on_a_steep_one():
    flat, steep = best_configuration(FLAT, ACC), best_configuration(STEEP, ACC)
    assert flat.best.method == "static" and flat.best.prediction.plan.verify_tokens > 8
    assert steep.best.method == "ar"
    for search in (flat, steep):
        rates = [c.tokens_per_s for c in search.candidates]
        assert rates == sorted(rates, reverse=True)
        assert search.best_of("chain").method == "chain"


def test_search_result_builds_its_speculator_and_its_prediction_is_the_model():
    best = best_configuration(FLAT, ACC, budgets=(4, 8, 16), depths=(1, 2, 3)).best
    spec = best.speculator()
    assert isinstance(spec, trees.TreeSpeculator)
    assert spec.builder.paths == best.options["paths"]
    again = predict(FLAT, tree_round_plan(spec.builder), positional_reward(spec.builder.paths, ACC) + 1)
    assert again.steady_tokens_per_s == pytest.approx(best.tokens_per_s)
    chain = best_configuration(FLAT, ACC, max_draft=3, budgets=(1,), depths=(1,)).best_of("chain")
    assert chain.speculator().num_draft == chain.options["num_draft"]
    assert chain.tokens_per_s == pytest.approx(
        predict(FLAT, chain_plan(chain.options["num_draft"]), ACC.chain_tau(chain.options["num_draft"]))
        .steady_tokens_per_s)


def test_search_with_a_workload_counts_the_prefill():
    search = best_configuration(FLAT, ACC, workload=Workload(48, 64), budgets=(4,), depths=(2,))
    ar = search.best_of("ar")
    assert ar.tokens_per_s == pytest.approx(predict(FLAT, ar_plan(), 1.0, Workload(48, 64)).tokens_per_s)
    with pytest.raises(ValueError, match="outside the profiled grid"):
        best_configuration(FLAT, ACC, budgets=(200,))


def test_tree_round_plan_of_each_builder():
    for method in trees.TREE_METHODS:
        b = make_builder(method, budget=16)
        plan = tree_round_plan(b, method)
        assert plan.drafter_tokens == b.drafter_tokens_per_round          # prev + root, then each frontier
        assert plan.verify_tokens == b.num_nodes + 1
