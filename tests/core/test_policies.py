"""Adaptive draft length: per-row lengths verified exactly like truncated chains, every policy lossless (greedy
equality and the enumerated-law chi-square test), forced lengths honoured, the SpecDec++ acceptance head learns and
is calibrated, bad hyperparameters rejected before tracing."""
import importlib
import re
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.training.acceptance_head import fit_acceptance_head, head_loss, reliability
from specjax.runners.acceptance_head import init_acceptance_head
from specjax.decode.loop import generate
from specjax.decode.policies import DraftPolicy, parse_policy
from specjax.sampling import GREEDY, SamplingConfig
from specjax.decode.chain import ChainSpeculator
from specjax.methods import make_method
from specjax.verify.block import block_decision
from specjax.verify.chain import chain_decision
from tests.exact_tables import assert_target_law, decode_law_rows

POLICIES = ["confidence:0.5", "feedback", "specdec++:0.8"]


@pytest.fixture(scope="module")
def headed(tiny_pair):
    """The draft model with an acceptance head fitted on the target's own continuations of random prompts (T = 1):
    (untrained head, trained head, held-out examples)."""
    target, draft = tiny_pair
    rng = np.random.default_rng(0)
    prompts = [rng.integers(0, 16, n).tolist() for n in rng.integers(2, 9, 256)]
    fitted = fit_acceptance_head(target, draft, prompts, jax.random.key(0), SamplingConfig(1.0), num_draft=4,
                                 continuation=8, cuts=3)
    return init_acceptance_head(draft), fitted.head, fitted.held_out


def _drafter(policy, tiny_pair, headed):
    return headed[1] if policy.startswith("specdec") else tiny_pair[1]


@pytest.mark.parametrize("rule", [chain_decision, block_decision])
def test_ragged_rows_are_verified_like_truncated_chains(rule):
    """With the same uniforms, row b with L_b drafted slots gets exactly the decision of its chain cut at L_b."""
    rng = np.random.default_rng(3)
    b, k, v = 6, 5, 7
    q64 = rng.dirichlet(np.full(v, 0.6), (b, k))
    q = jnp.asarray(q64, jnp.float32)
    p = jnp.asarray(rng.dirichlet(np.full(v, 0.6), (b, k + 1)), jnp.float32)
    x = jnp.asarray([[rng.choice(v, p=q64[i, j]) for j in range(k)] for i in range(b)], jnp.int32)
    u = jnp.asarray(rng.uniform(size=(b, k)), jnp.float32)
    lengths = jnp.asarray([1, 2, 3, 4, 5, 0])                   # the last row declined to draft
    ragged = rule(u, x, q, p, lengths)
    for row, length in enumerate(np.asarray(lengths)):
        if length == 0:                                         # nothing drafted: the target's own law
            assert int(ragged.num_accepted[row]) == 0
            np.testing.assert_allclose(np.asarray(ragged.final_law[row]), np.asarray(p[row, 0]), atol=1e-6)
            continue
        cut = rule(u[row:row + 1, :length], x[row:row + 1, :length], q[row:row + 1, :length],
                   p[row:row + 1, :length + 1])
        assert int(ragged.num_accepted[row]) == int(cut.num_accepted[0])
        np.testing.assert_allclose(np.asarray(ragged.final_law[row]), np.asarray(cut.final_law[0]), atol=1e-6)
    # negative control: ignoring the lengths changes some decision
    full = rule(u, x, q, p)
    assert not np.array_equal(np.asarray(full.num_accepted), np.asarray(ragged.num_accepted))


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_is_greedy_exact(policy, tiny_pair, ragged_prompts, headed):
    target, _ = tiny_pair
    tokens, lengths = ragged_prompts
    ar = generate(target, tokens, lengths, jax.random.key(0), max_new_tokens=20, sampling=GREEDY)
    out = generate(target, tokens, lengths, jax.random.key(0), method=make_method("chain", num_draft=3, policy=policy),
                   drafter=_drafter(policy, tiny_pair, headed), max_new_tokens=20, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens))
    drafted = np.asarray(out.drafted)[np.asarray(out.accepted) >= 0]
    assert drafted.min() >= 0 and drafted.max() <= 3


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_samples_the_target_law(policy, tiny_pair, headed):
    target, _ = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    out = decode_law_rows(target, make_method("chain", num_draft=3, policy=policy), sampling,
                          _drafter(policy, tiny_pair, headed))
    assert_target_law(target, out.tokens, sampling)
    lengths = np.asarray(out.drafted)[:, 0]
    assert len(np.unique(lengths)) > 1 or policy == "feedback"    # rows really drafted different lengths


@dataclass(frozen=True)
class Forced(DraftPolicy):
    """Row b drafts `lengths[b]` tokens every round (a test policy)."""

    lengths: tuple[int, ...] = ()
    name = "forced"

    def start(self, memory, batch):
        return jnp.asarray(self.lengths)

    def keep(self, carry, step, stats, accept_prob):
        return step < carry, carry


@pytest.mark.parametrize("forced", [(0, 2, 3, 5), (0, 0, 0, 0)])
def test_forced_per_row_lengths_are_honoured(forced, tiny_pair, ragged_prompts):
    """Row b drafts forced[b] tokens (5 > K_max = 3: capped); a row forced to 0 runs AR steps, and when every row
    declines the round scores the pending token alone (the width-0 verification branch)."""
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    ar = generate(target, tokens, lengths, jax.random.key(0), max_new_tokens=16, sampling=GREEDY)
    out = generate(target, tokens, lengths, jax.random.key(0), method=ChainSpeculator(3, policy=Forced(forced)),
                   drafter=draft, max_new_tokens=16, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens))
    acc, drafted = np.asarray(out.accepted), np.asarray(out.drafted)
    for row, length in enumerate(forced):
        ran = acc[row] >= 0
        assert np.all(drafted[row, ran] == min(length, 3)) and np.all(acc[row, ran] <= min(length, 3))


def test_specdec_head_learns_and_is_calibrated(headed):
    head, trained, held = headed
    before = float(head_loss(head.params[1], head.runner.head, held))
    after = float(head_loss(trained.params[1], trained.runner.head, held))
    assert after < before - 0.03                          # held-out cross-entropy falls
    table = reliability(trained, held)
    assert table.ece < 0.08, table                        # calibrated to within 0.08 on held-out rounds
    assert reliability(head, held).ece > table.ece        # and better calibrated than the untrained head


@pytest.mark.parametrize("spec, message", [("confidence:1.5", "threshold"), ("specdec++:-0.1", "threshold"),
                                           ("beam", "unknown draft policy"), ("fixed:3", "takes no value"),
                                           ("confidence:x", "not a number")])
def test_bad_policies_raise(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(spec)


def test_bad_combinations_raise_before_tracing(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    with pytest.raises(ValueError, match="K_max"):
        make_method("chain", num_draft=0, policy="feedback")
    with pytest.raises(ValueError, match="acceptance head") as refused:
        generate(target, tokens, lengths, jax.random.key(0), method=make_method("chain", policy="specdec++:0.5"),
                 drafter=draft, max_new_tokens=4)
    # every function the message tells the user to call exists where it says
    for path in re.findall(r"specjax(?:\.\w+)+", str(refused.value)):
        module, _, name = path.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name)), path
