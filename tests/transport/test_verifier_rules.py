"""The jax rules in specjax.verify.multi_draft: sampled output ~ p (chi-square), Monte Carlo acceptance = exact
acceptance, and per-tuple conditional law = the exact numpy kernel. Fixed seeds; thresholds from the sample size."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.verify import draft_laws, multi_draft
from specjax.testing.stats import chi_square_pvalue_counts
from transport import verifier_acceptance
from transport.exact import dispatch, kernels
from transport.optimal import lp

N = 20_000
P_MIN = 1e-4          # chi-square p-value threshold (fixed seeds: a failure is a real, reproducible discrepancy)


def _pair(seed, v=6, dtype=np.float32):
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.full(v, 0.7)), rng.dirichlet(np.full(v, 0.7))
    p[-1] = 0.0                                    # a token the target never emits
    return (p / p.sum()).astype(dtype), q.astype(dtype)


def _f64(x):
    x = np.asarray(x, np.float64)
    return x / x.sum()


def _run(rule, sampler, p, q, k, seed, **kw):
    def one(key):
        kd, kv = jax.random.split(key)
        drafts, valid = sampler(kd, q, k)
        slot, token = rule(kv, p, q, drafts, valid, **kw)
        return slot, token, drafts
    return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(seed), N))


CASES = [
    ("rrs", multi_draft.rrs_iid, draft_laws.sample_iid, 3),
    ("rrs_without_replacement", multi_draft.rrs_without_replacement, draft_laws.sample_without_replacement, 3),
    ("kseq", multi_draft.kseq, draft_laws.sample_iid, 3),
    ("spechub", multi_draft.spechub, lambda key, q, k: draft_laws.sample_spechub(key, q), 2),
    ("greedy", multi_draft.greedy_drafts_verifier, draft_laws.sample_greedy_drafts, 3),
]


@pytest.mark.parametrize("name,rule,sampler,k", CASES, ids=[c[0] for c in CASES])
def test_sampled_rule_is_lossless_and_accepts_at_the_exact_rate(name, rule, sampler, k):
    p, q = _pair(1)
    slot, token, drafts = _run(rule, sampler, jnp.asarray(p), jnp.asarray(q), k, seed=2)
    slot, token, drafts = map(np.asarray, (slot, token, drafts))
    assert chi_square_pvalue_counts(np.bincount(token, minlength=len(p)), p) > P_MIN
    accepted = slot >= 0
    assert np.all(token[accepted] == drafts[accepted, slot[accepted]])        # slot and token agree
    exact = verifier_acceptance(_f64(p), _f64(q), k, name)
    assert abs(accepted.mean() - exact) < 5 * np.sqrt(exact * (1 - exact) / N) + 1e-3 / np.sqrt(N)


@pytest.mark.parametrize("name,rule,tuple_", [("rrs", multi_draft.rrs_iid, (2, 2, 0)),
                                              ("rrs_without_replacement", multi_draft.rrs_without_replacement, (0, 3, 1)),
                                              ("kseq", multi_draft.kseq, (4, 1, 4))])
def test_conditional_law_per_tuple_matches_exact_kernel(name, rule, tuple_):
    p, q = _pair(3, dtype=np.float64)
    drafts, valid = jnp.asarray(tuple_, jnp.int32), jnp.ones(3, bool)
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(4), N)
        slot, token = jax.jit(jax.vmap(lambda key: rule(key, jnp.asarray(p), jnp.asarray(q), drafts, valid)))(keys)
    counts = np.zeros((4, len(p)))
    np.add.at(counts, (np.asarray(slot) + 1, np.asarray(token)), 1)
    assert chi_square_pvalue_counts(counts, dispatch.kernel(name, p, q, tuple_)) > P_MIN


def test_padded_slots_are_skipped():
    """An invalid slot is never accepted and does not change the law: [x, pad, y] behaves like [x, y]."""
    p, q = _pair(5, dtype=np.float64)
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(6), N)
        run = jax.jit(jax.vmap(lambda key: multi_draft.rrs_without_replacement(
            key, jnp.asarray(p), jnp.asarray(q), jnp.array([1, 3, 0], jnp.int32), jnp.array([True, False, True]))))
        slot, token = map(np.asarray, run(keys))
    assert not np.any(slot == 1)
    exact = dispatch.kernel("rrs_without_replacement", p, q, [1, 0])
    counts = np.zeros((3, len(p)))
    np.add.at(counts, (np.where(slot == 2, 2, slot + 1), token), 1)
    assert chi_square_pvalue_counts(counts, exact) > P_MIN


def test_without_replacement_sampler_masks_slots_beyond_the_support():
    q = jnp.array([0.5, 0.0, 0.5, 0.0])
    drafts, valid = draft_laws.sample_without_replacement(jax.random.key(0), q, 3)
    assert np.asarray(valid).tolist() == [True, True, False]
    assert sorted(np.asarray(drafts)[:2].tolist()) == [0, 2]


def test_lp_plan_verifier_is_lossless_and_optimal():
    p, q = _pair(7, v=5, dtype=np.float64)
    plan = lp.lp_optimum(p, q, 2, "iid")
    arrays = dict(sets=jnp.asarray(plan.sets), accept_probs=jnp.asarray(plan.accept_probs()),
                  residual=jnp.asarray(plan.residual))
    with jax.enable_x64(True):
        slot, token, _ = _run(lambda *a: multi_draft.lp_plan_verifier(*a, **arrays), draft_laws.sample_iid,
                              jnp.asarray(p), jnp.asarray(q), 2, seed=8)
    slot, token = np.asarray(slot), np.asarray(token)
    assert chi_square_pvalue_counts(np.bincount(token, minlength=len(p)), p) > P_MIN
    a = plan.value
    assert abs((slot >= 0).mean() - a) < 5 * np.sqrt(a * (1 - a) / N) + 1e-6


def test_rules_vmap_over_batch_and_residual_helper():
    p, q = _pair(9)
    pb, qb = jnp.stack([jnp.asarray(p), jnp.asarray(q)]), jnp.stack([jnp.asarray(q), jnp.asarray(p)])
    drafts = jnp.array([[0, 1], [2, 2]], jnp.int32)
    valid = jnp.ones((2, 2), bool)
    slot, token = jax.vmap(multi_draft.rrs_iid)(jax.random.split(jax.random.key(0), 2), pb, qb, drafts, valid)
    assert slot.shape == (2,) and slot.dtype == jnp.int32 and token.dtype == jnp.int32
    res = multi_draft.rrs_residual(jnp.asarray(p), jnp.asarray(q), drafts[0], valid[0])
    exact = kernels.kernel_rrs(_f64(p), _f64(q), np.array([0, 1]), False)[0]
    np.testing.assert_allclose(np.asarray(res) * exact.sum(), exact, atol=1e-6)
    assert float(multi_draft.kseq_rho_star(jnp.asarray(p), jnp.asarray(q), 3)) == pytest.approx(
        kernels.kseq_rho_star(_f64(p), _f64(q), 3), rel=1e-5)
