"""Token-level intersection in the jitted loop (`specjax.crossvocab`): the vocabulary map against brute force, the
runner's laws on chain and tree blocks against their numpy definition (the drafter reading the text its own way,
restricted to the shared tokens), the loop's samples against the target's exact law (chi-square, negative control),
greedy equality with AR as chain and tree, and bad input."""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.crossvocab import cross_vocab, vocab_map
from specjax.decode.loop import generate
from specjax.methods import make_method
from specjax.model.block import Block
from specjax.sampling import GREEDY, SamplingConfig
from specjax.testing.pairs import (TINY_DRAFTER_SPELLINGS, TINY_TARGET_SPELLINGS, exact_joint_law,
                                   tiny_cross_pair, tiny_pair)
from specjax.testing.stats import chi_square_pvalue_counts
from trees.tree import ancestor_mask, depth_positions

PROMPT = [4, 11, 1]          # "ab", "cab", "a": two tokens the drafter reads as two pieces


@pytest.fixture(scope="module")
def pair():
    target, drafter = tiny_cross_pair()
    vocab, overlap = vocab_map(TINY_TARGET_SPELLINGS, TINY_DRAFTER_SPELLINGS, max_pieces=3, fallback=3)
    return target, drafter, cross_vocab(drafter, vocab), overlap


def test_vocab_map_against_brute_force(pair):
    _, _, handle, overlap = pair
    vocab = handle.params.vocab
    d_index = {b: i for i, b in enumerate(TINY_DRAFTER_SPELLINGS) if b}
    for t, b in enumerate(TINY_TARGET_SPELLINGS):
        assert int(vocab.to_drafter[t]) == d_index.get(b, -1)
        w = int(vocab.widths[t])
        spelled = b"".join(TINY_DRAFTER_SPELLINGS[i] for i in np.asarray(vocab.pieces[t, :w]))
        assert spelled == (b if b else b"c")                            # the special token reads as the fallback
        pieces = [TINY_DRAFTER_SPELLINGS[i] for i in np.asarray(vocab.pieces[t, :w])]
        rest = b or b""
        for piece in pieces if b else []:                               # greedy: each piece the longest that fits
            assert piece == max((d for d in d_index if rest.startswith(d)), key=len)
            rest = rest[len(piece):]
    assert overlap.shared == 10 and overlap.unspelled == 1 and overlap.cut == 0


def test_duplicate_spellings_map_to_the_piece_not_the_byte_token():
    target = [b" ", b"a", b" "]                    # id 0 a byte-fallback twin of piece 2
    vocab, overlap = vocab_map(target, [b"a", b" "], target_byte_tokens=[0])
    assert np.asarray(vocab.to_drafter).tolist() == [-1, 0, 1] and overlap.shared == 2


def definition(target_path, drafter, vocab):
    """TLI's law after a target path: the drafter's law after the pieces of every token, restricted to the shared
    target tokens and renormalised `[V_t]`."""
    text = [int(p) for t in target_path for p in np.asarray(vocab.pieces[t, :int(vocab.widths[t])])]
    padded = jnp.asarray([text + [0] * (24 - len(text))])              # one length: one compile (causal)
    q = np.asarray(jax.nn.softmax(drafter.score(padded).logits[0, len(text) - 1]), np.float64)
    to = np.asarray(vocab.to_drafter)
    law = np.where(to >= 0, q[np.maximum(to, 0)], 0.0)
    return law / law.sum()


def test_runner_laws_on_chain_and_tree_blocks(pair):
    """Every query of a prompt, a chain block (first wide tokens, then one-piece tokens: both branches) and a tree
    block (siblings, ancestors) against the definition."""
    _, drafter, handle, _ = pair
    vocab = handle.params.vocab
    start = jnp.asarray([len(PROMPT)], jnp.int32)
    pre = handle.score(jnp.asarray([PROMPT]), capacity=16)
    got = np.asarray(jax.nn.softmax(pre.logits[0], axis=-1))
    for i in range(len(PROMPT)):
        np.testing.assert_allclose(got[i], definition(PROMPT[:i + 1], drafter, vocab), atol=2e-6)
    for chain in ([5, 15, 2], [1, 8, 9]):                       # "ba", "bca", "b" wide; then all one piece
        out = handle.forward(pre.cache, Block.chain(jnp.asarray([chain]), start))
        got = np.asarray(jax.nn.softmax(out.logits[0], axis=-1))
        for i in range(len(chain)):
            np.testing.assert_allclose(got[i], definition(PROMPT + chain[:i + 1], drafter, vocab), atol=2e-6)
    tokens, parents, depth = [4, 1, 11, 3, 2], [-1, 0, 0, 1, 2], [0, 1, 1, 2, 2]
    block = Block(tokens=jnp.asarray([tokens], jnp.int32), positions=depth_positions(jnp.asarray([depth]), start),
                  slots=start[:, None] + jnp.arange(len(tokens))[None], window=start,
                  visible=ancestor_mask(jnp.asarray([parents]), max(depth)))
    got = np.asarray(jax.nn.softmax(handle.forward(pre.cache, block).logits[0], axis=-1))
    for i in range(len(tokens)):
        path, j = [], i
        while j >= 0:
            path.insert(0, tokens[j])
            j = parents[j]
        np.testing.assert_allclose(got[i], definition(PROMPT + path, drafter, vocab), atol=2e-6)


def test_commit_moves_a_tree_path(pair):
    """After committing the path root -> node 2 -> node 4 of a tree block, a chain read from the committed prefix
    sees exactly that text."""
    _, drafter, handle, _ = pair
    vocab = handle.params.vocab
    start = jnp.asarray([len(PROMPT)], jnp.int32)
    pre = handle.score(jnp.asarray([PROMPT]), capacity=16)
    tokens, parents, depth = [4, 1, 11, 3, 15], [-1, 0, 0, 1, 2], [0, 1, 1, 2, 2]
    block = Block(tokens=jnp.asarray([tokens], jnp.int32), positions=depth_positions(jnp.asarray([depth]), start),
                  slots=start[:, None] + jnp.arange(len(tokens))[None], window=start,
                  visible=ancestor_mask(jnp.asarray([parents]), max(depth)))
    cache = handle.forward(pre.cache, block).cache
    cache = handle.runner.commit(cache, start, jnp.asarray([[0, 2, 4, -1, -1]]), jnp.asarray([2]))
    out = handle.forward(cache, Block.chain(jnp.asarray([[2]]), start + 3))
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(out.logits[0, 0])),
                               definition(PROMPT + [4, 11, 15, 2], drafter, vocab), atol=2e-6)


def outcome_counts(tokens, law):
    v, n = law.shape[0], law.ndim
    index = np.ravel_multi_index(np.asarray(tokens)[:, :n].T, (v,) * n)
    return np.bincount(index, minlength=v ** n).astype(float), law.reshape(-1)


@pytest.mark.parametrize("method", ["chain", "tree"])
def test_loop_samples_the_target_law(pair, method):
    """Chi-square of the first three tokens the loop emits (chain K = 3; RSD-S tree, width 2, depth 3) against the
    target's exact law; negative control: the same samples against the target's law at another temperature."""
    from trees.speculator import make_speculator
    target, _, handle, _ = pair
    spec = {"chain": make_method("chain", num_draft=3),
            "tree": make_speculator("rsd-s", budget=6, width=2, depth=3)}[method]
    n = 3000
    sampling = SamplingConfig()
    r = generate(target, np.tile(np.asarray([PROMPT]), (n, 1)), np.full((n,), len(PROMPT)), jax.random.key(3),
                 method=spec, drafter=handle, max_new_tokens=3, sampling=sampling)
    law = exact_joint_law(target, PROMPT, sampling, 3)
    assert chi_square_pvalue_counts(*outcome_counts(r.tokens, law)) > 1e-3
    colder = exact_joint_law(target, PROMPT, SamplingConfig(temperature=0.7), 3)
    assert chi_square_pvalue_counts(*outcome_counts(r.tokens, colder)) < 1e-6
    assert r.acceptance_length > 1.1                    # the restricted drafter does get drafts accepted


def test_greedy_cross_vocab_sd_equals_greedy_ar(pair):
    """Ragged prompts; chain and tree; the target's argmax decoding token for token."""
    from trees.speculator import make_speculator
    target, _, handle, _ = pair
    prompts, lengths = np.asarray([PROMPT, [5, 15, 0], [11, 0, 0]]), np.asarray([3, 2, 1])
    kw = dict(max_new_tokens=12, sampling=GREEDY)
    ar = generate(target, prompts, lengths, jax.random.key(0), **kw)
    for spec in (make_method("chain", num_draft=3), make_speculator("eagle2", budget=6, top_k=2, depth=3)):
        sd = generate(target, prompts, lengths, jax.random.key(0), method=spec, drafter=handle, **kw)
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens))


def test_bad_input_raises():
    target, drafter = tiny_cross_pair()
    with pytest.raises(ValueError, match="max_pieces"):
        vocab_map(TINY_TARGET_SPELLINGS, TINY_DRAFTER_SPELLINGS, max_pieces=0)
    with pytest.raises(ValueError, match="fallback"):
        vocab_map(TINY_TARGET_SPELLINGS, TINY_DRAFTER_SPELLINGS, fallback=12)
    assert int(vocab_map(TINY_TARGET_SPELLINGS, TINY_DRAFTER_SPELLINGS)[0].pieces[0, 0]) == 1   # no b" ": "a"
    with pytest.raises(ValueError, match="share no token"):
        cross_vocab(drafter, vocab_map([None, b"x", b"y"], [b"z", b" "])[0])
    with pytest.raises(ValueError, match="another drafter"):            # a map built for a larger drafter
        cross_vocab(drafter, vocab_map(TINY_TARGET_SPELLINGS, TINY_DRAFTER_SPELLINGS + (b"ab",), fallback=3)[0])
    from specjax.runners.eagle import init_eagle
    with pytest.raises(ValueError, match="features"):                  # an EAGLE head belongs to its target
        cross_vocab(init_eagle(tiny_pair()[0]), vocab_map(TINY_TARGET_SPELLINGS, TINY_DRAFTER_SPELLINGS,
                                                          fallback=3)[0])
    vocab, _ = vocab_map(TINY_TARGET_SPELLINGS[:12], TINY_DRAFTER_SPELLINGS, fallback=3)
    with pytest.raises(ValueError, match="vocabulary"):                 # the loop checks the presented vocabulary
        generate(target, np.asarray([PROMPT]), np.asarray([3]), jax.random.key(0),
                 method=make_method("chain", num_draft=2), drafter=cross_vocab(drafter, vocab), max_new_tokens=4)


def tiny_codecs():
    """Greedy longest-match tokenizers of the tiny pair's spellings (the codecs SLEM re-encodes text with)."""
    from specjax.crossvocab.slem import TextCodec
    from specjax.crossvocab.vocab import spell

    def codec(spellings):
        index = {b: i for i, b in enumerate(spellings) if b}
        return TextCodec(spellings, lambda data: spell(data, index, max(map(len, index))) or [])
    return codec(TINY_TARGET_SPELLINGS), codec(TINY_DRAFTER_SPELLINGS)


def test_slem_greedy_equals_greedy_ar_and_samples_the_target_law(pair):
    """SLEM (host-stepped): greedy output equals AR token for token; at T = 1 the first two tokens of 1000 runs
    pass chi-square against the target's exact law, and fail it against the law at T = 0.7 (negative control)."""
    from specjax.crossvocab.slem import slem_generate
    target, drafter, _, _ = pair
    t_codec, d_codec = tiny_codecs()
    ar = generate(target, np.asarray([PROMPT]), np.asarray([3]), jax.random.key(0), max_new_tokens=12,
                  sampling=GREEDY)
    out = slem_generate(target, drafter, t_codec, d_codec, PROMPT, jax.random.key(0), num_draft=3,
                        max_new_tokens=12, sampling=GREEDY)
    assert out.tokens == np.asarray(ar.tokens[0, :12]).tolist()
    assert out.acceptance_length > 1.0 and len(out.accepted) < 12
    law = exact_joint_law(target, PROMPT, SamplingConfig(), 2)
    firsts = np.asarray([slem_generate(target, drafter, t_codec, d_codec, PROMPT, jax.random.key(seed),
                                       num_draft=3, max_new_tokens=2).tokens[:2] for seed in range(1000)])
    assert chi_square_pvalue_counts(*outcome_counts(firsts, law)) > 1e-3
    colder = exact_joint_law(target, PROMPT, SamplingConfig(temperature=0.7), 2)
    assert chi_square_pvalue_counts(*outcome_counts(firsts, colder)) < 1e-6
