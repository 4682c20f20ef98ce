"""Prompt-lookup drafting: proposals against a plain-Python reference (chains and tree paths), nothing outside the
query's own path is read, greedy SD == AR with chains and trees, the sampled law equals the enumerated target law,
bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import trees
from specjax.model.block import Block
from specjax.decode.loop import generate
from specjax.runners.lookup import PROPOSAL_GAP, lookup_handle
from specjax.sampling import GREEDY, SamplingConfig
from specjax.methods import make_method
from tests.exact_tables import assert_target_law, decode_law_rows


def _reference(seq: list[int], n_hist: int, max_ngram: int, min_ngram: int, m: int) -> list[int]:
    """Distinct continuations (most frequent, then most recent, first) of the longest n-gram ending the path `seq`
    that occurs ending at some j < n_hist; else [the query token]."""
    p = len(seq) - 1
    for n in range(max_ngram, min_ngram - 1, -1):
        if p - n + 1 < 0:
            continue
        suffix = seq[p - n + 1:p + 1]
        ends = [j for j in range(n - 1, n_hist) if seq[j - n + 1:j + 1] == suffix]
        if ends:
            count, last = {}, {}
            for j in ends:
                count[seq[j + 1]] = count.get(seq[j + 1], 0) + 1
                last[seq[j + 1]] = j
            return sorted(count, key=lambda t: (-count[t], -last[t]))[:m]
    return [seq[p]]


def _proposals(logits_row):
    finite = np.isfinite(logits_row)
    order = np.argsort(-np.where(finite, logits_row, -np.inf), kind="stable")
    return order[:finite.sum()].tolist()


@pytest.mark.parametrize("max_ngram, min_ngram", [(1, 1), (3, 1), (4, 2)])
def test_proposals_match_reference_on_chains_and_tree_paths(max_ngram, min_ngram):
    rng = np.random.default_rng(max_ngram * 10 + min_ngram)
    handle = lookup_handle(trees_config(), max_ngram, min_ngram, num_proposals=3)
    forward = jax.jit(lambda cache, block: handle.forward(cache, block))
    s, w = 32, 6
    for _ in range(12):
        history = rng.integers(0, 4, s).tolist()               # small alphabet: many matches of every length
        window = int(rng.integers(w, s - w))
        window_tokens = rng.integers(0, 4, w)
        visible = np.zeros((w, w), bool)                       # a random tree over the window slots
        parent = [-1] + [int(rng.integers(0, i)) for i in range(1, w)]
        for i in range(w):
            j = i
            while j >= 0:
                visible[i, j] = True
                j = parent[j]
        cache = jnp.asarray([history], jnp.int32)
        block = Block(tokens=jnp.asarray([window_tokens], jnp.int32), positions=jnp.zeros((1, w), jnp.int32),
                      slots=jnp.asarray([window + np.arange(w)], jnp.int32), window=jnp.asarray([window]),
                      visible=jnp.asarray(visible[None]))
        logits = np.asarray(forward(cache, block).logits[0])
        for i in range(w):
            seq = history[:window] + [int(t) for t, v in zip(window_tokens, visible[i]) if v]
            want = _reference(seq, window, max_ngram, min_ngram, 3)
            assert _proposals(logits[i]) == want, (i, seq, window)
            got = logits[i][want]
            np.testing.assert_allclose(got, -PROPOSAL_GAP * np.arange(len(want)))


def trees_config():
    from specjax.model.config import named_config
    return named_config("tiny")


def test_lookup_reads_nothing_outside_the_query_path():
    """Stale slots past the window and cousin slots inside it never change a query's proposals."""
    handle = lookup_handle(trees_config(), 3)
    history = jnp.asarray([[1, 2, 3, 1, 2, 7, 0, 0, 0, 0]], jnp.int32)
    block = Block(tokens=jnp.asarray([[3, 5, 1]]), positions=jnp.zeros((1, 3), jnp.int32),
                  slots=jnp.asarray([[6, 7, 8]]), window=jnp.asarray([6]),
                  visible=jnp.asarray([[[1, 0, 0], [0, 1, 0], [1, 0, 1]]], bool))
    base = np.asarray(handle.forward(history, block).logits)
    stale = history.at[0, 9].set(3)                                        # past the window: never read
    np.testing.assert_array_equal(np.asarray(handle.forward(stale, block).logits), base)
    cousin = block.replace(tokens=jnp.asarray([[3, 2, 1]]))                # node 1 is no ancestor of node 2
    np.testing.assert_array_equal(np.asarray(handle.forward(history, cousin).logits)[0, 2], base[0, 2])


@pytest.mark.parametrize("method", ["chain"] + list(trees.TREE_METHODS))
def test_greedy_prompt_lookup_equals_autoregressive(method, tiny_pair, ragged_prompts):
    target, _ = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(7)
    ar = generate(target, tokens, lengths, key, max_new_tokens=24, sampling=GREEDY)
    options = dict(num_draft=3) if method == "chain" else dict(budget=6)
    sd = generate(target, tokens, lengths, key, method=make_method(method, **options),
                  drafter=lookup_handle(target.config), max_new_tokens=24, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=method)
    assert sd.acceptance_length > 1.0          # the random tiny model repeats itself: lookups do hit


@pytest.mark.parametrize("method, sampling", [("chain", SamplingConfig(temperature=1.0)),
                                              ("chain", SamplingConfig(temperature=0.8, top_k=5)),
                                              ("eagle", SamplingConfig(temperature=1.0)),
                                              ("rsd-c", SamplingConfig(temperature=1.0))])
def test_prompt_lookup_sampling_matches_exact_target_law(tiny_pair, method, sampling):
    target, _ = tiny_pair
    prompt = (3, 1, 4, 3)                        # the prompt repeats a token, so the first draft is a real match
    options = dict(num_draft=3) if method == "chain" else dict(budget=6)
    out = decode_law_rows(target, make_method(method, **options), sampling, lookup_handle(target.config), prompt,
                          seed=11)
    assert_target_law(target, out.tokens, sampling, prompt)
    assert 1.0 < out.acceptance_length < 4.0     # some drafts accepted, some rejected: not a vacuous check


@pytest.mark.parametrize("kwargs", [dict(max_ngram=0), dict(max_ngram=2, min_ngram=3), dict(max_ngram=2.5),
                                    dict(num_proposals=0)])
def test_bad_ngram_sizes_raise(tiny_pair, kwargs):
    with pytest.raises(ValueError, match="ngram|proposals"):
        lookup_handle(tiny_pair[0].config, **kwargs)
