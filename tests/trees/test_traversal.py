"""Traversal verification: the exact numpy reference is lossless on enumerated tree laws (i.i.d., without
replacement, deterministic, mixed) and equals block verification on chains; the jax walk matches the reference per
tree (chi-square) and end to end (completed law = target), with negative controls; Monte Carlo length vs exact;
degenerate inputs; bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.testing.stats import chi_square_pvalue_counts
from specjax.verify.block import accept_block
from tests.exact_tables import complete, pattern_index, random_tables, to_draft_tree
from transport.exact.chain import chain_pattern_law, completions, total_variation
from transport.exact.tree_kernels import (completed_law, emitted_law, expected_length, token_stops, traversal_stops,
                                          verify_all)
from transport.exact.tree_laws import ConcreteTree, enumerate_trees
from trees.traversal import traversal_walk, traversal_walk_unchecked

P_MIN = 1e-4
N = 20_000
V = 3
SHAPES = {"chain3": ((((),),),), "binary2": (((), ()), ((), ())), "irregular": ((((),), ()), ((),), ())}
LAWS = ["iid", "without_replacement", "deterministic", ("without_replacement", "deterministic", "deterministic")]


def _tables(seed, conc=0.8):
    rng = np.random.default_rng(seed)
    return random_tables(rng, V, 4, conc), random_tables(rng, V, 3, conc)


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("law", LAWS, ids=str)
def test_reference_is_lossless_on_enumerated_tree_laws(shape, law):
    p, q = _tables(1)
    trees = list(enumerate_trees(SHAPES[shape], law, q))
    target = completions(p, 3)[0]
    for verifier in (lambda t: traversal_stops(t, p, q), lambda t: token_stops(t, p, q)):
        assert total_variation(completed_law(verify_all(trees, verifier), p, 3), target) < 1e-13
    # negative control: emitting from the original target law after deletions is lossy
    bad = verify_all(trees, lambda t: traversal_stops(t, p, q, final_from_original=True))
    assert total_variation(completed_law(bad, p, 3), target) > 1e-3


@pytest.mark.parametrize("law", ["iid", "without_replacement", "deterministic"])
def test_token_enumeration_equals_the_reward_recursion(law):
    """The token-level E[L] by enumeration (transport) equals GTO's recursion (trees.reward); traversal is measured."""
    from trees.reward import expected_accept_length
    from transport.exact.tree_kernels import tree_acceptance
    p, q = _tables(6)
    shape = SHAPES["irregular"]
    exact = tree_acceptance(shape, law, p, q, "token")
    recursion = float(expected_accept_length(shape, law, [t.astype(np.float32) for t in p[:3]],
                                             [t.astype(np.float32) for t in q]))
    assert recursion == pytest.approx(exact, rel=2e-6)
    assert tree_acceptance(shape, law, p, q, "traversal") > 0


@pytest.mark.parametrize("seed", range(4))
def test_traversal_on_a_chain_is_block_verification(seed):
    p, q = _tables(seed, conc=[0.3, 1.0, 3.0, 0.7][seed])
    chains = verify_all(enumerate_trees(SHAPES["chain3"], "iid", q), lambda t: traversal_stops(t, p, q))
    assert np.abs(emitted_law(chains, V, 3) - chain_pattern_law(p, q[:3], "block")).max() < 1e-14


def _batch_run(trees, p, q, seed, depth=3):
    tree, target = to_draft_tree(trees, p, q)
    path, num, tokens = traversal_walk(jax.random.key(seed), tree, target, depth)
    return np.asarray(path), np.asarray(num), np.asarray(tokens)


@pytest.mark.parametrize("law", LAWS, ids=str)
def test_jax_walk_matches_the_reference_on_one_tree(law):
    p, q = _tables(2)
    trees = list(enumerate_trees(SHAPES["irregular"], law, q))
    tree = trees[min(7, len(trees) - 1)][0]
    path, num, tokens = _batch_run([tree] * N, p, q, seed=3)
    exact = emitted_law([(traversal_stops(tree, p, q), 1.0)], V, 3)
    counts = np.bincount(pattern_index(tokens, num, V, 3), minlength=len(exact))
    assert chi_square_pvalue_counts(counts, exact) > P_MIN
    # the path ends at the accepted node and its tokens are the emitted prefix
    for r in range(50):
        nodes = path[r, 1:num[r] + 1]
        assert [tree.tokens[v] for v in nodes] == list(tokens[r, :num[r]]) and np.all(path[r, num[r] + 1:] == -1)
    exact_len = expected_length([(traversal_stops(tree, p, q), 1.0)])
    assert abs(num.mean() - exact_len) < 4.5 * num.std() / np.sqrt(N) + 1e-9


@pytest.mark.parametrize("law", ["iid", "without_replacement"])
def test_jax_walk_is_lossless_end_to_end(law):
    """Trees drawn from the exact tree law, verified by the jax walk, completed with target samples: target law."""
    p, q = _tables(4)
    trees = list(enumerate_trees(SHAPES["binary2"], law, q))
    rng = np.random.default_rng(5)
    probs = np.array([pr for _, pr in trees])
    picks = rng.choice(len(trees), size=N, p=probs / probs.sum())
    _, num, tokens = _batch_run([trees[i][0] for i in picks], p, q, seed=6, depth=2)
    cells = np.bincount(complete(rng, p, tokens, num, 2), minlength=V ** 3)
    target = completions(p, 2)[0].ravel()
    assert chi_square_pvalue_counts(cells, target) > P_MIN
    # power: the emitted patterns reject the token-level walk's law (traversal accepts differently)
    token_law = emitted_law(verify_all(trees, lambda t: token_stops(t, p, q)), V, 2)
    assert chi_square_pvalue_counts(np.bincount(pattern_index(tokens, num, V, 2), minlength=len(token_law)),
                                    token_law) < P_MIN
    exact = expected_length(verify_all(trees, lambda t: traversal_stops(t, p, q)))
    assert abs(num.mean() - exact) < 4.5 * num.std() / np.sqrt(N)


def test_jax_chain_walk_has_the_block_law():
    p, q = _tables(7)
    chain = ConcreteTree((0, 1, 0, 2), (-1, 0, 1, 2), ((1,), (2,), (3,), ()), ("iid",) * 4)
    _, num, tokens = _batch_run([chain] * N, p, q, seed=8)
    tree, target = to_draft_tree([chain] * N, p, q)
    x = jnp.broadcast_to(jnp.array([1, 0, 2], jnp.int32), (N, 3))
    nb, tb = accept_block(jax.random.key(9), x, tree.probs[:, :3], target)
    exact = emitted_law([(traversal_stops(chain, p, q), 1.0)], V, 3)
    for n_, t_ in ((num, tokens), (np.asarray(nb), np.asarray(tb))):
        assert chi_square_pvalue_counts(np.bincount(pattern_index(t_, n_, V, 3), minlength=len(exact)), exact) > P_MIN


def test_degenerate_inputs_and_padding():
    v = 4
    eye = np.eye(v)
    uniform = [np.full((v,) * (d + 1), 1.0 / v) for d in range(3)]
    tree = ConcreteTree((0, 1, 2, 3), (-1, 0, 0, 1), ((1, 2), (3,), (), ()),
                        ("without_replacement", "iid", "iid", "iid"))
    # p = q: the first leaf (depth 2) is always accepted
    _, num, _ = _batch_run([tree] * 64, uniform, uniform, seed=0, depth=2)
    assert np.all(num == 2)
    # disjoint supports: p lives on {0}, q on {1, 2, 3}: nothing accepted, the emitted token is 0
    p_dis = [np.broadcast_to(eye[0], (v,) * (d + 1)).copy() for d in range(3)]
    q_dis = [np.broadcast_to(np.r_[0, 1, 1, 1] / 3, (v,) * (d + 1)).copy() for d in range(3)]
    _, num, tokens = _batch_run([tree] * 64, p_dis, q_dis, seed=0, depth=2)
    assert np.all(num == 0) and np.all(tokens[:, 0] == 0) and np.all(tokens[:, 1:] == -1)
    # one-hot target that matches the second root child: accepted through it
    p_hot = [np.broadcast_to(eye[2], (v,) * (d + 1)).copy() for d in range(3)]
    _, num, tokens = _batch_run([tree] * 64, p_hot, uniform, seed=0, depth=2)
    assert np.all(num == 1) and np.all(tokens[:, :2] == [2, 2])
    # padding: a padded batch (a smaller tree beside a larger one) behaves like the smaller tree alone
    small = ConcreteTree((0, 1), (-1, 0), ((1,), ()), ("iid", "iid"))
    p, q = _tables(3)
    big = ConcreteTree((0, 1, 2, 0), (-1, 0, 0, 1), ((1, 2), (3,), (), ()),
                       ("without_replacement", "iid", "iid", "iid"))
    _, num, tokens = _batch_run([small] * (N // 2) + [big] * 8, p, q, seed=1, depth=2)
    exact = emitted_law([(traversal_stops(small, p, q), 1.0)], V, 2)
    sel = slice(0, N // 2)
    assert chi_square_pvalue_counts(np.bincount(pattern_index(tokens[sel], num[sel], V, 2), minlength=len(exact)),
                                    exact) > P_MIN


def test_unchecked_walk_runs_under_jit():
    p, q = _tables(3)
    tree, target = to_draft_tree([t for t, _ in list(enumerate_trees(SHAPES["binary2"], "iid", q))[:4]], p, q)
    path, num, tokens = jax.jit(traversal_walk_unchecked, static_argnames="max_depth")(jax.random.key(0), tree,
                                                                                        target, max_depth=2)
    assert path.shape == (4, 3) and num.shape == (4,) and tokens.shape == (4, 3)


def test_bad_input_raises_before_tracing():
    p, q = _tables(3)
    good = ConcreteTree((0, 1, 2), (-1, 0, 0), ((1, 2), (), ()), ("iid", "iid", "iid"))
    tree, target = to_draft_tree([good], p, q)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="target_probs"):
        traversal_walk(key, tree, target[:, :2], 1)
    with pytest.raises(ValueError, match="NaN"):
        traversal_walk(key, tree, target.at[0, 0, 0].set(jnp.nan), 1)
    with pytest.raises(ValueError, match="sum to 1"):
        traversal_walk(key, tree, target * 2, 1)
    with pytest.raises(ValueError, match="deeper"):
        deep, tdeep = to_draft_tree([ConcreteTree((0, 1, 2), (-1, 0, 1), ((1,), (2,), ()), ("iid",) * 3)], p, q)
        traversal_walk(key, deep, tdeep, 1)
    with pytest.raises(ValueError, match="several slots"):
        traversal_walk(key, tree.replace(children=tree.children.at[0, 0, 1].set(1)), target, 1)
    with pytest.raises(ValueError, match="q = 0"):
        traversal_walk(key, tree.replace(probs=tree.probs.at[0, 0].set(jnp.eye(V)[2])), target, 1)
    with pytest.raises(ValueError, match="max_depth"):
        traversal_walk(key, tree, target, 0)
