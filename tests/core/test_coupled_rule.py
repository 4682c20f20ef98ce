"""The jax coupled rules (specjax.verify.coupled, THEORY §3.11): the sampled joint law of (draft, token) and of (slot,
token) is the exact one of transport.exact.coupled (chi-square at fixed seeds, with negative controls that must fail),
the output is the same token for token under different drafters, degenerate inputs, padding and bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.testing.stats import chi_square_pvalue_counts
from specjax.verify import coupled, draft_laws, multi_draft
from specjax.verify.names import COUPLED_RULE_LAWS, DRAFT_LAWS
from transport.exact.coupled import disd_joint, gumbel_list_law

N = 20_000
P_MIN = 1e-4          # chi-square p-value threshold (fixed seeds: a failure is a real, reproducible discrepancy)


def _pair(seed, v=6):
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.full(v, 0.7)), rng.dirichlet(np.full(v, 0.7))
    p[-1] = 0.0                                    # a token the target never emits
    return (p / p.sum()).astype(np.float32), q.astype(np.float32)


def _f64(x):
    x = np.asarray(x, np.float64)
    return x / x.sum()


def _run(p, q, k, seed, draft_key=lambda key: key):
    """N rounds: drafts from `draft_key(key)` (the same key by default), verified with `key`."""
    def one(key):
        drafts, valid = coupled.coupled_drafts(draft_key(key), q, k)
        slot, token = coupled.gumbel_list(key, p, q, drafts, valid)
        return slot, token, drafts
    keys = jax.random.split(jax.random.key(seed), N)
    return map(np.asarray, jax.jit(jax.vmap(one))(keys))


def test_disd_joint_law_of_draft_and_token_is_exact():
    p, q = _pair(1)
    run = jax.jit(jax.vmap(lambda key: (coupled.coupled_drafts(key, q, 1)[0][0],
                                        *coupled.disd(key, p, q, *coupled.coupled_drafts(key, q, 1)))))
    draft, slot, token = map(np.asarray, run(jax.random.split(jax.random.key(2), N)))
    assert np.array_equal(slot == 0, draft == token) and set(np.unique(slot)) <= {-1, 0}
    counts = np.zeros((6, 6))
    np.add.at(counts, (draft, token), 1)
    exact = disd_joint(_f64(p), _f64(q))
    assert chi_square_pvalue_counts(counts, exact) > P_MIN
    assert chi_square_pvalue_counts(counts.sum(0), _f64(p)) > P_MIN                  # lossless
    # negative controls: an independent draft (no coupling), and emitting the draft (a law of q, not p)
    assert chi_square_pvalue_counts(counts, np.outer(_f64(q), _f64(p))) < P_MIN
    assert chi_square_pvalue_counts(counts.sum(1), _f64(p)) < P_MIN


@pytest.mark.parametrize("k", [2, 3])
def test_gumbel_list_slot_and_token_law_is_exact(k):
    p, q = _pair(3)
    slot, token, drafts = _run(jnp.asarray(p), jnp.asarray(q), k, seed=4)
    hit = slot >= 0
    assert np.all(drafts[hit, slot[hit]] == token[hit])
    counts = np.zeros((k + 1, 6))
    np.add.at(counts, (slot + 1, token), 1)
    exact = gumbel_list_law(_f64(p), _f64(q), k)
    assert chi_square_pvalue_counts(counts, exact) > P_MIN
    # negative control: drafts from an independent key are still verified losslessly, but not by the coupled law
    slot, token, _ = _run(jnp.asarray(p), jnp.asarray(q), k, seed=4, draft_key=lambda key: jax.random.fold_in(key, 1))
    assert chi_square_pvalue_counts(np.bincount(token, minlength=6), _f64(p)) > P_MIN
    counts = np.zeros((k + 1, 6))
    np.add.at(counts, (slot + 1, token), 1)
    assert chi_square_pvalue_counts(counts, exact) < P_MIN


def test_output_is_invariant_to_the_drafter():
    """For a fixed key the emitted token is the target's own race winner, token for token, whatever the drafter
    (two random drafters, a one-hot drafter, the target itself, k = 1 and k = 3); RRS with the same keys is not."""
    p, q1 = _pair(5)
    _, q2 = _pair(6)
    one_hot = np.eye(6, dtype=np.float32)[2]
    keys = jax.random.split(jax.random.key(7), 2_000)
    reference = np.asarray(jax.vmap(lambda key: coupled.target_token(key, p))(keys))
    accepted = []
    for q in (q1, q2, one_hot, p):
        for k in (1, 3):
            if k > np.count_nonzero(q):
                k = 1
            slot, token, _ = map(np.asarray, jax.jit(jax.vmap(lambda key: (
                *coupled.gumbel_list(key, p, q, *coupled.coupled_drafts(key, q, k)), 0)))(keys))
            assert np.array_equal(token, reference)
            accepted.append((slot >= 0).mean())
    assert len(set(accepted)) > 3                                  # the drafters really differ
    rrs = [np.asarray(jax.jit(jax.vmap(lambda key: multi_draft.rrs_iid(
        jax.random.fold_in(key, 1), p, q, *draft_laws.sample_iid(key, q, 1))[1]))(keys)) for q in (q1, q2)]
    assert not np.array_equal(rrs[0], rrs[1])


def test_coupled_drafts_are_gumbel_top_k_and_share_the_race_across_dtypes():
    p, q = _pair(8)
    keys = jax.random.split(jax.random.key(9), 500)
    ours = jax.vmap(lambda key: coupled.coupled_drafts(key, q, 3))(keys)
    theirs = jax.vmap(lambda key: draft_laws.sample_without_replacement(key, q, 3))(keys)
    assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])
    with jax.enable_x64(True):                     # a float64 verifier sees the float32 drafter's race
        wide = np.asarray(jax.vmap(lambda key: coupled.target_token(key, _f64(p)))(keys))
    narrow = np.asarray(jax.vmap(lambda key: coupled.target_token(key, p))(keys))
    assert np.array_equal(wide, narrow)


def test_degenerate_inputs_and_padding():
    q = jnp.array([0.5, 0.3, 0.2, 0.0])
    keys = jax.random.split(jax.random.key(10), 200)

    def rounds(p, q, k, valid_mask=None):
        def one(key):
            drafts, valid = coupled.coupled_drafts(key, q, k)
            valid = valid if valid_mask is None else valid & valid_mask
            return (*coupled.gumbel_list(key, p, q, drafts, valid), drafts)
        return map(np.asarray, jax.vmap(one)(keys))

    slot, token, drafts = rounds(q, q, 1)                         # p = q: the same race, always slot 0
    assert np.all(slot == 0) and np.array_equal(token, drafts[:, 0])
    slot, token, _ = rounds(jnp.array([0.0, 0.0, 0.0, 1.0]), q, 3)   # disjoint supports: never
    assert np.all(slot == -1) and np.all(token == 3)
    slot, token, drafts = rounds(q, jnp.array([0.0, 1.0, 0.0, 0.0]), 1)   # one-hot drafter
    assert np.all(drafts[:, 0] == 1) and np.array_equal(slot == 0, token == 1)
    slot, _, drafts = rounds(q, q, 4)                             # k > |supp q|: the junk slot is never accepted
    assert np.all(slot < 3)
    slot, token, drafts = rounds(jnp.array([0.1, 0.2, 0.3, 0.4]), q, 3, jnp.array([True, False, True]))
    full_slot, full_token, _ = rounds(jnp.array([0.1, 0.2, 0.3, 0.4]), q, 3)
    assert np.array_equal(token, full_token) and not np.any(slot == 1)     # padding: never accepted, same token
    assert np.array_equal(slot, np.where(full_slot == 1, -1, full_slot))
    slot, token = coupled.gumbel_list(keys[0], q, q, jnp.array([0, 1], jnp.int32), jnp.zeros(2, bool))
    assert int(slot) == -1 and int(token) == int(coupled.target_token(keys[0], q))   # no draft: y ~ p


def test_names_and_bad_input():
    assert set(COUPLED_RULE_LAWS) == {"disd", "gumbel_list"}
    assert set(COUPLED_RULE_LAWS.values()) <= set(DRAFT_LAWS)
    p = jnp.array([0.5, 0.5])
    key = jax.random.key(0)
    two = jnp.array([0, 1], jnp.int32)
    with pytest.raises(ValueError, match="at most 1"):
        coupled.disd(key, p, p, two, jnp.ones(2, bool))
    with pytest.raises(ValueError, match="distinct"):
        coupled.gumbel_list(key, p, p, jnp.array([1, 1], jnp.int32), jnp.ones(2, bool))
    with pytest.raises(ValueError, match="q\\(x\\) = 0"):
        coupled.gumbel_list(key, p, jnp.array([1.0, 0.0]), two, jnp.ones(2, bool))
    with pytest.raises(ValueError, match="PRNG key"):
        coupled.gumbel_list(0, p, p, two, jnp.ones(2, bool))
    with pytest.raises(ValueError, match="k must be <= 2"):
        coupled.coupled_drafts(key, p, 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        coupled.coupled_drafts(key, p, 0)
    with pytest.raises(ValueError, match="sum to 1"):
        coupled.target_token(key, p * 2)


def _chain_decode(p_rows, q_rows, base, length, depth, key_of):
    """A speculative loop over a Markov pair (p_rows, q_rows `[V, V]`: the law after token t is row t): each round
    drafts `depth` tokens one by one with `coupled_drafts`, verifies them with `disd` and emits the accepted ones and
    the target's token at the first mismatch (or after the last draft). `key_of(base, round start, slot, round)`."""
    out, prev, rounds = [], 0, 0
    while len(out) < length:
        start, ctx, drafts = len(out), prev, []
        for i in range(depth):
            d, _ = coupled.coupled_drafts(key_of(base, start, i, rounds), q_rows[ctx], 1)
            drafts.append(int(d[0]))
            ctx = drafts[-1]
        ctx = prev
        for i in range(depth + 1):
            key = key_of(base, start, i, rounds)
            x = jnp.array([drafts[i] if i < depth else 0], jnp.int32)
            slot, token = coupled.disd(key, p_rows[ctx], q_rows[ctx], x, jnp.array([i < depth]))
            out.append(int(token))
            ctx = int(token)
            if int(slot) < 0:
                break
        prev, rounds = ctx, rounds + 1
    return out[:length]


def test_a_speculative_chain_emits_the_targets_own_sequence():
    """With one key per output position the emitted sequence is the target's own Gumbel-max sequence for those keys,
    whatever the drafter; keyed by round instead it depends on the drafter."""
    rng = np.random.default_rng(11)
    p_rows = jnp.asarray(rng.dirichlet(np.full(4, 0.6), 4), jnp.float32)
    drafters = [jnp.asarray(rng.dirichlet(np.full(4, 0.6), 4), jnp.float32), p_rows]
    by_position = lambda base, start, slot, _: jax.random.fold_in(base, start + slot)
    by_round = lambda base, start, slot, rounds: jax.random.fold_in(jax.random.fold_in(base, rounds), slot)
    round_differs = 0
    for seed in range(12):
        base = jax.random.key(seed)
        own, prev = [], 0
        for position in range(8):
            prev = int(coupled.target_token(by_position(base, position, 0, 0), p_rows[prev]))
            own.append(prev)
        for q_rows in drafters:
            assert _chain_decode(p_rows, q_rows, base, 8, 3, by_position) == own
        round_differs += (_chain_decode(p_rows, drafters[0], base, 8, 3, by_round)
                          != _chain_decode(p_rows, drafters[1], base, 8, 3, by_round))
    assert round_differs > 0
