"""The training-time τ estimate (`specjax.bench.acceptance.estimated_chain_tau`) on the tiny target with an EAGLE
head: its expectation over the target's own continuations equals the exact expected accepted length of a round,
enumerated with the decode loop's own drafter and target calls; the teacher-forced (EAGLE-1) laws in its place
miss it (negative control); at temperature 0 it is the exact chain τ of the teacher-forced ranks; from stored
hidden states (what a trainer has) it equals the estimate that runs the target."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.bench.acceptance import (ChainTerms, _target_out, chain_terms, estimated_chain_tau, hidden_chain_tau,
    teacher_forced_ranks, text_chain_tau)
from specjax.decode.loop import generate
from specjax.runners.eagle import init_eagle
from specjax.sampling import GREEDY, SamplingConfig, warp_logits
from tests.exact_tables import exact_chain_tau, round_laws
from trees.sequoia import empirical_reward

PROMPT = [1, 2, 3, 4, 5]
PENDING = 7
DEPTH = 3
SAMPLING = SamplingConfig(temperature=1.0)


@pytest.fixture(scope="module")
def eagle(tiny_pair):
    return init_eagle(tiny_pair[0], seed=3)


@pytest.fixture(scope="module")
def exact(tiny_pair, eagle):
    """The exact τ of chains of 1..DEPTH drafts in the round, and every continuation text with its probability."""
    target, _ = tiny_pair
    v = target.config.vocab_size
    p, q = round_laws(target, eagle, PROMPT, PENDING, DEPTH, SAMPLING)
    return exact_chain_tau(p, q, v, DEPTH), _texts(target, v)


def _texts(target, v):
    """Every continuation PROMPT, PENDING, x1, x2, 0 with its probability under the target p(x1) p(x2 | x1)."""
    pairs = np.asarray(list(itertools.product(range(v), repeat=2)), np.int32)
    z = np.concatenate([np.tile(PROMPT + [PENDING], (len(pairs), 1)), pairs, np.zeros((len(pairs), 1), np.int32)], 1)
    logits, hidden = _target_out(target, jnp.asarray(z))
    p = np.asarray(warp_logits(logits, SAMPLING), np.float64)
    t = len(PROMPT)
    weight = p[np.arange(len(z)), t, pairs[:, 0]] * p[np.arange(len(z)), t + 1, pairs[:, 1]]
    return jnp.asarray(z), logits, hidden, weight


def test_estimate_equals_the_exact_expected_accepted_length(eagle, exact):
    exact, (z, logits, hidden, weight) = exact
    assert weight.sum() == pytest.approx(1.0, abs=1e-5)
    terms = chain_terms(eagle, z, logits, hidden, DEPTH, SAMPLING, first=len(PROMPT))
    assert np.asarray(terms.valid).sum() == len(z)                # exactly the start at the pending token
    estimate = estimated_chain_tau(terms, weight)
    np.testing.assert_allclose(estimate, exact, atol=2e-5)
    assert exact[-1] - exact[0] > 0.05                            # deeper drafts matter: the check has power
    # negative control: the teacher-forced (EAGLE-1) laws, the target's features at every depth, miss it
    tf = chain_terms(eagle, z, logits, hidden, 1, SAMPLING, first=len(PROMPT))
    shifted = lambda a: jnp.stack([jnp.roll(a[..., 0], -d, axis=1) for d in range(DEPTH)], -1)
    control = estimated_chain_tau(ChainTerms(shifted(tf.weight), shifted(tf.accept), terms.valid), weight)
    assert np.max(np.abs(control - exact)) > 1e-3


def test_sampled_texts_estimate_within_their_error(eagle, exact):
    """On texts the target sampled (no weights), the estimate lies within 4 standard errors of the exact τ."""
    exact, (z, logits, hidden, weight) = exact
    rows = np.random.default_rng(0).choice(len(weight), 2000, p=weight / weight.sum())
    terms = chain_terms(eagle, z[rows], logits[rows], hidden[rows], DEPTH, SAMPLING, first=len(PROMPT))
    estimate = estimated_chain_tau(terms)
    survive = np.cumprod(np.concatenate([np.ones((len(rows), 1)), np.asarray(terms.weight)[:, 5, :-1]], 1), 1)
    per_row = 1 + np.cumsum(survive * np.asarray(terms.accept)[:, 5], axis=1)
    se = per_row.std(axis=0) / np.sqrt(len(rows))
    assert np.all(np.abs(estimate - exact) < 4 * se + 1e-6)


def test_greedy_estimate_is_the_chain_tau_of_the_ranks(tiny_pair, eagle):
    target, _ = tiny_pair
    out = generate(target, np.asarray([PROMPT], np.int32), np.asarray([len(PROMPT)], np.int32), jax.random.key(0),
                   max_new_tokens=24, sampling=GREEDY)
    z = PROMPT + np.asarray(out.tokens[0]).tolist()                # the target's greedy text
    logits, hidden = _target_out(target, jnp.asarray([z]))
    terms = chain_terms(eagle, jnp.asarray([z]), logits, hidden, DEPTH, GREEDY, first=len(PROMPT))
    ranks = teacher_forced_ranks(target, eagle, z, len(PROMPT), DEPTH)
    for k in range(1, DEPTH + 1):
        chain = [(0,) * d for d in range(1, k + 1)]
        assert estimated_chain_tau(terms)[k - 1] == pytest.approx(1 + empirical_reward(chain, ranks), abs=1e-6)


def test_estimate_from_stored_hidden_states(tiny_pair, eagle):
    """What a trainer calls (`hidden_chain_tau`, from stored tokens and final hidden states) equals the estimate
    that runs the target (`text_chain_tau`); texts without an answer longer than the depth are refused."""
    target, _ = tiny_pair
    rng = np.random.default_rng(1)
    texts = [rng.integers(0, 16, n).tolist() for n in (12, 9, 15)]
    prompt_lengths = [3, 2, 5]
    sampling = SamplingConfig(temperature=0.8)
    direct = text_chain_tau(target, eagle, texts, prompt_lengths, DEPTH, sampling)
    z = np.zeros((3, 15), np.int32)
    for i, t in enumerate(texts):
        z[i, :len(t)] = t
    hidden = np.asarray(_target_out(target, jnp.asarray(z))[1])
    stored = hidden_chain_tau(target, eagle, z, hidden, [12, 9, 15], prompt_lengths, DEPTH, sampling, chunk=2)
    np.testing.assert_allclose(stored, direct, rtol=1e-5)
    assert np.all(np.diff(direct) >= 0) and direct[0] > 1.0
    with pytest.raises(ValueError, match="answer"):
        text_chain_tau(target, eagle, texts, [3, 6, 5], DEPTH, sampling)        # 9 - 6 leaves 3 <= DEPTH tokens
