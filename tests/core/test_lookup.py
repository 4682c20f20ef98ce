"""Prompt-lookup drafting: the matcher against a plain-Python reference, greedy SD == AR, the sampled law equals
the enumerated target law, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.decode import generate
from specjax.lookup import lookup_next, prompt_lookup_drafter
from specjax.sampling import GREEDY, SamplingConfig
from specjax.stats import chi_square_pvalue
from tests.core.test_decode import ALPHA, _exact_law


def _reference_lookup(history: list[int], p: int, max_ngram: int, min_ngram: int = 1) -> int:
    """Longest n-gram ending at p, most recent earlier occurrence, the token after it; else history[p]."""
    for n in range(max_ngram, min_ngram - 1, -1):
        if p - n + 1 < 0:
            continue
        suffix = history[p - n + 1:p + 1]
        for j in range(p - 1, n - 2, -1):
            if history[j - n + 1:j + 1] == suffix:
                return history[j + 1]
    return history[p]


@pytest.mark.parametrize("max_ngram, min_ngram", [(1, 1), (3, 1), (4, 2)])
def test_lookup_matches_reference(max_ngram, min_ngram):
    rng = np.random.default_rng(max_ngram * 10 + min_ngram)
    fn = jax.jit(jax.vmap(lambda h, p: lookup_next(h, p, max_ngram, min_ngram), (None, 0)))
    for _ in range(20):
        history = rng.integers(0, 4, 24).tolist()          # small alphabet: many matches of every length
        got = np.asarray(fn(jnp.asarray(history), jnp.arange(24)))
        want = [_reference_lookup(history, p, max_ngram, min_ngram) for p in range(24)]
        np.testing.assert_array_equal(got, want)


def test_lookup_reads_nothing_past_the_query():
    history = jnp.asarray([1, 2, 3, 1, 2, 7, 7, 7])
    stale = history.at[5:].set(9)
    for p in range(5):
        assert int(lookup_next(history, p, 3)) == int(lookup_next(stale, p, 3))


def test_greedy_prompt_lookup_equals_autoregressive(tiny_pair, ragged_prompts):
    target, _ = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(7)
    ar = generate(target, tokens, lengths, key, method="ar", max_new_tokens=24, sampling=GREEDY)
    for k in (1, 3, 6):
        sd = generate(target, tokens, lengths, key, method="chain", num_draft=k,
                      drafter=prompt_lookup_drafter(target.config), max_new_tokens=24, sampling=GREEDY)
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=f"K={k}")
        assert sd.acceptance_length > 1.0          # the random tiny model repeats itself: lookups do hit


@pytest.mark.parametrize("sampling", [SamplingConfig(temperature=1.0), SamplingConfig(temperature=0.8, top_k=5)])
def test_prompt_lookup_sampling_matches_exact_target_law(tiny_pair, sampling):
    target, _ = tiny_pair
    prompt = [3, 1, 4, 3]                        # the prompt repeats a token, so the first draft is a real match
    joint12, third = _exact_law(target, prompt, sampling)
    n = 6000
    out = generate(target, np.tile(np.array(prompt, np.int32), (n, 1)), np.full(n, len(prompt)),
                   jax.random.key(11), method="chain", num_draft=3, drafter=prompt_lookup_drafter(target.config),
                   max_new_tokens=3, sampling=sampling)
    gen = np.asarray(out.tokens)
    v = target.config.vocab_size
    assert chi_square_pvalue(gen[:, 0] * v + gen[:, 1], joint12.ravel()) > ALPHA
    assert chi_square_pvalue(gen[:, 2], third) > ALPHA
    assert 1.0 < out.acceptance_length < 4.0     # some drafts accepted, some rejected: not a vacuous check


@pytest.mark.parametrize("kwargs", [dict(max_ngram=0), dict(max_ngram=2, min_ngram=3), dict(max_ngram=2.5)])
def test_bad_ngram_sizes_raise(tiny_pair, kwargs):
    with pytest.raises(ValueError, match="ngram"):
        prompt_lookup_drafter(tiny_pair[0].config, **kwargs)
