"""Padding where the draft law changes meaning (issue 32, item 5; transport/THEORY.md §3.10).

Greedy (top-(k-1) of q, then one draw outside them) and SpecHub (x1 ~ q, x2 = the hub or a draw off it) are not
closed under dropping a slot, so they read their slots positionally and padding masks slots of one k-slot sample:
a masked greedy draw leaves deterministic slots, verified by point mass; a lone SpecHub x2 is verified against its own
law. The i.i.d. and without-replacement rules keep the prefix contract: masking trailing slots of a k-sample leaves a
sample of the same law with fewer drafts. Each claim: the emitted law of the padded call enumerated exactly in float64
(`dispatch.padded_kernel` over `laws.tuple_law`), the jitted rule in a sample-mask-verify pipeline by chi-square at
fixed seeds, and a negative control (the old prefix reading of the same slots) that must fail.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.testing.stats import chi_square_pvalue_counts
from specjax.verify import draft_laws, importance, multi_draft
from transport import laws
from transport.exact import dispatch, kernels
from transport.exact.chain import total_variation

N = 20_000
P_MIN = 1e-4
V = 6


def _tables():
    """(p, q) `[V]` float64 cases: random with a token p never emits, p = q, near-disjoint, one-hot p."""
    rng = np.random.default_rng(32)
    p, q = rng.dirichlet(np.full(V, 0.7)), rng.dirichlet(np.full(V, 0.7))
    p[-1] = 0.0
    near = np.array([.45, .45, .04, .03, .02, .01])
    return {"random": (p / p.sum(), q), "p_equals_q": (q, q), "near_disjoint": (near[::-1].copy(), near),
            "onehot_p": (np.eye(V)[3], q)}


TABLES = _tables()


def _f32(case):
    """float32 jax inputs and the float64 values of the same numbers (what the kernels must use)."""
    p, q = (np.asarray(x, np.float32) for x in TABLES[case])
    p64, q64 = (np.asarray(x, np.float64) / np.asarray(x, np.float64).sum() for x in (p, q))
    return jnp.asarray(p), jnp.asarray(q), p64, q64


def _padded_law(rule, p, q, law, k, mask, kernel=None):
    """Exact joint law `[k+1, V]` of (slot, token) when a k-sample of `law` has the slots `mask` `[k]` (True = keep)
    and is verified by `rule`'s padding contract (or by `kernel(drafts, valid)` when given)."""
    kernel = kernel or functools.partial(dispatch.padded_kernel, rule, p, q)
    tuples, probs = laws.tuple_law(q, k, law)
    junk = int(np.argmax(p))                    # the target's favourite token in the masked slots: harmful if read
    return sum(w * kernel(np.where(mask, t, junk), np.asarray(mask)) for t, w in zip(tuples, probs))


def _keys(seed):
    return jax.random.split(jax.random.key(seed), N)


def _joint_counts(slot, token, k):
    counts = np.zeros((k + 1, V))
    np.add.at(counts, (np.asarray(slot) + 1, np.asarray(token)), 1)
    return counts


@functools.lru_cache(maxsize=None)
def _pipeline(sampler, k, mask, verify):
    """jit(vmap) of: draw k drafts with `sampler`, mark the slots outside `mask` invalid (junk = argmax p in them),
    verify with `verify(key, p, q, drafts, valid)`."""
    keep = jnp.asarray(mask)

    def one(key, p, q):
        key_d, key_v = jax.random.split(key)
        drafts, valid = sampler(key_d, q, k)
        drafts = jnp.where(keep, drafts, jnp.argmax(p).astype(drafts.dtype))
        return verify(key_v, p, q, drafts, valid & keep)

    return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


# ---- greedy: the masked draw is verified by point mass ------------------------------------------------------------

GREEDY_MASKS = list(np.ndindex(2, 2, 2))


@pytest.mark.parametrize("case", list(TABLES))
def test_every_mask_of_a_greedy_sample_is_lossless_exactly(case):
    p, q = TABLES[case]
    for mask in GREEDY_MASKS:
        mask = np.array(mask, bool)
        out = _padded_law("greedy", p, q, "greedy", 3, mask)
        assert total_variation(out.sum(0), p) < 1e-12, mask
        assert not np.any(out[1:][~mask]), "a masked slot was credited"
    # a masked draw leaves the deterministic top-2 of q: exactly the point-mass law of those slots
    g = laws.greedy_set(q, 2)
    np.testing.assert_allclose(_padded_law("greedy", p, q, "greedy", 3, [True, True, False]),
                               kernels.kernel_padded(lambda x: kernels.kernel_point_mass(p, x),
                                                     np.append(g, 0), np.array([True, True, False])), atol=1e-15)


def test_old_prefix_reading_of_a_masked_greedy_draw_is_biased_exactly():
    """Negative control: the top-2 of q verified as a 2-draft greedy sample (the second read as drawn outside the
    first) emits a law far from p on every non-trivial table."""
    for case in ("random", "near_disjoint"):
        p, q = TABLES[case]
        old = _padded_law("greedy", p, q, "greedy", 3, [True, True, False],
                          kernel=lambda d, v: kernels.kernel_padded(lambda x: kernels.kernel_greedy(p, q, x), d, v))
        assert total_variation(old.sum(0), p) > 0.05, case



@pytest.mark.parametrize("mask", [(True, True, False), (True, False, True)])
def test_jitted_greedy_with_a_masked_slot_matches_the_enumerated_law(mask):
    p, q, p64, q64 = _f32("random")
    run = _pipeline(draft_laws.sample_greedy_drafts, 3, mask, multi_draft.greedy_drafts_verifier)
    slot, token = run(_keys(40 + mask[2]), p, q)
    exact = _padded_law("greedy", p64, q64, "greedy", 3, np.array(mask))
    assert chi_square_pvalue_counts(_joint_counts(slot, token, 3), exact) > P_MIN
    assert chi_square_pvalue_counts(np.bincount(np.asarray(token), minlength=V), p64) > P_MIN


def test_jitted_old_prefix_reading_of_a_masked_greedy_draw_is_rejected():
    """Negative control, jitted: the same samples verified as a 2-draft greedy call on the two top tokens."""
    p, q, p64, _ = _f32("random")
    run = _pipeline(draft_laws.sample_greedy_drafts, 3, (True, True, False),
                    lambda key, p, q, d, v: multi_draft.greedy_drafts_verifier(key, p, q, d[:2], v[:2]))
    _, token = run(_keys(41), p, q)
    assert chi_square_pvalue_counts(np.bincount(np.asarray(token), minlength=V), p64) < P_MIN


def test_masking_a_greedy_g_slot_only_withdraws_its_credit_key_for_key():
    """G is read from q, so a masked G slot leaves the token unchanged, key for key; only a correction landing on
    its token loses the slot (-1)."""
    p, q, p64, q64 = _f32("random")
    g, x = laws.greedy_set(q64, 2), int(laws.greedy_set(q64, 4)[3])
    drafts = jnp.asarray(np.append(g, x), jnp.int32)
    keys = _keys(42)[:2000]
    run = jax.jit(jax.vmap(multi_draft.greedy_drafts_verifier, in_axes=(0, None, None, None, None)))
    slot, token = map(np.asarray, run(keys, p, q, drafts, jnp.ones(3, bool)))
    slot_m, token_m = map(np.asarray, run(keys, p, q, drafts.at[1].set(int(np.argmax(p64))),
                                          jnp.array([True, False, True])))
    np.testing.assert_array_equal(token_m, token)
    np.testing.assert_array_equal(slot_m, np.where(slot == 1, -1, slot))
    assert np.any(slot == 1)                                    # the masked credit did occur


# ---- SpecHub: a lone second draft is verified against its own law ------------------------------------------------

def _spechub_sampler(key, q, k):
    return draft_laws.sample_spechub(key, q)


@pytest.mark.parametrize("case", list(TABLES))
def test_every_mask_of_a_spechub_sample_is_lossless_exactly(case):
    p, q = TABLES[case]
    for mask in np.ndindex(2, 2):
        mask = np.array(mask, bool)
        out = _padded_law("spechub", p, q, "spechub", 2, mask)
        assert total_variation(out.sum(0), p) < 1e-12, mask
        assert not np.any(out[1:][~mask])
    # x2's marginal is the law the lone-slot verification uses
    tuples, probs = laws.tuple_law(q, 2, "spechub")
    marginal = np.bincount(tuples[:, 1], weights=probs, minlength=V)
    np.testing.assert_allclose(marginal, kernels.spechub_second_law(q), atol=1e-15)


def test_old_prefix_reading_of_a_lone_spechub_x2_is_biased():
    """Negative control: x2 alone verified as one draft of q (the old contract), exactly and jitted."""
    p, q = TABLES["random"]
    old = _padded_law("spechub", p, q, "spechub", 2, [False, True],
                      kernel=lambda d, v: kernels.kernel_padded(lambda x: kernels.kernel_rrs(p, q, x, False), d, v))
    assert total_variation(old.sum(0), p) > 0.05
    pj, qj, p64, _ = _f32("random")
    run = _pipeline(_spechub_sampler, 2, (False, True),
                    lambda key, p, q, d, v: multi_draft.rrs_iid(key, p, q, d[1:], v[1:]))
    _, token = run(_keys(43), pj, qj)
    assert chi_square_pvalue_counts(np.bincount(np.asarray(token), minlength=V), p64) < P_MIN


@pytest.mark.parametrize("mask", [(False, True), (True, False)])
def test_jitted_spechub_with_a_masked_slot_matches_the_enumerated_law(mask):
    p, q, p64, q64 = _f32("random")
    slot, token = _pipeline(_spechub_sampler, 2, mask, multi_draft.spechub)(_keys(44 + mask[0]), p, q)
    exact = _padded_law("spechub", p64, q64, "spechub", 2, np.array(mask))
    assert chi_square_pvalue_counts(_joint_counts(slot, token, 2), exact) > P_MIN


# ---- i.i.d. and without replacement: trailing masks keep the law, with fewer drafts --------------------------------

def _khisti(key, p, q, drafts, valid):
    return importance.importance_argmax(key, p, q, drafts, valid)


PREFIX_RULES = {"rrs": ("iid", draft_laws.sample_iid, multi_draft.rrs_iid),
                "kseq": ("iid", draft_laws.sample_iid, multi_draft.kseq),
                "khisti": ("iid", draft_laws.sample_iid, _khisti),
                "rrs_without_replacement": ("without_replacement", draft_laws.sample_without_replacement,
                                            multi_draft.rrs_without_replacement)}
TRAILING = [(True, True, False), (True, False, False)]


@pytest.mark.parametrize("rule", list(PREFIX_RULES))
def test_trailing_masks_leave_a_smaller_sample_of_the_same_law_exactly(rule):
    law = PREFIX_RULES[rule][0]
    for case, (p, q) in TABLES.items():
        tuples, probs = laws.tuple_law(q, 3, law)
        for mask in TRAILING:
            n = sum(mask)
            small, small_probs = laws.tuple_law(q, n, law)             # the kept prefix is a sample of law(n)
            kept = {tuple(t): 0.0 for t in small}
            for t, w in zip(tuples, probs):
                kept[tuple(t[:n])] += w
            np.testing.assert_allclose([kept[tuple(t)] for t in small], small_probs, atol=1e-15)
            out = _padded_law(rule, p, q, law, 3, np.array(mask))
            assert total_variation(out.sum(0), p) < 1e-12, (case, mask)
            assert not np.any(out[1:][~np.array(mask)])


@pytest.mark.parametrize("rule", list(PREFIX_RULES))
def test_jitted_rule_with_trailing_masks_emits_p(rule):
    law, sampler, fn = PREFIX_RULES[rule]
    p, q, p64, q64 = _f32("random")
    for i, mask in enumerate(TRAILING):
        slot, token = _pipeline(sampler, 3, mask, fn)(_keys(50 + i), p, q)
        exact = _padded_law(rule, p64, q64, law, 3, np.array(mask))
        assert chi_square_pvalue_counts(_joint_counts(slot, token, 3), exact) > P_MIN, mask


def test_an_interior_mask_of_a_without_replacement_sample_is_not_a_smaller_sample():
    """The prefix contract's limit, stated in the module doc: x3 was drawn with x2 removed, so [x1, x3] is not a
    2-draft without-replacement sample, and RRS on it is lossy (no id reveals this: callers compact in order)."""
    p, q = TABLES["random"]
    out = _padded_law("rrs_without_replacement", p, q, "without_replacement", 3, np.array([True, False, True]))
    assert total_variation(out.sum(0), p) > 1e-3


# ---- inputs refused eagerly ----------------------------------------------------------------------------------------

def test_greedy_and_spechub_refuse_slots_their_layout_cannot_hold():
    p, q = (np.asarray(x, np.float32) for x in TABLES["random"])
    key = jax.random.key(0)
    g = laws.greedy_set(np.asarray(q, np.float64), 4)
    for drafts, valid in [([g[0], g[3], 0], [True, True, False]),     # a G slot outside the top-2
                          ([g[0], 0, g[1]], [True, False, True]),     # the draw inside the top-2
                          ([g[0], g[0], g[2]], [True, True, True])]:  # a repeated G token
        with pytest.raises(ValueError, match="top-2"):
            multi_draft.greedy_drafts_verifier(key, p, q, np.array(drafts), np.array(valid))
    multi_draft.greedy_drafts_verifier(key, p, q, np.array([g[1], g[0], 0]), np.array([True, True, False]))
    with pytest.raises(ValueError, match="at most 6"):
        multi_draft.greedy_drafts_verifier(key, p, q, np.zeros(7, np.int32), np.ones(7, bool))
    hub = np.eye(V, dtype=np.float32)[2]
    with pytest.raises(ValueError, match="lone second spechub draft"):
        multi_draft.spechub(key, p, hub, np.array([0, 2]), np.array([False, True]))
    multi_draft.spechub(key, p, q, np.array([0, int(g[0])]), np.array([False, True]))
