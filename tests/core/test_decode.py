"""The decode loop: greedy SD == greedy AR; sampled SD matches the enumerated target law; stopping; bad input."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.config import named_config
from specjax.decode import generate
from specjax.drafters import early_exit_drafter
from specjax.model import init_model
from specjax.sampling import GREEDY, SamplingConfig, warp_logits
from specjax.stats import chi_square_pvalue

ALPHA = 1e-4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_speculative_equals_greedy_autoregressive(seed, ragged_prompts):
    target = init_model(named_config("tiny"), 10 + seed)
    draft = init_model(named_config("tiny-draft"), 20 + seed)
    tokens, lengths = ragged_prompts
    key = jax.random.key(seed)
    ar = generate(target, tokens, lengths, key, method="ar", max_new_tokens=24, sampling=GREEDY)
    assert ar.acceptance_length == 1.0
    for k in range(1, 6):
        sd = generate(target, tokens, lengths, key, method="chain", num_draft=k, drafter=draft,
                      max_new_tokens=24, sampling=GREEDY)
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=f"K={k}")
        assert np.all(np.asarray(sd.lengths) == 24)


def test_greedy_early_exit_self_draft_equals_autoregressive(tiny_pair, ragged_prompts):
    target, _ = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(5)
    ar = generate(target, tokens, lengths, key, method="ar", max_new_tokens=16, sampling=GREEDY)
    sd = generate(target, tokens, lengths, key, method="chain", num_draft=3,
                  drafter=early_exit_drafter(target, 1), max_new_tokens=16, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens))


def _exact_law(target, prompt, sampling):
    """Exact joint law of the first two generated tokens [V, V] and marginal of the third [V], by enumeration."""
    v = target.config.vocab_size
    def next_probs(seqs):
        seqs = jnp.asarray(seqs, jnp.int32)
        pos = jnp.broadcast_to(jnp.arange(seqs.shape[1]), seqs.shape)
        logits, _, _ = target(seqs, pos)
        return np.asarray(warp_logits(logits[:, -1], sampling), np.float64)
    p1 = next_probs([prompt])[0]
    p2 = next_probs([prompt + [a] for a in range(v)])                          # [V, V]
    pairs = list(itertools.product(range(v), range(v)))
    p3 = next_probs([prompt + [a, b] for a, b in pairs]).reshape(v, v, v)
    joint12 = p1[:, None] * p2
    third = np.einsum("ab,abc->c", joint12, p3)
    return joint12, third


@pytest.mark.parametrize("sampling, k", [
    (SamplingConfig(temperature=1.0), 2),
    (SamplingConfig(temperature=0.7), 3),
    (SamplingConfig(temperature=1.0, top_k=4), 2),
    (SamplingConfig(temperature=0.9, top_p=0.8), 1),
])
def test_speculative_sampling_matches_exact_target_law(tiny_pair, sampling, k):
    target, draft = tiny_pair
    prompt = [3, 1, 4]
    joint12, third = _exact_law(target, prompt, sampling)
    n = 6000
    tokens = np.tile(np.array(prompt, np.int32), (n, 1))
    out = generate(target, tokens, np.full(n, 3), jax.random.key(42), method="chain", num_draft=k,
                   drafter=draft, max_new_tokens=3, sampling=sampling)
    gen = np.asarray(out.tokens)
    v = target.config.vocab_size
    assert chi_square_pvalue(gen[:, 0] * v + gen[:, 1], joint12.ravel()) > ALPHA
    assert chi_square_pvalue(gen[:, 2], third) > ALPHA
    # the draft really differs from the target, so this is not a vacuous check: some drafts were rejected
    assert 1.0 < out.acceptance_length < k + 1


def test_law_test_rejects_the_draft_law(tiny_pair):
    """Negative control: samples from the draft model's own law must fail the same test."""
    target, draft = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    prompt = [3, 1, 4]
    joint12, _ = _exact_law(target, prompt, sampling)
    n = 6000
    out = generate(draft, np.tile(np.array(prompt, np.int32), (n, 1)), np.full(n, 3), jax.random.key(42),
                   method="ar", max_new_tokens=2, sampling=sampling)
    gen = np.asarray(out.tokens)
    assert chi_square_pvalue(gen[:, 0] * 16 + gen[:, 1], joint12.ravel()) < ALPHA


def test_eos_stops_each_row_and_pads(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(3)
    ar = np.asarray(generate(target, tokens, lengths, key, method="ar", max_new_tokens=20, sampling=GREEDY).tokens)
    eos = int(ar[0, 4])                          # a token that row 0 emits at step 5
    for method, k in [("ar", 1), ("chain", 3)]:
        out = generate(target, tokens, lengths, key, method=method, num_draft=k, drafter=draft,
                       max_new_tokens=20, sampling=GREEDY, eos_id=eos)
        toks, lens = np.asarray(out.tokens), np.asarray(out.lengths)
        for row in range(len(ar)):
            hits = np.flatnonzero(ar[row] == eos)
            expect = hits[0] + 1 if hits.size else 20
            assert lens[row] == expect
            np.testing.assert_array_equal(toks[row, :expect], ar[row, :expect])
            assert np.all(toks[row, expect:] == -1)


def test_round_statistics_are_consistent(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    out = generate(target, tokens, lengths, jax.random.key(0), method="chain", num_draft=4, drafter=draft,
                   max_new_tokens=30, sampling=SamplingConfig(temperature=1.0))
    acc, drafted = np.asarray(out.accepted), np.asarray(out.drafted)
    ran = acc >= 0
    # every row emitted at least max_new tokens: 1 from prefill plus (accepted + 1) per round
    assert np.all(1 + ((acc + 1) * ran).sum(1) >= 30)
    assert np.all(drafted[ran] == 4) and np.all(acc[ran] <= 4)
    assert np.array_equal(np.asarray(out.num_rounds), ran.sum(1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="chain", num_draft=0), "num_draft"),
    (dict(method="chain", num_draft=2, cache_capacity=20), "cache slots"),
    (dict(method="ar", sampling_t=-1.0), "temperature"),
    (dict(method="beam"), "unknown method"),
    (dict(method="chain", num_draft=2, drafter=None), "needs a drafter"),
    (dict(method="chain", num_draft=2, wrong_vocab=True), "vocabulary"),
    (dict(method="ar", max_new_tokens=0), "max_new_tokens"),
    (dict(method="ar", bad_tokens=True), "token ids"),
    (dict(method="ar", bad_lengths=True), "prompt_lengths"),
])
def test_bad_input_raises_clear_errors(tiny_pair, ragged_prompts, kwargs, message):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    kwargs = dict(kwargs)
    if kwargs.pop("wrong_vocab", False):
        kwargs["drafter"] = init_model(named_config("tiny-draft").replace(vocab_size=17), 0)
    if kwargs.pop("bad_tokens", False):
        tokens = tokens.copy()
        tokens[0, 0] = 99
    if kwargs.pop("bad_lengths", False):
        lengths = np.array([5, 2, 0, 4])
    with pytest.raises(ValueError, match=message):
        if "sampling_t" in kwargs:
            SamplingConfig(temperature=kwargs.pop("sampling_t"))
        kwargs.setdefault("drafter", draft)
        kwargs.setdefault("max_new_tokens", 16)
        generate(target, tokens, lengths, jax.random.key(0), **kwargs)
