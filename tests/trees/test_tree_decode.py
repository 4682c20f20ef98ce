"""Tree decoding in the shared loop: greedy == AR for every builder; sampled tree decoding matches the enumerated
target law for every builder x verifier (with a negative control); each level is drafted once (drafter tokens per
round); committing a path equals one-by-one decoding; bad input raises clear errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.model.block import Block
from specjax.decode.loop import generate
from specjax.runners.eagle import init_eagle
from specjax.runners.lookup import lookup_handle
from specjax.runners.model import early_exit
from specjax.sampling import GREEDY, SamplingConfig
from specjax.decode.state import Caches, DecodeContext
from specjax.testing.stats import chi_square_pvalue
from specjax.testing.probes import counting
from specjax.testing.pairs import exact_joint_law
from specjax.methods import make_method
from trees import TREE_METHODS, make_speculator
from trees.builders import StaticTree
from trees.tree import tree_from_parents
from trees.walk import RuleSet, check_tree_batch, default_rules

RULES = default_rules()

ALPHA = 1e-4
# small shapes with depth >= 2 so that deep acceptance is exercised (few nodes keep compile time low)
SHAPES = {"eagle2": dict(budget=6, top_k=2, depth=3), "rsd-c": dict(budget=6, branching=(2, 2)),
          "rsd-s": dict(budget=6, width=2, depth=3), "specinfer": dict(budget=6, chains=2, depth=3),
          "static": dict(budget=6)}


@pytest.mark.parametrize("method", TREE_METHODS)
def test_greedy_tree_decoding_equals_greedy_autoregressive(method, tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(0)
    ar = generate(target, tokens, lengths, key, max_new_tokens=14, sampling=GREEDY)
    # drafters: the separate draft model; the early-exit self-drafter for RSD-S; the EAGLE-style head (random,
    # untrained, fed the target's hidden states) for the static tree
    drafter = {"rsd-s": early_exit(target, 1), "static": init_eagle(target, seed=3)}.get(method, draft)
    out = generate(target, tokens, lengths, key, method=make_speculator(method, rules=RULES, **SHAPES[method]),
                   drafter=drafter, max_new_tokens=14, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens))
    if method != "static":                      # an untrained EAGLE head may never be right
        assert out.acceptance_length > 1.0      # the tree really accepted drafts (not AR in disguise)


def _exact_laws(target, prompt, sampling):
    """Exact joint law of tokens (1,2) [V*V], of tokens (2,3) [V*V] and the marginal of token 4 [V]."""
    law = exact_joint_law(target, prompt, sampling, 4)
    return law.sum((2, 3)).ravel(), law.sum((0, 3)).ravel(), law.sum((0, 1, 2))


@pytest.fixture(scope="module")
def exact_t1(tiny_pair):
    return _exact_laws(tiny_pair[0], [3, 1, 4], SamplingConfig(temperature=1.0))


def _pvalues(target, draft, speculator, sampling, n=4096, seed=42):
    prompt = [3, 1, 4]
    out = generate(target, np.tile(np.array(prompt, np.int32), (n, 1)), np.full(n, 3), jax.random.key(seed),
                   method=speculator, drafter=draft, max_new_tokens=4, sampling=sampling)
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
    # per depth (vLLM's convention for trees): entry d = rounds whose accepted path reached depth d + 1
    per_depth = out.acceptance_per_position
    assert len(per_depth) == acc.max() and abs(out.acceptance_length - 1 - sum(per_depth)) < 1e-12
    assert per_depth[1] == ((acc >= 2) & (acc >= 0)).sum() / (acc >= 0).sum()


def test_law_test_has_power_against_the_q_rule_for_deterministic_children(tiny_pair, exact_t1):
    """Negative control: verifying EAGLE-2's deterministic children with RRS using the drafter's q(x) (the pitfall
    of THEORY.md §6.2.3) is biased, and the same test catches it."""
    target, draft = tiny_pair
    j12, j23, m4 = exact_t1
    wrong = RuleSet(iid=RULES.iid, wor=RULES.wor, det=RULES.iid)
    g, _ = _pvalues(target, draft, make_speculator("eagle", rules=wrong, **SHAPES["eagle2"]),
                    SamplingConfig(temperature=1.0))
    pv = [chi_square_pvalue(g[:, 0] * 16 + g[:, 1], j12), chi_square_pvalue(g[:, 1] * 16 + g[:, 2], j23),
          chi_square_pvalue(g[:, 3], m4)]
    assert min(pv) < ALPHA, pv


@pytest.mark.parametrize("method", TREE_METHODS)
def test_each_level_is_drafted_once(method, tiny_pair, ragged_prompts):
    """Drafter tokens processed per round = `prev` + each level's frontier once (N + 1 at most, and for EAGLE-2
    the expanded nodes only), counted at trace time from the calls the drafter actually receives."""
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    for shape in (SHAPES[method], dict(budget=16)):
        spec = make_speculator(method, **shape)
        calls = []
        # traced, not compiled: the count is what the loop's round hands the drafter
        jax.eval_shape(lambda: generate(target, tokens, lengths, jax.random.key(0), method=spec,
                                        drafter=counting(draft, calls), max_new_tokens=6,
                                        sampling=SamplingConfig(temperature=1.0)))
        per_round = calls[1:]                               # calls[0] is the prefill over the prompt
        builder = spec.builder
        assert len(per_round) == builder.max_depth, calls   # one drafter call per level
        assert sum(per_round) == builder.drafter_tokens_per_round
        if method == "eagle2":      # expands top_k nodes per level (never all k^2): k * depth, whatever the budget
            assert per_round == [2] + [builder.top_k] * (builder.max_depth - 1)
        else:                      # prev, the root and every non-leaf node once
            assert builder.drafter_tokens_per_round <= builder.num_nodes + 1


def test_commit_equals_one_by_one_decoding(tiny_pair, ragged_prompts):
    """After one sampled round, both caches at the committed slots equal a causal forward of the emitted text."""
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    tokens, lengths = np.tile(tokens, (4, 1)), np.tile(lengths, 4)
    b, length = tokens.shape
    spec = make_speculator("static", rules=RULES, paths=((0,), (1,), (2,), (0, 0), (0, 1), (1, 0), (0, 0, 0)))
    cap = length + 12
    sampling = SamplingConfig(temperature=1.0)
    rows = np.arange(b)

    def causal(handle, seqs, capacity):
        return handle.forward(handle.init_cache(seqs.shape[0], capacity),
                              Block.chain(seqs, jnp.zeros((seqs.shape[0],), jnp.int32))).cache

    @jax.jit
    def one_round(target, draft, key):
        caches = Caches(causal(target, jnp.asarray(tokens), cap), causal(draft, jnp.asarray(tokens), cap))
        ctx = DecodeContext(prev=jnp.asarray(tokens[rows, lengths - 1]), pending=jnp.full((b,), 5, jnp.int32),
                            position=jnp.asarray(lengths), features=jnp.zeros((b, 2, 32)))
        return spec.round(target=target, drafter=draft, caches=caches, ctx=ctx, key=key, sampling=sampling)

    @jax.jit
    def reference(target, draft, seqs):
        """Causal one-by-one-equivalent forward of the emitted text (right padding never affects earlier slots)."""
        return causal(target, seqs, seqs.shape[1]), causal(draft, seqs, seqs.shape[1])

    deepest = 0
    for seed in range(6):
        res = one_round(target, draft, jax.random.key(seed))
        n = np.asarray(res.num_accepted)
        emitted = np.asarray(res.tokens)
        seqs = np.zeros((b, length + 5), np.int32)
        for r in range(b):
            seq = list(tokens[r, :lengths[r]]) + [5] + list(emitted[r, :n[r]])
            seqs[r, :len(seq)] = seq
        ref_t, ref_d = reference(target, draft, jnp.asarray(seqs))
        for r in range(b):
            end = lengths[r] + 1 + n[r]                       # target: prompt, pending, accepted path
            for cache, ref, upto in ((res.caches.target, ref_t, end), (res.caches.drafter, ref_d, end - 1)):
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
        generate(target, tokens, lengths, key, method=make_speculator("rsd-c", budget=64, rules=RULES),
                 drafter=draft, max_new_tokens=8, cache_capacity=40)
    with pytest.raises(ValueError, match="vocabulary"):
        generate(target, tokens, lengths, key, method=make_speculator("rsd-c", branching=(17,), rules=RULES),
                 drafter=draft, max_new_tokens=4)
    with pytest.raises(ValueError, match="vocabulary"):
        generate(target, tokens, lengths, key, method=make_speculator("rsd-s", width=20, depth=1, rules=RULES),
                 drafter=draft, max_new_tokens=4)
    with pytest.raises(ValueError, match="unknown tree method"):
        make_speculator("beam")
    with pytest.raises(ValueError, match="no shape option"):
        make_speculator("eagle", chains=3)
    with pytest.raises(ValueError, match="needs a drafter"):
        generate(target, tokens, lengths, key, method=make_method("rsd-c"), max_new_tokens=4)
    with pytest.raises(ValueError, match="cannot be a target"):   # an n-gram drafter scores nothing
        generate(lookup_handle(target.config), tokens, lengths, key, method=make_method("eagle"),
                 drafter=init_eagle(target), max_new_tokens=4)
    with pytest.raises(ValueError, match="exceeds"):
        make_speculator("eagle", budget=50, top_k=2, depth=3)
    with pytest.raises(ValueError, match="parent path"):
        StaticTree(paths=((0,), (1, 0)))
    with pytest.raises(ValueError, match="parent"):
        tree_from_parents([0, 1, 2], [-1, 2, 0])
    tree = tree_from_parents([0, 1, 2], [-1, 0, 1], vocab_size=16)
    with pytest.raises(ValueError, match="batch"):
        check_tree_batch(tree, 4)



def test_hybrid_drafter_merges_ngram_and_model_children(tiny_pair, ragged_prompts, exact_t1, concurrently):
    """A hybrid (model + n-gram) drafter: greedy tree decoding equals AR; the root's children are the n-gram
    proposal first, then the model's best other tokens, with no duplicate; the sampled law is the target's."""
    from specjax.decode.loop import prefill
    from specjax.runners.hybrid import hybrid_handle

    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    hybrid = hybrid_handle(draft, lookup_handle(target.config))
    methods = ("eagle2", "static")
    *outs, ar = concurrently([lambda method=method: generate(
        target, tokens, lengths, jax.random.key(0), method=make_speculator(method, **SHAPES[method]), drafter=hybrid,
        max_new_tokens=14, sampling=GREEDY) for method in methods] +
        [lambda: generate(target, tokens, lengths, jax.random.key(0), max_new_tokens=14, sampling=GREEDY)])
    for method, out in zip(methods, outs):
        np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens), err_msg=method)

    builder = make_speculator("static", paths=((0,), (1,), (2,))).builder
    prompt = (jnp.asarray(tokens), jnp.asarray(lengths))

    @jax.jit                # one program per drafter: op by op, the hybrid's prefill and level alone cost ~3x more
    def root_children(drafter):
        start = prefill(target, drafter, *prompt, jax.random.key(1), GREEDY, 32)
        return builder.build(drafter, start.caches.drafter, start.ctx, jax.random.key(2), GREEDY).tree.token[:, 1:4]

    root_kids, model_kids = np.asarray(root_children(hybrid)), np.asarray(root_children(draft))
    lk_kids = np.asarray(root_children(lookup_handle(target.config)))[:, 0]
    for row in range(len(tokens)):
        assert root_kids[row, 0] == lk_kids[row]                               # the n-gram proposal first
        assert len(set(root_kids[row].tolist())) == 3                          # deduplicated
        rest = [t for t in model_kids[row].tolist() if t != lk_kids[row]][:2]
        assert root_kids[row, 1:].tolist() == rest                             # then the model's best others

    g, out = _pvalues(target, hybrid, make_speculator("eagle", rules=RULES, **SHAPES["eagle2"]),
                      SamplingConfig(temperature=1.0))
    j12, _, m4 = exact_t1                                  # the exact laws at T = 1 after [3, 1, 4]
    assert min(chi_square_pvalue(g[:, 0] * 16 + g[:, 1], j12), chi_square_pvalue(g[:, 3], m4)) > ALPHA
    with pytest.raises(ValueError, match="n-gram"):
        hybrid_handle(draft, draft)


SEQUENCE_VERIFIERS = [("chain", "block"), ("rsd-c", "traversal"), ("rsd-s", "traversal"), ("specinfer", "traversal"),
                      ("specinfer", "gbv"), ("eagle2", "traversal")]


def _method(name, **kw):
    from specjax.methods import make_method
    return make_method(name, **(dict(num_draft=3) if name == "chain" else SHAPES[name]), **kw)


@pytest.mark.parametrize("name, verifier", SEQUENCE_VERIFIERS)
def test_sequence_level_verifiers_in_the_loop_are_greedy_exact(name, verifier, tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    ar = generate(target, tokens, lengths, jax.random.key(0), max_new_tokens=12, sampling=GREEDY)
    out = generate(target, tokens, lengths, jax.random.key(0), method=_method(name), verifier=verifier,
                   drafter=draft, max_new_tokens=12, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens))
    assert out.acceptance_length > 1.0


@pytest.mark.parametrize("name, verifier", [("chain", "block"), ("rsd-c", "traversal"), ("specinfer", "gbv")])
def test_sequence_level_verifiers_in_the_loop_sample_the_target_law(name, verifier, tiny_pair, exact_t1):
    target, draft = tiny_pair
    j12, j23, m4 = exact_t1
    g, out = _pvalues(target, draft, _method(name, verifier=verifier), SamplingConfig(temperature=1.0))
    pv = [chi_square_pvalue(g[:, 0] * 16 + g[:, 1], j12), chi_square_pvalue(g[:, 1] * 16 + g[:, 2], j23),
          chi_square_pvalue(g[:, 3], m4)]
    assert min(pv) > ALPHA, pv
    assert np.any(np.asarray(out.accepted) >= 2)


def test_verifier_combinations_and_tree_inputs_are_checked_eagerly(tiny_pair, ragged_prompts):
    import traceback

    from trees.verify import verify_tree
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    with pytest.raises(ValueError, match="trie"):
        make_speculator("rsd-c", budget=6, verifier="gbv")
    with pytest.raises(ValueError, match="custom per-node rules"):
        make_speculator("rsd-c", budget=6, rules=RULES, verifier="traversal")
    with pytest.raises(ValueError, match="tree verifier"):
        make_speculator("rsd-c", budget=6, verifier="block")
    with pytest.raises(ValueError, match="chain verifier"):
        generate(target, tokens, lengths, jax.random.key(0), method=_method("chain"), verifier="traversal",
                 drafter=draft, max_new_tokens=4)
    with pytest.raises(ValueError, match="already verifies"):
        generate(target, tokens, lengths, jax.random.key(0), method=_method("chain", verifier="block"),
                 verifier="token", drafter=draft, max_new_tokens=4)
    tree = tree_from_parents([0, 1, 2], [-1, 0, 1], vocab_size=16)
    p = np.full((1, 3, 16), 1 / 16, np.float32)
    path, n, _ = verify_tree(jax.random.key(0), tree, p)                      # a well-formed call runs
    assert int(n[0]) <= 2 and int(path[0, 0]) == 0
    bad_p = p.copy()
    bad_p[0, 1, 3] = np.nan
    wrong_parent = tree.replace(children=tree.children.at[0, 0, 0].set(2))  # node 0 lists node 2 (parent 1)
    for kwargs, message in ((dict(target_probs=bad_p), "NaN"), (dict(tree=wrong_parent), "child slot"),
                            (dict(verifier="beam"), "tree verifier"), (dict(max_depth=1), "deeper")):
        args = {**dict(tree=tree, target_probs=p), **kwargs}
        with pytest.raises(ValueError, match=message) as excinfo:
            verify_tree(jax.random.key(0), args.pop("tree"), args.pop("target_probs"), **args)
        assert not any("/jax/" in f.filename for f in traceback.extract_tb(excinfo.tb)), message


def test_eagle_is_an_alias_of_the_eagle2_tree():
    """`eagle2` names the EAGLE-2 tree builder; `eagle` (its older name, easily read as the drafter head) stays an
    alias that builds the same speculator; an unknown name is refused."""
    assert "eagle2" in TREE_METHODS and "eagle" not in TREE_METHODS
    assert make_method("eagle", budget=8) == make_method("eagle2", budget=8) == make_speculator("eagle", budget=8)
    with pytest.raises(ValueError, match="unknown tree method"):
        make_speculator("eagle3", budget=8)


def test_builder_options_are_checked_against_the_signature(monkeypatch):
    """An option a builder does not take is a ValueError; a TypeError raised inside a builder is not."""
    from trees import builders

    with pytest.raises(ValueError, match="takes no shape option"):
        builders.make_builder("rsd-c", budget=8, top_k=2)

    def broken(budget, depth=None):
        return len(budget)

    monkeypatch.setitem(builders.BUILDERS, "static", broken)
    with pytest.raises(TypeError, match="len"):
        builders.make_builder("static", budget=8, depth=2)
