"""The decode loop: greedy SD == greedy AR; sampled SD matches the enumerated target law; stopping; bucketed
recompilation; bad input."""
import jax
import numpy as np
import pytest

from specjax.model.config import named_config
from specjax.decode.loop import _generate, generate
from specjax.runners.lookup import lookup_handle
from specjax.model.decoder import init_model
from specjax.runners.model import early_exit, model_handle
from specjax.sampling import GREEDY, SamplingConfig
from specjax.methods import make_method
from specjax.testing.stats import chi_square_pvalue
from specjax.testing.pairs import tiny_pair
from tests.exact_tables import ALPHA, LAW_PROMPT, assert_target_law, decode_law_rows, first_tokens_law



@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_speculative_equals_greedy_autoregressive(seed, ragged_prompts):
    target, draft = tiny_pair(10 + seed, 20 + seed)
    tokens, lengths = ragged_prompts
    key = jax.random.key(seed)
    ar = generate(target, tokens, lengths, key, max_new_tokens=24, sampling=GREEDY)
    assert ar.acceptance_length == 1.0
    for k in range(1, 6) if seed == 0 else (2, 5):          # every K once, two more pairs at two K
        sd = generate(target, tokens, lengths, key, method=make_method("chain", num_draft=k), drafter=draft,
                      max_new_tokens=24, sampling=GREEDY)
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=f"K={k}")
        assert np.all(np.asarray(sd.lengths) == 24)


def test_greedy_early_exit_self_draft_equals_autoregressive(tiny_pair, ragged_prompts):
    target, _ = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(5)
    ar = generate(target, tokens, lengths, key, max_new_tokens=16, sampling=GREEDY)
    sd = generate(target, tokens, lengths, key, method=make_method("chain", num_draft=3),
                  drafter=early_exit(target, 1), max_new_tokens=16, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens))


@pytest.mark.parametrize("sampling, k", [
    (SamplingConfig(temperature=1.0), 2),
    (SamplingConfig(temperature=0.7), 3),
    (SamplingConfig(temperature=1.0, top_k=4), 2),
    (SamplingConfig(temperature=0.9, top_p=0.8), 1),
])
def test_speculative_sampling_matches_exact_target_law(tiny_pair, sampling, k):
    target, draft = tiny_pair
    out = decode_law_rows(target, make_method("chain", num_draft=k), sampling, draft)
    assert_target_law(target, out.tokens, sampling)
    # the draft really differs from the target, so this is not a vacuous check: some drafts were rejected
    assert 1.0 < out.acceptance_length < k + 1


def test_law_test_rejects_the_draft_law(tiny_pair):
    """Negative control: samples from the draft model's own law must fail the same test."""
    target, draft = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    joint12, _ = first_tokens_law(target, LAW_PROMPT, sampling)
    gen = np.asarray(decode_law_rows(draft, make_method("ar"), sampling).tokens)
    assert chi_square_pvalue(gen[:, 0] * 16 + gen[:, 1], joint12.ravel()) < ALPHA


def test_eos_stops_each_row_and_pads(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    key = jax.random.key(3)
    ar = np.asarray(generate(target, tokens, lengths, key, max_new_tokens=20, sampling=GREEDY).tokens)
    eos = int(ar[0, 4])                          # a token that row 0 emits at step 5
    for method, drafter in [(make_method("ar"), None), (make_method("chain", num_draft=3), draft)]:
        out = generate(target, tokens, lengths, key, method=method, drafter=drafter,
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
    out = generate(target, tokens, lengths, jax.random.key(0), method=make_method("chain", num_draft=4),
                   drafter=draft, max_new_tokens=30, sampling=SamplingConfig(temperature=1.0))
    acc, drafted = np.asarray(out.accepted), np.asarray(out.drafted)
    ran = acc >= 0
    # every row emitted at least max_new tokens: 1 from prefill plus (accepted + 1) per round
    assert np.all(1 + ((acc + 1) * ran).sum(1) >= 30)
    assert np.all(drafted[ran] == 4) and np.all(acc[ran] <= 4)
    assert np.array_equal(np.asarray(out.num_rounds), ran.sum(1))
    # per-position acceptance (vLLM's convention): non-increasing, at most K entries, and τ = 1 + their sum
    per_position = out.acceptance_per_position
    assert 1 <= len(per_position) <= 4 and all(a >= b for a, b in zip(per_position, per_position[1:]))
    assert abs(out.acceptance_length - 1 - sum(per_position)) < 1e-12
    assert per_position[0] == (acc[ran] >= 1).mean()


def test_new_max_new_tokens_in_bucket_or_new_eos_does_not_recompile(tiny_pair, ragged_prompts):
    """max_new_tokens is bucketed and eos_id traced: within a bucket neither triggers a compilation, nor does a new
    prompt width in the same bucket; a new bucket does."""
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    chain = make_method("chain", num_draft=2)
    run = lambda toks, lens, **kw: generate(target, toks, lens, jax.random.key(0), method=chain, drafter=draft,
                                            sampling=GREEDY, **kw)
    full = run(tokens, lengths, max_new_tokens=20)
    before = _generate._cache_size()
    short = run(tokens, lengths, max_new_tokens=17)
    with_eos = run(tokens, lengths, max_new_tokens=24, eos_id=int(np.asarray(full.tokens)[0, 3]))
    run(tokens[:, :4], np.minimum(lengths, 4), max_new_tokens=18)
    assert _generate._cache_size() == before
    np.testing.assert_array_equal(np.asarray(short.tokens), np.asarray(full.tokens)[:, :17])
    assert int(with_eos.lengths[0]) == 4 and np.all(np.asarray(with_eos.tokens)[0, 4:] == -1)
    run(tokens, lengths, max_new_tokens=40)                                   # bucket 64: one more program
    assert _generate._cache_size() == before + 1


def _bad_call(case, target, draft, tokens, lengths):
    """(method, drafter, target, tokens, lengths, extra kwargs) of one bad-input case."""
    chain = lambda: make_method("chain", num_draft=2)
    bad_tokens = tokens.copy()
    bad_tokens[0, 0] = 99
    cases = {
        "num_draft": lambda: (make_method("chain", num_draft=0), draft, target, tokens, lengths, {}),
        "cache slots": lambda: (chain(), draft, target, tokens, lengths, dict(cache_capacity=20)),
        "temperature": lambda: (make_method("ar"), None, target, tokens, lengths, dict(sampling=SamplingConfig(-1.0))),
        "unknown method": lambda: (make_method("beam"), None, target, tokens, lengths, {}),
        "needs a drafter": lambda: (chain(), None, target, tokens, lengths, {}),
        "drafts nothing": lambda: (make_method("ar"), draft, target, tokens, lengths, {}),
        "vocabulary": lambda: (chain(), model_handle(init_model(named_config("tiny-draft").replace(vocab_size=17),
                                                                 0)), target, tokens, lengths, {}),
        "cannot be a target": lambda: (chain(), draft, lookup_handle(target.config), tokens, lengths, {}),
        "Handle": lambda: (chain(), init_model(named_config("tiny-draft"), 0), target, tokens, lengths, {}),
        "max_new_tokens": lambda: (make_method("ar"), None, target, tokens, lengths, dict(max_new_tokens=0)),
        "token ids": lambda: (make_method("ar"), None, target, bad_tokens, lengths, {}),
        "prompt_lengths": lambda: (make_method("ar"), None, target, tokens, np.array([5, 2, 0, 4]), {}),
        "bogus": lambda: (make_method("chain", bogus=1), draft, target, tokens, lengths, {}),
        "Speculator": lambda: ("chain", draft, target, tokens, lengths, {}),
        "trained for": lambda: (make_method("ar"), None, model_handle(init_model(named_config("tiny").replace(
            max_positions=20), 0)), tokens, lengths, {}),
    }
    return cases[case]()


@pytest.mark.parametrize("message", ["num_draft", "cache slots", "temperature", "unknown method", "needs a drafter",
                                     "drafts nothing", "vocabulary", "cannot be a target", "Handle",
                                     "max_new_tokens", "token ids", "prompt_lengths", "bogus", "Speculator",
                                     "trained for"])
def test_bad_input_raises_clear_errors(tiny_pair, ragged_prompts, message):
    with pytest.raises(ValueError, match=message):
        method, drafter, target, tokens, lengths, kwargs = _bad_call(message, *tiny_pair, *ragged_prompts)
        kwargs.setdefault("max_new_tokens", 16)
        generate(target, tokens, lengths, jax.random.key(0), method=method, drafter=drafter, **kwargs)


def test_errors_inside_a_factory_are_not_reported_as_bad_options(monkeypatch):
    """`make_method` checks options against the factory's signature: an unknown option is a ValueError naming the
    method, while a TypeError raised inside a factory (a real bug) is not turned into a bad-option message."""
    from specjax import methods

    def buggy(num_draft: int = 2):
        return len(num_draft)                        # TypeError inside the factory

    monkeypatch.setitem(methods.METHODS, "buggy", buggy)
    with pytest.raises(ValueError, match="'buggy'"):
        make_method("buggy", depth=3)
    with pytest.raises(TypeError, match="len"):
        make_method("buggy", num_draft=2)


def test_a_verifier_is_never_silently_ignored(tiny_pair, ragged_prompts):
    """A verifier given to a method with no choice of verifier is refused, not dropped (the method itself runs)."""
    import dataclasses

    from specjax.decode.chain import ChainSpeculator
    from specjax.decode.speculator import Speculator

    @dataclasses.dataclass(frozen=True)
    class OneRule(Speculator):                       # a method with no `verifier` field: it verifies one way
        inner: ChainSpeculator

        max_emit = property(lambda self: self.inner.max_emit)
        capacity_margin = property(lambda self: self.inner.capacity_margin)

        def round(self, **kwargs):
            return self.inner.round(**kwargs)

    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    method = OneRule(ChainSpeculator(2))
    out = generate(target, tokens, lengths, jax.random.key(0), method=method, drafter=draft, max_new_tokens=4)
    assert out.tokens.shape == (4, 4)
    with pytest.raises(ValueError, match="takes no verifier"):
        generate(target, tokens, lengths, jax.random.key(0), method=method, drafter=draft, verifier="block",
                 max_new_tokens=4)
