"""Tree decoding in the shared loop: greedy == AR for every builder; sampled tree decoding matches the enumerated
target law for every builder x verifier (with a negative control); committing a path equals one-by-one decoding;
bad input raises clear errors."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trees.verify import default_rules

RULES = default_rules()
from specjax.decode import DecodeContext, generate
from specjax.drafters import causal_mask, early_exit_drafter, model_runner
from specjax.eagle import init_eagle
from specjax.sampling import GREEDY, SamplingConfig, warp_logits
from specjax.stats import chi_square_pvalue
from trees import TREE_METHODS, make_speculator
from trees.builders import StaticTree
from trees.tree import tree_from_parents
from trees.verify import RuleSet, check_tree_batch

ALPHA = 1e-4
# small shapes with depth >= 2 so that deep acceptance is exercised (few nodes keep compile time low)
SHAPES = {"eagle": dict(budget=6, top_k=2, depth=3), "rsd-c": dict(budget=6, branching=(2, 2)),
          "rsd-s": dict(budget=6, width=2, depth=3), "specinfer": dict(budget=6, chains=2, depth=3),
          "static": dict(budget=6)}


@pytest.mark.parametrize("method", TREE_METHODS)
def test_greedy_tree_decoding_equals_greedy_autoregressive(method, tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(0)
    ar = generate(target, tokens, lengths, key, method="ar", max_new_tokens=14, sampling=GREEDY)
    # drafters: the separate draft model; the early-exit self-drafter for RSD-S; the EAGLE-style head (random,
    # untrained, fed the target's hidden states) for the static tree
    drafter = {"rsd-s": early_exit_drafter(target, 1), "static": init_eagle(target, seed=3)}.get(method, draft)
    out = generate(target, tokens, lengths, key, speculator=make_speculator(method, rules=RULES, **SHAPES[method]),
                   drafter=drafter, max_new_tokens=14, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens))
    if method != "static":                      # an untrained EAGLE head may never be right
        assert out.acceptance_length > 1.0      # the tree really accepted drafts (not AR in disguise)


def _exact_laws(target, prompt, sampling):
    """Exact joint law of tokens (1,2) [V*V], of tokens (2,3) [V*V] and the marginal of token 4 [V]."""
    v = target.config.vocab_size
    runner, params = model_runner(target)

    @jax.jit
    def last_probs(params, seqs):
        pos = jnp.broadcast_to(jnp.arange(seqs.shape[1]), seqs.shape)
        logits, _, _ = runner.forward(params, None, seqs, pos, None, causal_mask(*seqs.shape))
        return warp_logits(logits[:, -1], sampling)

    def next_probs(seqs):
        return np.asarray(last_probs(params, jnp.asarray(seqs, jnp.int32)), np.float64)

    p1 = next_probs([prompt])[0]
    p2 = next_probs([prompt + [a] for a in range(v)])
    p3 = next_probs([prompt + [a, b] for a, b in itertools.product(range(v), repeat=2)]).reshape(v, v, v)
    p4 = next_probs([prompt + list(c) for c in itertools.product(range(v), repeat=3)]).reshape(v, v, v, v)
    j12 = p1[:, None] * p2
    j123 = j12[..., None] * p3
    return j12.ravel(), j123.sum(0).ravel(), np.einsum("abc,abcd->d", j123, p4)


@pytest.fixture(scope="module")
def exact_t1(tiny_pair):
    return _exact_laws(tiny_pair[0], [3, 1, 4], SamplingConfig(temperature=1.0))


def _pvalues(target, draft, speculator, sampling, n=4096, seed=42):
    prompt = [3, 1, 4]
    out = generate(target, np.tile(np.array(prompt, np.int32), (n, 1)), np.full(n, 3), jax.random.key(seed),
                   speculator=speculator, drafter=draft, max_new_tokens=4, sampling=sampling)
    g = np.asarray(out.tokens)
    return g, out


@pytest.mark.parametrize("method", TREE_METHODS)
def test_sampled_tree_decoding_matches_exact_target_law(method, tiny_pair, exact_t1):
    target, draft = tiny_pair
    j12, j23, m4 = exact_t1
    g, out = _pvalues(target, draft, make_speculator(method, rules=RULES, **SHAPES[method]),
                      SamplingConfig(temperature=1.0))
    v = 16
    pv = [chi_square_pvalue(g[:, 0] * v + g[:, 1], j12), chi_square_pvalue(g[:, 1] * v + g[:, 2], j23),
          chi_square_pvalue(g[:, 3], m4)]
    assert min(pv) > ALPHA, pv
    acc = np.asarray(out.accepted)
    assert np.any(acc >= 2)                      # deep nodes were accepted, so the test covers the walk below root
    assert 1.0 < out.acceptance_length


def test_law_test_has_power_against_the_q_rule_for_deterministic_children(tiny_pair, exact_t1):
    """Negative control: verifying EAGLE-2's deterministic children with RRS using the drafter's q(x) (the pitfall
    of THEORY.md §6.2.3) is biased, and the same test catches it."""
    target, draft = tiny_pair
    j12, j23, m4 = exact_t1
    wrong = RuleSet(iid=RULES.iid, wor=RULES.wor, det=RULES.iid)
    g, _ = _pvalues(target, draft, make_speculator("eagle", rules=wrong, **SHAPES["eagle"]),
                    SamplingConfig(temperature=1.0))
    pv = [chi_square_pvalue(g[:, 0] * 16 + g[:, 1], j12), chi_square_pvalue(g[:, 1] * 16 + g[:, 2], j23),
          chi_square_pvalue(g[:, 3], m4)]
    assert min(pv) < ALPHA, pv


def test_commit_equals_one_by_one_decoding(tiny_pair, ragged_prompts):
    """After one sampled round, both caches at the committed slots equal a causal forward of the emitted text."""
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    tokens, lengths = np.tile(tokens, (4, 1)), np.tile(lengths, 4)
    b, length = tokens.shape
    spec = make_speculator("static", rules=RULES, paths=((0,), (1,), (2,), (0, 0), (0, 1), (1, 0), (0, 0, 0)))
    t_run, t_par = model_runner(target)
    d_run, d_par = model_runner(draft)
    cap = length + 12
    sampling = SamplingConfig(temperature=1.0)
    rows = np.arange(b)

    @jax.jit
    def one_round(t_par, d_par, key):
        pos = jnp.broadcast_to(jnp.arange(length), (b, length))
        tc = t_run.init_cache(t_par, b, cap)
        _, _, tc = t_run.forward(t_par, tc, jnp.asarray(tokens), pos, jnp.zeros(b, jnp.int32), causal_mask(b, length))
        dc = d_run.init_cache(d_par, b, cap)
        _, _, dc = d_run.forward(d_par, dc, jnp.asarray(tokens), pos, jnp.zeros(b, jnp.int32), causal_mask(b, length))
        ctx = DecodeContext(prev=jnp.asarray(tokens[rows, lengths - 1]), pending=jnp.full((b,), 5, jnp.int32),
                            position=jnp.asarray(lengths), features=jnp.zeros((b, 2, 32)))
        return spec.round(t_run, t_par, d_run, d_par, tc, dc, ctx, key, sampling)

    @jax.jit
    def reference(t_par, d_par, seqs):
        """Causal one-by-one-equivalent forward of the emitted text (right padding never affects earlier slots)."""
        bb, ll = seqs.shape
        pos = jnp.broadcast_to(jnp.arange(ll), (bb, ll))
        zero = jnp.zeros(bb, jnp.int32)
        _, _, tc = t_run.forward(t_par, t_run.init_cache(t_par, bb, ll), seqs, pos, zero, causal_mask(bb, ll))
        _, _, dc = d_run.forward(d_par, d_run.init_cache(d_par, bb, ll), seqs, pos, zero, causal_mask(bb, ll))
        return tc, dc

    deepest = 0
    for seed in range(6):
        res = one_round(t_par, d_par, jax.random.key(seed))
        n = np.asarray(res.num_accepted)
        emitted = np.asarray(res.tokens)
        seqs = np.zeros((b, length + 5), np.int32)
        for r in range(b):
            seq = list(tokens[r, :lengths[r]]) + [5] + list(emitted[r, :n[r]])
            seqs[r, :len(seq)] = seq
        ref_t, ref_d = reference(t_par, d_par, jnp.asarray(seqs))
        for r in range(b):
            end = lengths[r] + 1 + n[r]                       # target: prompt, pending, accepted path
            for cache, ref, upto in ((res.target_cache, ref_t, end), (res.draft_cache, ref_d, end - 1)):
                for layer in range(len(cache.keys)):          # the drafter's cache is valid below position + n
                    np.testing.assert_allclose(np.asarray(cache.keys[layer][r, :upto]),
                                               np.asarray(ref.keys[layer][r, :upto]), atol=2e-5)
                    np.testing.assert_allclose(np.asarray(cache.values[layer][r, :upto]),
                                               np.asarray(ref.values[layer][r, :upto]), atol=2e-5)
        deepest = max(deepest, int(n.max()))
    assert deepest >= 2                                       # a multi-node path through the tree was committed


def test_bad_input_raises_clear_errors(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="cache slots"):
        generate(target, tokens, lengths, key, speculator=make_speculator("rsd-c", budget=64, rules=RULES),
                 drafter=draft, max_new_tokens=8, cache_capacity=40)
    with pytest.raises(ValueError, match="vocabulary"):
        generate(target, tokens, lengths, key, speculator=make_speculator("rsd-c", branching=(17,), rules=RULES),
                 drafter=draft, max_new_tokens=4)
    with pytest.raises(ValueError, match="vocabulary"):
        generate(target, tokens, lengths, key, speculator=make_speculator("rsd-s", width=20, depth=1, rules=RULES),
                 drafter=draft, max_new_tokens=4)
    with pytest.raises(ValueError, match="unknown tree method"):
        make_speculator("beam")
    with pytest.raises(ValueError, match="exceeds"):
        make_speculator("eagle", budget=50, top_k=2, depth=3)
    with pytest.raises(ValueError, match="parent path"):
        StaticTree(paths=((0,), (1, 0)))
    with pytest.raises(ValueError, match="parent"):
        tree_from_parents([0, 1, 2], [-1, 2, 0])
    tree = tree_from_parents([0, 1, 2], [-1, 0, 1], vocab_size=16)
    with pytest.raises(ValueError, match="batch"):
        check_tree_batch(tree, 4)
