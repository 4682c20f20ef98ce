"""The multi-draft contract, rule by rule (issue #9): padded slots are skipped and every padding pattern is lossless;
k = 0 and malformed inputs are refused eagerly by specjax's own code.

Exactness: a rule's randomness is a PRNG key, so its law given a draft tuple is the float64 numpy kernel of
`transport.exact.kernels` (an independent reference of each algorithm; `dispatch.padded_kernel` states each rule's
padding contract: the positional rules, greedy and SpecHub, mask slots of one k-slot sample of their law; the others
read their valid slots as a sample with fewer drafts). The positional contract's own cases:
tests/core/test_padding_law.py.
(a) Σ_tuples 𝒬(tuple)·K(·|tuple) = p to 1e-9 for every padding pattern at k <= 3 and every degenerate case;
(b) the jax rule's sampled (slot, token) law for fixed padded tuples matches that kernel (chi-square);
(c) a padded call of a prefix rule reproduces the unpadded call on the valid slots key for key;
(d) the sampled pipeline (drafts sampled, a padded slot inserted, verified) emits p, and two wrong pipelines fail.
Fixed seeds; a chi-square p-value below P_MIN is a real, reproducible discrepancy.
"""
import functools
import itertools
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.testing.stats import chi_square_pvalue_counts
from specjax.validation import default_tolerance
from specjax.verify import draft_laws, multi_draft
from specjax.verify.names import POSITIONAL_RULES
from transport import laws
from transport.exact import dispatch, kernels
from transport.optimal import lp

P_MIN = 1e-4
N = 20_000
V = 5
LAW = {"rrs": "iid", "rrs_without_replacement": "without_replacement", "kseq": "iid", "spechub": "spechub",
       "greedy": "greedy", "lp": "iid"}
RULES = ("rrs", "rrs_without_replacement", "kseq", "spechub", "greedy", "lp", "point_mass")
DETERMINISTIC = (V - 1, V - 1, 0)      # point-mass drafts: a repeat, and tokens with p = 0 or q = 0 in some cases


def _lp_rule(key, p, q, drafts, valid, sets, accept_probs, residual):
    return multi_draft.lp_plan_verifier(key, p, q, drafts, valid, sets=sets, accept_probs=accept_probs,
                                        residual=residual)


RULE_FN = {"rrs": multi_draft.rrs_iid, "rrs_without_replacement": multi_draft.rrs_without_replacement,
           "kseq": multi_draft.kseq, "spechub": multi_draft.spechub, "greedy": multi_draft.greedy_drafts_verifier,
           "lp": _lp_rule, "point_mass": multi_draft.point_mass_rule}


def _norm(x):
    x = np.asarray(x, np.float64)
    return x / x.sum()


def _cases():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.full(V, 0.7)), rng.dirichlet(np.full(V, 0.7))
    p[-1] = 0.0
    eye = np.eye(V)
    return {"random": (p, q), "p_equals_q": (q, q), "disjoint": ([.5, .5, 0, 0, 0], [0, 0, .2, .3, .5]),
            "onehot_p": (eye[2], q), "onehot_q": (p, eye[1]), "k_ge_support": (p, [.6, 0, .4, 0, 0]),
            "zeros_in_p": ([0, .5, 0, .5, 0], q), "issue9": ([.1, .2, .3, .4, 0], [.4, .3, .2, .1, 0])}


CASES = {name: (_norm(p), _norm(q)) for name, (p, q) in _cases().items()}


def _f32(case):
    """The case as float32 jax inputs and the float64 values the kernels must use (the same zeros)."""
    p, q = (np.asarray(x, np.float32) for x in CASES[case])
    return jnp.asarray(p), jnp.asarray(q), _norm(p), _norm(q)


def _law_exists(rule, q, pattern):
    """Greedy's k-slot sample needs |supp q| >= k; SpecHub's pair needs two tokens."""
    k = len(pattern)
    need = k if rule == "greedy" else (2 if rule == "spechub" and k == 2 else 0)
    return laws.support_size(q) >= need


def _tuple_law(rule, q, n):
    """The law of the n valid drafts of a prefix rule: (tuples `[T, n']`, probs `[T]`); zero drafts: the empty
    tuple."""
    if n == 0:
        return np.zeros((1, 0), np.int64), np.ones(1)
    if rule == "point_mass":
        return np.array([DETERMINISTIC[:n]]), np.ones(1)
    return laws.tuple_law(q, n, LAW[rule])


@functools.lru_cache(maxsize=None)
def _plan(case, n, dtype32):
    p, q = _f32(case)[2:] if dtype32 else CASES[case]
    return lp.lp_optimum(p, q, max(n, 1), "iid")         # no draft: the rule ignores the plan


def _extra(rule, case, n):
    if rule != "lp":
        return {}
    plan = _plan(case, n, True)
    return dict(sets=jnp.asarray(plan.sets), accept_probs=jnp.asarray(plan.accept_probs(), jnp.float32),
                residual=jnp.asarray(plan.residual, jnp.float32))


def _padded_samples(rule, q, pattern, junk):
    """[(drafts, valid `[k]`, prob)] of every padded call of `pattern` under the rule's contract: a positional rule
    masks slots of one k-slot sample of its law (junk in the masked slots); the others place a sample of
    n = Σ pattern drafts in the valid slots."""
    if rule in POSITIONAL_RULES:
        k = len(pattern)
        tuples, probs = laws.tuple_law(q, k, "iid" if k == 1 else LAW[rule])      # one slot: x1 ~ q
        return [(np.where(pattern, t, junk).astype(np.int32), np.array(pattern), w) for t, w in zip(tuples, probs)]
    return [(*_place(t, pattern, junk), w) for t, w in zip(*_tuple_law(rule, q, sum(pattern)))]


def _padded_kernel(rule, p, q, case, n, drafts, valid, dtype32=False):
    """The exact (slot, token) law `[k+1, V]` of one padded call, by the rule's padding contract."""
    if rule == "lp":
        plan = _plan(case, n, dtype32)
        return kernels.kernel_padded(lambda x: kernels.kernel_lp(plan, x), drafts, valid)
    if rule == "point_mass":
        return kernels.kernel_padded(lambda x: kernels.kernel_point_mass(p, x), drafts, valid)
    return dispatch.padded_kernel(rule, p, q, drafts, valid)


def _place(tuple_, pattern, junk):
    """Drafts `[k]` with the tuple in the pattern's valid slots and `junk` elsewhere; a tuple shorter than the
    pattern (without replacement beyond the support) leaves the extra slots invalid, as the sampler does."""
    slots = np.flatnonzero(pattern)[:len(tuple_)]
    drafts = np.full(len(pattern), junk, np.int32)
    drafts[slots] = tuple_
    valid = np.zeros(len(pattern), bool)
    valid[slots] = True
    return drafts, valid


def _patterns(rule, k_max=3):
    ks = (1, 2) if rule == "spechub" else range(1, k_max + 1)
    return [pat for k in ks for pat in itertools.product([False, True], repeat=k)]


# ---- (a) exact enumeration ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("rule", RULES)
def test_every_padding_pattern_is_lossless_by_exact_enumeration(rule, case):
    p, q = CASES[case]
    junk = int(np.argmax(p))                  # padding holding the target's favourite token: harmful if ever read
    checked = 0
    for pattern in _patterns(rule):
        if not _law_exists(rule, q, pattern):
            continue
        law = np.zeros(V)
        for drafts, valid, w in _padded_samples(rule, q, pattern, junk):
            out = _padded_kernel(rule, p, q, case, sum(pattern), drafts, valid)
            assert not np.any(out[1:][~valid]), "a padded slot was accepted"
            law += w * out.sum(0)
        assert np.abs(law - p).max() < 1e-9, f"pattern {pattern}"
        checked += 1
    assert checked >= (2 if case == "onehot_q" else 6)      # a one-token q has no 2-slot greedy or SpecHub sample


# ---- (b) the jax rules against the kernels ---------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _batched(rule):
    fn = RULE_FN[rule]
    return jax.jit(jax.vmap(lambda key, p, q, d, v, extra: fn(key, p, q, d, v, **extra),
                            in_axes=(0, None, None, None, None, None)))


def _keys(seed, n=N):
    return jax.random.split(jax.random.key(seed), n)


def _joint_counts(slot, token, k):
    counts = np.zeros((k + 1, V))
    np.add.at(counts, (np.asarray(slot) + 1, np.asarray(token)), 1)
    return counts


FIXED_PATTERNS = {"spechub": [(True, True), (False, True), (False, False)]}
DEFAULT_PATTERNS = [(True, False, True), (False, True, False), (False, False, False)]


@pytest.mark.parametrize("rule", RULES)
def test_sampled_law_of_padded_calls_matches_the_exact_kernel(rule):
    p, q, p64, q64 = _f32("random")
    rng = np.random.default_rng(5)
    for i, pattern in enumerate(FIXED_PATTERNS.get(rule, DEFAULT_PATTERNS)):
        n = sum(pattern)
        samples = _padded_samples(rule, q64, pattern, int(np.argmax(p64)))
        probs = np.array([w for *_, w in samples])
        drafts, valid, _ = samples[rng.choice(len(samples), p=probs / probs.sum())]
        slot, token = _batched(rule)(_keys(10 + i), p, q, jnp.asarray(drafts), jnp.asarray(valid),
                                     _extra(rule, "random", n))
        exact = _padded_kernel(rule, p64, q64, "random", n, drafts, valid, dtype32=True)
        pvalue = chi_square_pvalue_counts(_joint_counts(slot, token, len(pattern)), exact)
        assert pvalue > P_MIN, f"pattern {pattern}, drafts {drafts.tolist()}: p-value {pvalue:.2g}"


@pytest.mark.parametrize("rule", [r for r in RULES if r not in POSITIONAL_RULES])
def test_padded_call_reproduces_the_unpadded_call_key_for_key(rule):
    p, q, p64, q64 = _f32("random")
    keys = _keys(20, 256)
    for pattern in _patterns(rule)[-8:]:                                     # every pattern of the widest k
        n = sum(pattern)
        if n == 0:
            continue
        t = _tuple_law(rule, q64, n)[0][-1]
        drafts, valid = _place(t, pattern, int(np.argmax(p64)))
        extra = _extra(rule, "random", n)
        slot, token = _batched(rule)(keys, p, q, jnp.asarray(drafts), jnp.asarray(valid), extra)
        slot_c, token_c = _batched(rule)(keys, p, q, jnp.asarray(t, jnp.int32), jnp.ones(n, bool), extra)
        np.testing.assert_array_equal(np.asarray(token), np.asarray(token_c))
        mapped = np.where(np.asarray(slot_c) >= 0, np.flatnonzero(valid)[np.maximum(np.asarray(slot_c), 0)], -1)
        np.testing.assert_array_equal(np.asarray(slot), mapped)


# ---- (d) the sampled pipeline with a padded slot, and two wrong pipelines that must fail -----------------------------

def _draw(rule, key, q):
    """Two drafts of a prefix rule's law (SpecHub: its first draft only) -> drafts, valid `[2]` or `[1]`."""
    if rule in ("rrs", "kseq", "lp"):
        return draft_laws.sample_iid(key, q, 2)
    if rule == "rrs_without_replacement":
        return draft_laws.sample_without_replacement(key, q, 2)
    if rule == "spechub":
        drafts, valid = draft_laws.sample_spechub(key, q)
        return drafts[:1], valid[:1]
    return draft_laws.greedy_set(q, 2), jnp.ones(2, bool)       # point mass: deterministic top-2 children


@functools.lru_cache(maxsize=None)
def _pipeline(rule, verify_rule=None, pad_is_valid=False):
    """jit(vmap) of: draw, pad (slots d0, pad, d1, pad; SpecHub's one draft: d0, pad; greedy, positional: slots 1
    and 3, a G slot and the draw, of a 4-slot sample masked) with `junk`, verify with `verify_rule`."""
    fn = RULE_FN[verify_rule or rule]

    def one(key, p, q, junk, extra):
        key_d, key_v = jax.random.split(key)
        if rule == "greedy":
            drafts, valid = draft_laws.sample_greedy_drafts(key_d, q, 4)
            masked = jnp.arange(4) % 2 == 1
            drafts, valid = jnp.where(masked, junk, drafts), jnp.where(masked, pad_is_valid, valid)
        else:
            drafts, valid = _draw(rule, key_d, q)
            pad, pad_valid = junk[None], jnp.array([pad_is_valid])
            trailing = drafts.shape[0] > 1
            drafts = jnp.concatenate([drafts[:1], pad, drafts[1:]] + [pad] * trailing)
            valid = jnp.concatenate([valid[:1], pad_valid, valid[1:]] + [pad_valid] * trailing)
        slot, token = fn(key_v, p, q, drafts, valid, **extra)
        return slot, token, drafts

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None, None)))


def _pipeline_pvalue(rule, case, seed, **kw):
    p, q, p64, _ = _f32(case)
    slot, token, drafts = map(np.asarray, _pipeline(rule, **kw)(_keys(seed), p, q, jnp.int32(np.argmax(p64)),
                                                               _extra(kw.get("verify_rule") or rule, case, 2)))
    return chi_square_pvalue_counts(np.bincount(token, minlength=V), p64), slot, token, drafts


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("rule", RULES)
def test_sampled_pipeline_with_a_padded_slot_emits_p(rule, case):
    """Under jit the samplers check nothing: on a too-small support they mark slots invalid, which keeps the law."""
    pvalue, slot, token, drafts = _pipeline_pvalue(rule, case, seed=30)
    assert pvalue > P_MIN
    assert not np.any(slot == 1) and not np.any(slot == 3), "a padded slot was accepted"
    hit = slot >= 0
    np.testing.assert_array_equal(token[hit], drafts[hit, slot[hit]])


def test_negative_control_padded_slot_treated_as_valid_is_caught():
    """The issue's greedy defect class: a padded slot read as a draft (here the masked draw of a 4-slot greedy
    sample, holding the target's favourite token). Exactly wrong, and the test rejects it."""
    p, q, p64, q64 = _f32("random")
    junk = int(np.argmax(p64))
    tuples, probs = laws.tuple_law(q64, 4, "greedy")
    wrong = sum(w * dispatch.kernel("greedy", p64, q64, [t[0], junk, t[2], junk]).sum(0)
                for t, w in zip(tuples, probs))
    assert np.abs(wrong - p64).max() > 0.02
    assert _pipeline_pvalue("greedy", "random", seed=31, pad_is_valid=True)[0] < P_MIN


def test_negative_control_without_replacement_drafts_verified_as_iid_is_caught():
    p, q, p64, q64 = _f32("issue9")
    tuples, probs = laws.tuple_law(q64, 2, "without_replacement")
    wrong = sum(w * dispatch.kernel("rrs", p64, q64, t).sum(0) for t, w in zip(tuples, probs))
    assert np.abs(wrong - p64).max() > 0.02
    assert _pipeline_pvalue("rrs_without_replacement", "issue9", seed=32, verify_rule="rrs")[0] < P_MIN


# ---- inputs refused eagerly, by specjax's own code ----------------------------------------------------------------

P4 = np.array([.1, .2, .3, .4], np.float32)
Q4 = np.array([.4, .3, .2, .1], np.float32)
GOOD_DRAFTS = {"spechub": [1, 0], "greedy": [0, 1]}        # hub 0 = argmax q; G = {0} = top-1 of q
PLAN4 = lp.lp_optimum(_norm(P4), _norm(Q4), 2, "iid")
OTHER_SETS = ~np.all(PLAN4.sets == np.isin(np.arange(4), [0, 1]), axis=1)   # a plan without the set {0, 1}
PLAN_WITHOUT_01 = dict(sets=PLAN4.sets[OTHER_SETS], accept_probs=PLAN4.accept_probs()[OTHER_SETS])


def _call(rule, key=None, p=P4, q=Q4, drafts=None, valid=None, **extra):
    """A valid call of `rule`, with any argument replaced."""
    drafts = np.asarray(GOOD_DRAFTS.get(rule, [0, 1])) if drafts is None else drafts
    valid = np.ones(np.shape(drafts), bool) if valid is None else valid
    key = jax.random.key(0) if key is None else key
    if rule == "lp":
        plan = dict(sets=PLAN4.sets, accept_probs=PLAN4.accept_probs(), residual=PLAN4.residual)
        extra = {**plan, **extra}
        return multi_draft.lp_plan_verifier(key, p, q, drafts, valid, **extra)
    return RULE_FN[rule](key, p, q, drafts, valid, **extra)


def _raises_own_value_error(match, fn, *args, **kwargs):
    """ValueError matching `match`, raised before any jax frame is entered."""
    with pytest.raises(ValueError, match=match) as excinfo:
        fn(*args, **kwargs)
    jax_frames = [f.filename for f in traceback.extract_tb(excinfo.tb) if "/jax/" in f.filename
                  or "jaxlib" in f.filename]
    assert not jax_frames, jax_frames


def _with(x, index, value):
    x = np.array(x)
    x[index] = value
    return x


COMMON_BAD = {
    "k=0": (dict(drafts=np.zeros(0, np.int32), valid=np.zeros(0, bool)), "at least one slot"),
    "nan_p": (dict(p=_with(P4, 1, np.nan)), "NaN"),
    "nan_q": (dict(q=_with(Q4, 1, np.nan)), "NaN"),
    "negative_p": (dict(p=np.array([.3, -.1, .4, .4], np.float32)), "negative"),
    "negative_q": (dict(q=np.array([.5, .3, .3, -.1], np.float32)), "negative"),
    "unnormalised_p": (dict(p=P4 * 1.5), "sum to 1"),
    "unnormalised_q": (dict(q=Q4 * 0.5), "sum to 1"),
    "integer_p": (dict(p=np.array([0, 0, 1, 0])), "floating"),
    "p_rank_2": (dict(p=P4[None]), "rank"),
    "p_q_shapes": (dict(q=np.full(5, .2, np.float32)), "same shape"),
    "float_drafts": (dict(drafts=np.array([0., 1.])), "integer"),
    "drafts_rank_2": (dict(drafts=np.zeros((2, 1), np.int32), valid=np.ones((2, 1), bool)), "drafts must be"),
    "draft_id_V": (dict(drafts=np.array([0, 4])), "outside"),
    "integer_valid": (dict(valid=np.ones(2, np.int32)), "bool"),
    "valid_shape": (dict(valid=np.ones(3, bool)), "valid"),
    "bad_key": (dict(key=np.float32(0)), "PRNG key"),
    "key_batch": (dict(key=jax.random.split(jax.random.key(0), 2)), "single PRNG key"),
}


@pytest.mark.parametrize("bad", list(COMMON_BAD))
@pytest.mark.parametrize("rule", RULES)
def test_malformed_rule_inputs_raise_value_error_eagerly(rule, bad):
    changes, match = COMMON_BAD[bad]
    if bad == "draft_id_V" and rule == "spechub":
        changes = dict(drafts=np.array([4, 0]))
    _raises_own_value_error(match, _call, rule, **changes)


@pytest.mark.parametrize("rule", [r for r in RULES if r != "point_mass"])
def test_a_valid_draft_outside_supp_q_is_refused_except_by_the_point_mass_rule(rule):
    q = np.array([.5, 0., .3, .2], np.float32)
    drafts = {"spechub": [1, 0], "greedy": [0, 1]}.get(rule, [0, 1])
    _raises_own_value_error("q\\(x\\) = 0", _call, rule, q=q, drafts=drafts)
    slot, token = multi_draft.point_mass_rule(jax.random.key(0), P4, q, np.array([1, 1]), np.ones(2, bool))
    assert int(slot) in (-1, 0) and 0 <= int(token) < 4      # deterministic drafts: q is never read


RULE_BAD = [
    ("kseq", dict(rho=0.5), "\\[1, k\\]"),
    ("kseq", dict(rho=3.0), "\\[1, k\\]"),                               # k = 2 valid drafts
    ("kseq", dict(rho=2.0, valid=np.array([True, False])), "\\[1, k\\]"),
    ("kseq", dict(rho=float("nan")), "\\[1, k\\]"),
    ("kseq", dict(rho=1.0), "not lossless"),                               # ρ = 1 < ρ* when p != q
    ("kseq", dict(rho=np.ones(2)), "real scalar"),
    ("rrs_without_replacement", dict(drafts=[2, 2]), "distinct"),
    ("rrs_without_replacement", dict(drafts=[2, 0, 2], valid=np.array([True, False, True])), "distinct"),
    ("greedy", dict(drafts=[1, 0]), "top-1"),                              # G must be argmax q = 0
    ("greedy", dict(drafts=[0, 0]), "top-1"),                              # the last draft lies in G
    ("greedy", dict(drafts=[0, 2, 1]), "top-2"),                           # G must be {0, 1}
    ("greedy", dict(q=np.array([.3, .3, .4, 0], np.float32), drafts=[2, 1, 0]), "top-2"),   # tie -> smaller id
    ("spechub", dict(drafts=[1, 2]), "hub"),
    ("spechub", dict(drafts=[0, 0]), "hub"),
    ("spechub", dict(drafts=[1, 0, 2]), "at most 2"),
    ("lp", dict(residual=_with(PLAN4.residual, 0, np.nan)), "finite"),
    ("lp", dict(residual=-PLAN4.residual), "non-negative"),
    ("lp", dict(residual=PLAN4.residual * 2), "residual must sum to 1"),
    ("lp", dict(accept_probs=PLAN4.accept_probs() * 2 + 0.3), "at most 1"),
    ("lp", dict(sets=PLAN4.sets.astype(np.int32)), "bool"),
    ("lp", dict(drafts=[0, 1], **PLAN_WITHOUT_01), "not a set of the LP plan"),
]


@pytest.mark.parametrize("rule,changes,match", RULE_BAD, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(RULE_BAD)])
def test_inputs_violating_a_rules_own_assumptions_raise(rule, changes, match):
    _raises_own_value_error(match, _call, rule, **changes)


def test_inputs_meeting_the_assumptions_pass():
    """The positive twins of the cases above (ties to the smaller id, ρ = k, ρ*, a padded duplicate)."""
    tie = np.array([.3, .3, .4, 0], np.float32)
    _call("greedy", q=tie, drafts=[0, 2, 1])
    _call("greedy", q=tie, drafts=[2, 0, 1])
    _call("kseq", rho=2.0)
    _call("kseq", rho=float(multi_draft.kseq_rho_star(P4, Q4, 2)))
    _call("kseq", rho=1.0, valid=np.array([False, False]))
    _call("rrs_without_replacement", drafts=[2, 0, 2], valid=np.array([True, True, False]))
    _call("spechub", drafts=[1, 3], valid=np.array([True, False]))        # one draft: x1 ~ q, any token
    slot, _ = _call("lp", valid=np.array([False, False]), **PLAN_WITHOUT_01)   # no draft: no plan row is read
    assert int(slot) == -1


SAMPLERS = {"iid": draft_laws.sample_iid, "without_replacement": draft_laws.sample_without_replacement,
            "greedy": draft_laws.sample_greedy_drafts,
            "spechub": lambda key, q, k: draft_laws.sample_spechub(key, q)}
SAMPLER_BAD = {
    "nan_q": (dict(q=_with(Q4, 0, np.nan)), "NaN"),
    "negative_q": (dict(q=np.array([.5, .3, .3, -.1], np.float32)), "negative"),
    "unnormalised_q": (dict(q=Q4 * 2), "sum to 1"),
    "all_zero_q": (dict(q=np.zeros(4, np.float32)), "sum to 1"),
    "integer_q": (dict(q=np.array([1, 0, 0, 0])), "floating"),
    "q_rank_2": (dict(q=Q4[None]), "rank"),
    "bad_key": (dict(key=np.float32(0)), "PRNG key"),
}
LAW_BAD = [   # k and support constraints, per draft law (SpecHub's k is fixed at 2)
    *[(law, "k=0", dict(k=0), ">= 1") for law in ("iid", "without_replacement", "greedy")],
    *[(law, "float_k", dict(k=1.5), "integer") for law in ("iid", "without_replacement", "greedy")],
    *[(law, "k_above_V", dict(k=5), "exceed") for law in ("without_replacement", "greedy")],
    ("greedy", "k_above_support", dict(q=np.array([.5, .5, 0, 0], np.float32), k=3), "at least 3"),
    ("spechub", "V=1", dict(q=np.ones(1, np.float32)), "exceed"),
    ("spechub", "one_token_support", dict(q=np.array([0, 1, 0, 0], np.float32)), "at least 2"),
]
SAMPLER_CASES = [(law, bad, *SAMPLER_BAD[bad]) for law in SAMPLERS for bad in SAMPLER_BAD] + LAW_BAD


def _sample(law, key=None, q=Q4, k=2):
    return SAMPLERS[law](jax.random.key(0) if key is None else key, q, k)


@pytest.mark.parametrize("law,bad,changes,match", SAMPLER_CASES, ids=[f"{c[0]}-{c[1]}" for c in SAMPLER_CASES])
def test_malformed_sampler_inputs_raise_value_error_eagerly(law, bad, changes, match):
    _raises_own_value_error(match, _sample, law, **changes)


def test_samplers_mark_only_real_draws_valid_and_run_under_jit():
    q = np.array([.5, 0., .5, 0.], np.float32)
    drafts, valid = draft_laws.sample_without_replacement(jax.random.key(0), q, 3)   # k > |supp q| is allowed
    assert np.asarray(valid).tolist() == [True, True, False]
    assert sorted(np.asarray(drafts)[:2].tolist()) == [0, 2]
    greedy = jax.jit(draft_laws.sample_greedy_drafts, static_argnums=2)   # traced: shape checks only
    drafts, valid = greedy(jax.random.key(0), jnp.asarray(q), 3)
    assert np.asarray(valid).tolist() == [True, True, False]              # no mass left outside G = {0, 2}
    drafts, valid = jax.jit(draft_laws.sample_spechub)(jax.random.key(0), jnp.eye(4)[2])
    assert np.asarray(drafts)[0] == 2 and np.asarray(valid).tolist() == [True, False]
    _raises_own_value_error("exceed", greedy, jax.random.key(0), jnp.asarray(q), 5)   # shapes are checked traced


def test_zero_drafts_are_refused_by_every_entry_under_jit_too():
    for rule in RULES:
        fn = jax.jit(lambda key, p, q, d, v, rule=rule: _call(rule, key, p, q, d, v))
        with pytest.raises(ValueError, match="at least one slot"):        # the caller's jit is on this stack
            fn(jax.random.key(0), P4, Q4, np.zeros(0, np.int32), np.zeros(0, bool))
    _raises_own_value_error("at least one slot", multi_draft.rrs_residual, P4, Q4, np.zeros(0, np.int32),
                            np.zeros(0, bool))


def test_tolerance_follows_the_dtype_and_a_bfloat16_softmax_row_is_accepted():
    assert default_tolerance(np.zeros(4)) == 1e-9
    assert default_tolerance(np.zeros(4, np.float32)) == 1e-4
    assert 1e-2 <= default_tolerance(jnp.zeros(128_000, jnp.float16)) < 2e-2
    assert 2 * float(jnp.finfo(jnp.bfloat16).eps) < default_tolerance(jnp.zeros(128_000, jnp.bfloat16)) < 2e-2
    logits = 3.0 * jax.random.normal(jax.random.key(3), (2, 128_000))
    p, q = jax.nn.softmax(logits.astype(jnp.bfloat16))
    assert abs(np.asarray(p, np.float64).sum() - 1) > 1e-4        # the old fixed tolerance refused this row
    drafts, valid = draft_laws.sample_iid(jax.random.key(4), q, 3)
    slot, token = multi_draft.rrs_iid(jax.random.key(5), p, q, drafts, valid)
    assert -1 <= int(slot) < 3 and 0 <= int(token) < 128_000
    _raises_own_value_error("sum to 1", multi_draft.rrs_iid, jax.random.key(5), p * 1.05, q, drafts, valid)
