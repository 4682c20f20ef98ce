"""GTO's exact tree reward against simulated rounds of the real tree walk, for chain / binary / irregular trees and
every draw law; DTR identities; differentiability; bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trees.walk import default_rules

RULES = default_rules()
from trees.reward import dtr, expected_accept_length, simulate_accept_length, tree_reward
from trees.tree import LAW_DET, LAW_IID, LAW_WOR, tree_from_parents

V = 4
SHAPES = {
    "chain3": ((((),),),),
    "binary2": (((), ()), ((), ())),
    "irregular": ((((),), ()), ((),), ()),
}


def _tables(seed, depth, v=V, scale=1.5):
    rng = np.random.default_rng(seed)
    def soft(shape):
        x = rng.normal(size=shape) * scale
        e = np.exp(x - x.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)
    p = [soft((v,) * (d + 1)) for d in range(depth)]
    q = [soft((v,) * (d + 1)) for d in range(depth)]
    return p, q


@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("law", ["iid", "without_replacement", "deterministic"])
def test_recursion_matches_simulated_rounds(shape_name, law):
    shape = SHAPES[shape_name]
    p, q = _tables(7, 3)
    exact = float(expected_accept_length(shape, law, p, q))
    mean, se = simulate_accept_length(jax.random.key(1), shape, law, p, q, RULES, num_rounds=20000)
    assert abs(mean - exact) < 4.5 * se + 1e-6, (shape_name, law, exact, mean, se)
    assert 0.1 < exact < 3.0                      # non-trivial acceptance


def test_simulation_detects_a_wrong_reward():
    """Power check: the chain reward of a *different* draft law is rejected by the same bound."""
    shape = SHAPES["binary2"]
    p, q = _tables(7, 3)
    _, q_other = _tables(8, 3)
    wrong = float(expected_accept_length(shape, "iid", p, q_other))
    mean, se = simulate_accept_length(jax.random.key(1), shape, "iid", p, q, RULES, num_rounds=20000)
    assert abs(mean - wrong) > 4.5 * se


def test_chain_reward_is_the_specdec_recursion():
    p, q = _tables(3, 2)
    a0 = np.minimum(p[0], q[0])
    expect = sum(a0[x] * (1 + np.minimum(p[1][x], q[1][x]).sum()) for x in range(V))
    got = float(expected_accept_length((((),),), "iid", p, q))
    assert got == pytest.approx(expect, rel=1e-5)
    assert float(expected_accept_length((((),),), "without_replacement", p, q)) == pytest.approx(expect, rel=1e-5)


def test_deterministic_reward_equals_dtr_and_tree_reward():
    p, q = _tables(5, 2)
    top = np.argsort(-q[0], kind="stable")[:2]
    # root children = top-2 of q; each child's child = top-1 of q after it
    tokens = [0, top[0], top[1], np.argmax(q[1][top[0]]), np.argmax(q[1][top[1]])]
    tree = tree_from_parents(tokens, [-1, 0, 0, 1, 2], law=LAW_DET, vocab_size=V)
    target = np.zeros((1, 5, V), np.float32)
    target[0, 0], target[0, 1], target[0, 2] = p[0], p[1][top[0]], p[1][top[1]]
    target[0, 3:] = 1.0 / V
    expect = sum(p[0][top[j]] * (1 + p[1][top[j]][tokens[3 + j]]) for j in range(2))
    assert float(expected_accept_length(((((),), ((),))), "deterministic", p, q)) == pytest.approx(expect, rel=1e-5)
    assert float(dtr(tree, jnp.asarray(target), 2)[0]) == pytest.approx(expect, rel=1e-5)
    assert float(tree_reward(tree, jnp.asarray(target), 2)[0]) == pytest.approx(expect, rel=1e-5)


@pytest.mark.parametrize("law", [LAW_IID, LAW_WOR])
def test_tree_reward_conditional_mean_matches_recursion(law):
    """Averaged over drafted children, E[L | tree] equals the recursion (depth-1 tree with 2 slots, exact average
    by enumerating every child pair)."""
    p, q = _tables(11, 1)
    shape = ((), ())
    exact = float(expected_accept_length(shape, law, p, q))
    total = 0.0
    for a in range(V):
        for b in range(V):
            if law == LAW_WOR and a == b:
                continue
            prob = q[0][a] * q[0][b] if law == LAW_IID else q[0][a] * q[0][b] / (1 - q[0][a])
            tree = tree_from_parents([0, a, b], [-1, 0, 0], law=law, probs=np.stack([q[0]] * 3), vocab_size=V)
            target = jnp.asarray(np.stack([p[0]] * 3)[None])
            total += prob * float(tree_reward(tree, target, 1)[0])
    assert total == pytest.approx(exact, rel=1e-4)


def test_reward_is_differentiable_in_drafter_logits():
    p, q = _tables(2, 2)
    logits = [jnp.log(jnp.asarray(t)) for t in q]
    shape = SHAPES["binary2"]

    def f(l0):
        return expected_accept_length(shape, "without_replacement", p, [jax.nn.softmax(l0), jax.nn.softmax(logits[1])])
    g = jax.grad(f)(logits[0])
    assert np.all(np.isfinite(np.asarray(g))) and float(jnp.abs(g).sum()) > 0
    # moving q towards p raises the reward
    better = expected_accept_length(shape, "without_replacement", p, [0.5 * (q[0] + p[0]), q[1]])
    assert float(better) > float(f(logits[0]))


def test_reward_bad_input():
    p, q = _tables(2, 2)
    with pytest.raises(ValueError, match="law"):
        expected_accept_length(((),), "beam", p, q)
    with pytest.raises(ValueError, match="tables"):
        expected_accept_length(((((),),),), "iid", p, q)
    with pytest.raises(ValueError, match="vocabulary"):
        expected_accept_length(tuple(() for _ in range(V + 1)), "without_replacement", p, q)
