"""DEL (dynamic exit layer and length for self-drafting): the target's verification pass reports every candidate
exit's hidden states exactly as the early-exit drafter computes them, the choice follows the estimates, decoding
is greedy-exact and samples the target's law, bad hyperparameters are refused before tracing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.model.block import Block
from specjax.decode.loop import generate
from specjax.decode.dynamic_exit import DynamicExitSpeculator, exit_costs
from specjax.decode.policies import DynamicExit, parse_policy
from specjax.runners.model import early_exit, with_exits
from specjax.sampling import GREEDY, SamplingConfig
from specjax.decode.chain import ChainSpeculator
from specjax.methods import make_method
from tests.exact_tables import assert_target_law, decode_law_rows

# both exits of the 2-layer tiny target; a high prior and no forgetting of it make the first rounds draft long
POLICY = DynamicExit(threshold=0.3, layers=(1, 2), prior=0.9, rate=0.2)


def test_exit_hidden_are_the_early_exit_drafters(tiny_pair):
    """The hidden states after E layers that one target pass reports, through the head, are the logits of the
    early-exit drafter at E (and of the target itself at E = n_layers)."""
    target, _ = tiny_pair
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 16, (3, 6)), jnp.int32)
    block = Block.chain(tokens, jnp.zeros((3,), jnp.int32))
    scorer = with_exits(target, (1, 2))
    out = scorer.forward(scorer.init_cache(3, 8), block)
    exit_logits = scorer.runner.head(scorer.params, out.exit_hidden)                             # [B, T, C, V]
    drafter = early_exit(target, 1)
    reference = drafter.forward(drafter.init_cache(3, 8), block).logits
    np.testing.assert_allclose(np.asarray(exit_logits[:, :, 0]), np.asarray(reference), atol=1e-5)
    np.testing.assert_allclose(np.asarray(exit_logits[:, :, 1]), np.asarray(out.logits), atol=1e-5)
    assert target.forward(target.init_cache(3, 8), block).exit_hidden is None             # only when asked


def test_the_choice_follows_the_estimates(tiny_pair):
    """Rows whose shallow exit is accepted often draft long from it; a batch whose deep exit is far better moves
    to it; poorly accepted exits give one draft."""
    target, _ = tiny_pair
    draft_costs, verify_cost = exit_costs(target.runner, (1, 2))
    assert draft_costs[0] < draft_costs[1] <= verify_cost
    policy = DynamicExit(layers=(1, 2))
    memory = policy.init_exits(3, 2).replace(acceptance=jnp.asarray([[0.95, 1.0], [0.9, 1.0], [0.1, 1.0]]))
    exit_index, chosen = policy.choose(memory, jnp.asarray(draft_costs), verify_cost, 5)
    assert int(exit_index) == 0 and np.asarray(chosen.length).tolist()[2] == 1
    assert np.asarray(chosen.length)[0] > np.asarray(chosen.length)[1] > 1
    memory = memory.replace(acceptance=jnp.asarray([[0.1, 1.0]] * 3))
    assert int(policy.choose(memory, jnp.asarray(draft_costs), verify_cost, 5)[0]) == 1


def test_del_is_greedy_exact(tiny_pair, ragged_prompts):
    target, _ = tiny_pair
    tokens, lengths = ragged_prompts
    ar = generate(target, tokens, lengths, jax.random.key(0), max_new_tokens=20, sampling=GREEDY)
    out = generate(target, tokens, lengths, jax.random.key(0), method=make_method("chain", num_draft=2, policy=POLICY),
                   max_new_tokens=20, sampling=GREEDY)
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens))
    drafted = np.asarray(out.drafted)[np.asarray(out.accepted) >= 0]
    assert drafted.min() >= 0 and drafted.max() == 2


def test_del_samples_the_target_law(tiny_pair):
    target, _ = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    out = decode_law_rows(target, make_method("chain", num_draft=2, policy=POLICY), sampling)
    assert_target_law(target, out.tokens, sampling)
    assert len(np.unique(np.asarray(out.drafted)[:, 0])) > 1        # the confidence exit stopped rows unevenly


@pytest.mark.parametrize("spec, message", [("del:1.5", "threshold"), ("del:x", "not a number")])
def test_bad_del_specs_raise(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(spec)


@pytest.mark.parametrize("options, message", [
    (dict(layers=(2, 1)), "increasing"), (dict(layers=(0,)), "exit layer"), (dict(layers=()), "non-empty"),
    (dict(probes=0), "probes"), (dict(rate=1.5), "rate"), (dict(prior=-0.1), "prior")])
def test_bad_del_hyperparameters_raise(options, message):
    with pytest.raises(ValueError, match=message):
        DynamicExit(**options)


def test_bad_del_combinations_raise_before_tracing(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    run = lambda method, **kw: generate(target, tokens, lengths, jax.random.key(0), method=method, max_new_tokens=4,
                                        **kw)
    with pytest.raises(ValueError, match="K_max"):
        make_method("chain", num_draft=0, policy="del")
    with pytest.raises(ValueError, match="deeper than the target"):
        run(make_method("chain", policy=DynamicExit(layers=(1, 3))))
    with pytest.raises(ValueError, match="drafts nothing"):
        run(make_method("chain", policy="del"), drafter=draft)
    with pytest.raises(ValueError, match="drafts from the target"):
        ChainSpeculator(3, policy=DynamicExit())
    with pytest.raises(ValueError, match="full model|cannot be a target"):
        generate(early_exit(target, 1), tokens, lengths, jax.random.key(0), method=DynamicExitSpeculator(2),
                 max_new_tokens=4)
