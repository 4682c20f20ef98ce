"""accept_chain alone on synthetic (p, q): lossless output law, exact acceptance rate, greedy rule, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.testing.stats import binomial_z, chi_square_pvalue
from specjax.verify import PAD_TOKEN, accept_chain

ALPHA = 1e-4
N = 20000


def _dirichlet(rng, v, conc=0.5):
    return rng.dirichlet(np.full(v, conc))


def _cases():
    rng = np.random.default_rng(0)
    v = 8
    p = np.stack([_dirichlet(rng, v) for _ in range(4)])
    q = np.stack([_dirichlet(rng, v) for _ in range(3)])
    disjoint_p = np.tile(np.r_[np.full(4, 0.25), np.zeros(4)], (4, 1))
    disjoint_q = np.tile(np.r_[np.zeros(4), np.full(4, 0.25)], (3, 1))
    onehot_q = np.tile(np.eye(v)[2], (3, 1))
    return {
        "random": (p, q),
        "p_equals_q": (np.concatenate([q, q[:1]]), q),
        "disjoint": (disjoint_p, disjoint_q),
        "onehot_q": (p, onehot_q),
    }


def _sample(p, q, n, seed):
    """Draw n rows of drafts from q and verify against p (shared across rows)."""
    k = q.shape[0]
    key_d, key_v = jax.random.split(jax.random.key(seed))
    draft_tokens = jax.random.categorical(key_d, jnp.log(jnp.asarray(q, jnp.float32) + 1e-38), shape=(n, k))
    q_b = jnp.broadcast_to(jnp.asarray(q, jnp.float32), (n,) + q.shape)
    p_b = jnp.broadcast_to(jnp.asarray(p, jnp.float32), (n,) + p.shape)
    # make float32 rows sum to one within f32 tolerance
    num, tokens = accept_chain(key_v, draft_tokens.astype(jnp.int32), q_b, p_b)
    return np.asarray(num), np.asarray(tokens)


@pytest.mark.parametrize("case", ["random", "p_equals_q", "disjoint", "onehot_q"])
def test_output_law_is_target_at_every_position(case):
    p, q = _cases()[case]
    num, tokens = _sample(p, q, N, seed=1)
    k = q.shape[0]
    # position 0 is always emitted and must follow p_0; position j, given that j drafts were accepted, follows p_j
    assert chi_square_pvalue(tokens[:, 0], p[0]) > ALPHA
    for j in range(1, k + 1):
        reached = num >= j
        if reached.sum() >= 200:
            assert chi_square_pvalue(tokens[reached, j], p[j]) > ALPHA, f"position {j}"
    # exact first-draft acceptance probability: sum min(p_0, q_0)
    accept_prob = np.minimum(p[0], q[0]).sum()
    assert abs(binomial_z(int((num >= 1).sum()), N, accept_prob)) < 4.5
    # structure: accepted prefix, one emitted token, then padding
    for j in range(k + 1):
        assert np.all((tokens[:, j] == PAD_TOKEN) == (j > num))


def test_statistical_test_has_power_against_a_wrong_rule():
    """Negative control: treating every draft as accepted gives q's law, which the same test must reject."""
    p, q = _cases()["random"]
    rng = np.random.default_rng(3)
    wrong = rng.choice(len(q[0]), size=N, p=q[0])
    assert chi_square_pvalue(wrong, p[0]) < ALPHA


def test_greedy_rule_accepts_while_draft_equals_target_argmax():
    v, k = 6, 4
    target_argmax = np.array([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
    drafts = np.array([[1, 2, 0, 4], [1, 2, 3, 4], [5, 0, 0, 0]])
    p = np.eye(v, dtype=np.float32)[target_argmax]
    q = np.eye(v, dtype=np.float32)[drafts]
    num, tokens = accept_chain(jax.random.key(0), jnp.asarray(drafts, jnp.int32), jnp.asarray(q), jnp.asarray(p))
    assert np.asarray(num).tolist() == [2, 4, 0]
    assert np.asarray(tokens).tolist() == [[1, 2, 3, -1, -1], [1, 2, 3, 4, 5], [0, -1, -1, -1, -1]]


def _valid_inputs(b=2, k=3, v=5):
    q = np.full((b, k, v), 1.0 / v, np.float32)
    p = np.full((b, k + 1, v), 1.0 / v, np.float32)
    d = np.zeros((b, k), np.int32)
    return d, q, p


@pytest.mark.parametrize("mutate, message", [
    (lambda d, q, p: (d, q, _set(p, (0, 0, 0), -0.1)), "negative"),
    (lambda d, q, p: (d, _set(q, (1, 2, 3), np.nan), p), "NaN"),
    (lambda d, q, p: (d, q * 1.5, p), "sum to 1"),
    (lambda d, q, p: (d, q, p[:, :, :4] / p[:, :, :4].sum(-1, keepdims=True)), "vocabulary"),
    (lambda d, q, p: (d, q, p[:, :3]), "K\\+1"),
    (lambda d, q, p: (d[:, :0], q[:, :0], p[:, :1]), "at least one draft"),
    (lambda d, q, p: (d + 7, q, p), "outside"),
])
def test_bad_input_raises_before_tracing(mutate, message):
    d, q, p = _valid_inputs()
    d, q, p = mutate(d, q, p)
    with pytest.raises(ValueError, match=message):
        accept_chain(jax.random.key(0), d, q, p)


def test_draft_with_zero_probability_is_rejected():
    d, q, p = _valid_inputs()
    q = q.copy()
    q[0, 0] = np.r_[0.0, np.full(4, 0.25)]
    with pytest.raises(ValueError, match="zero probability"):
        accept_chain(jax.random.key(0), d, q, p)


def _set(a, idx, value):
    a = np.array(a)
    a[idx] = value
    return a


def test_bfloat16_softmax_rows_over_a_large_vocabulary_are_accepted():
    """A real bf16 softmax row drifts from 1 by more than float32's 1e-4; the tolerance follows the dtype."""
    v, k = 128_000, 2
    logits = 3.0 * jax.random.normal(jax.random.key(7), (1, 2 * k + 1, v))
    probs = jax.nn.softmax(logits.astype(jnp.bfloat16), axis=-1)
    q, p = probs[:, :k], probs[:, k:]
    assert np.abs(np.asarray(probs, np.float64).sum(-1) - 1).max() > 1e-4
    drafts = jax.random.categorical(jax.random.key(8), jnp.log(q.astype(jnp.float32)), axis=-1).astype(jnp.int32)
    num, tokens = accept_chain(jax.random.key(9), drafts, q, p)
    n = int(num[0])
    assert 0 <= n <= k and 0 <= int(tokens[0, n]) < v and np.all(np.asarray(tokens[0, n + 1:]) == PAD_TOKEN)
    with pytest.raises(ValueError, match="sum to 1"):
        accept_chain(jax.random.key(9), drafts, q, p * 1.05)


def test_a_malformed_key_is_refused():
    d, q, p = _valid_inputs()
    with pytest.raises(ValueError, match="PRNG key"):
        accept_chain(0, d, q, p)
