"""The jax two-step rules (specjax.verify.importance): sampled output ~ p (chi-square), Monte Carlo acceptance =
exact membership acceptance, per-tuple (slot, token) law = the numpy kernel, padding, degenerate and bad inputs, and
a negative control (speculative sampling against q instead of the selection law)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.testing.stats import chi_square_pvalue_counts
from specjax.verify import draft_laws
from specjax.verify.importance import importance_argmax, importance_pair
from transport import verifier_acceptance
from transport.exact import dispatch, kernels
from transport.exact.importance import pair_selection_lp

N = 20_000
P_MIN = 1e-4


def _pair(seed, v=6):
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.full(v, 0.7)), rng.dirichlet(np.full(v, 0.7))
    p[-1] = 0.0
    return p / p.sum(), q


def _run(rule, p, q, k, seed, **kw):
    def one(key):
        kd, kv = jax.random.split(key)
        drafts, valid = draft_laws.sample_iid(kd, q, k)
        return (*rule(kv, p, q, drafts, valid, **kw), drafts)
    return map(np.asarray, jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), N)))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_argmax_rule_is_lossless_and_accepts_at_the_exact_rate(k):
    p, q = _pair(k)
    slot, token, drafts = _run(importance_argmax, jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32), k, seed=k)
    assert chi_square_pvalue_counts(np.bincount(token, minlength=len(p)), p) > P_MIN
    hit = slot >= 0
    assert np.all(token[hit] == drafts[hit, slot[hit]])
    exact = verifier_acceptance(p, q, k, "khisti")
    assert abs(hit.mean() - exact) < 5 * np.sqrt(exact * (1 - exact) / N)


def test_pair_rule_reaches_alpha_star_and_is_lossless():
    p, q = _pair(7)
    sel = pair_selection_lp(p, q)
    slot, token, _ = _run(importance_pair, jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32), 2, seed=8,
                          pair=sel.pair, marginal=sel.marginal)
    assert chi_square_pvalue_counts(np.bincount(token, minlength=len(p)), p) > P_MIN
    exact = verifier_acceptance(p, q, 2, "khisti_lp")
    assert abs((slot >= 0).mean() - exact) < 5 * np.sqrt(exact * (1 - exact) / N)


@pytest.mark.parametrize("tuple_", [(2, 2, 0), (1, 3, 0)])
def test_conditional_law_per_tuple_matches_the_kernel(tuple_):
    p, q = _pair(3)
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(4), N)
        slot, token = jax.jit(jax.vmap(lambda key: importance_argmax(
            key, jnp.asarray(p), jnp.asarray(q), jnp.asarray(tuple_, jnp.int32), jnp.ones(3, bool))))(keys)
    counts = np.zeros((4, len(p)))
    np.add.at(counts, (np.asarray(slot) + 1, np.asarray(token)), 1)
    assert chi_square_pvalue_counts(counts, dispatch.kernel("khisti", p, q, tuple_)) > P_MIN
    # negative control: the same samples reject single-draft speculative sampling against q of the selected draft
    wrong = np.zeros((4, len(p)))
    best = max(range(3), key=lambda j: (p[tuple_[j]] / q[tuple_[j]], -tuple_[j], -j))
    wrong[:2] = kernels.kernel_rrs(p, q, np.array([tuple_[best]]), False)
    wrong_full = np.zeros_like(counts)
    wrong_full[0] = wrong[0]
    first = tuple_.index(tuple_[best])
    wrong_full[first + 1] = wrong[1]
    for j, x in enumerate(tuple_):                  # a correction landing on a draft counts for its first slot
        if wrong_full[0, x] > 0 and j == tuple_.index(x):
            wrong_full[j + 1, x] += wrong_full[0, x]
            wrong_full[0, x] = 0.0
    assert chi_square_pvalue_counts(counts, wrong_full) < P_MIN


def test_padded_slots_behave_as_absent():
    p, q = _pair(5)
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(6), N)
        run = lambda drafts, valid: map(np.asarray, jax.jit(jax.vmap(lambda key: importance_argmax(
            key, jnp.asarray(p), jnp.asarray(q), jnp.asarray(drafts, jnp.int32), jnp.asarray(valid))))(keys))
        slot, token = run([1, 3, 0], [True, False, True])
    assert not np.any(slot == 1)
    slot = np.where(slot == 2, 1, slot)                 # [x, pad, y] -> slots of [x, y]
    counts = np.zeros((3, len(p)))
    np.add.at(counts, (slot + 1, token), 1)
    assert chi_square_pvalue_counts(counts, dispatch.kernel("khisti", p, q, (1, 0))) > P_MIN


def test_degenerate_inputs():
    key = jax.random.key(0)
    q = jnp.array([0.5, 0.5, 0.0, 0.0])
    # p = q, one draft: always accepted
    slot, tok = importance_argmax(key, q, q, jnp.array([1], jnp.int32), jnp.array([True]))
    assert int(slot) == 0 and int(tok) == 1
    # disjoint supports: never accepted, the output lies in supp p
    p = jnp.array([0.0, 0.0, 0.5, 0.5])
    for i in range(8):
        slot, tok = importance_argmax(jax.random.key(i), p, q, jnp.array([0, 1], jnp.int32), jnp.array([True, True]))
        assert int(slot) == -1 and int(tok) in (2, 3)
    # one-hot q, k larger than the support
    oh = jnp.array([0.0, 1.0, 0.0, 0.0])
    slot, tok = importance_argmax(key, oh, oh, jnp.array([1, 1, 1], jnp.int32), jnp.ones(3, bool))
    assert int(slot) == 0 and int(tok) == 1


def test_bad_input_raises():
    p = jnp.array([0.5, 0.5])
    d = jnp.array([0, 1], jnp.int32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="k >= 1"):
        importance_argmax(key, p, p, jnp.zeros((0,), jnp.int32), jnp.zeros((0,), bool))
    with pytest.raises(ValueError, match="at least one draft"):
        importance_argmax(key, p, p, d, jnp.array([False, False]))
    with pytest.raises(ValueError, match="NaN"):
        importance_argmax(key, jnp.array([jnp.nan, 1.0]), p, d, jnp.ones(2, bool))
    with pytest.raises(ValueError, match="sum to 1"):
        importance_argmax(key, p * 3, p, d, jnp.ones(2, bool))
    with pytest.raises(ValueError, match="q\\(x\\) = 0"):
        importance_argmax(key, p, jnp.array([1.0, 0.0]), d, jnp.ones(2, bool))
    with pytest.raises(ValueError, match="at most 2"):
        importance_pair(key, p, p, jnp.array([0, 1, 0], jnp.int32), jnp.ones(3, bool), pair=jnp.eye(2),
                        marginal=p)
    with pytest.raises(ValueError, match="pair must be"):
        importance_pair(key, p, p, d, jnp.ones(2, bool), pair=jnp.eye(3), marginal=p)
