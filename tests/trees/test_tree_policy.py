"""Tree size chosen per round (EAGLE-2 with `confidence:H`): nodes whose cumulative path confidence is below H are
not drafted, levels with no such node are skipped; decoding stays greedy-exact and samples the target's law."""
import jax
import numpy as np
import pytest

from specjax.decode.loop import generate
from specjax.sampling import GREEDY, SamplingConfig
from specjax.methods import make_method
from tests.exact_tables import assert_target_law, decode_law_rows


def test_pruned_eagle_tree_is_greedy_exact(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    ar = generate(target, tokens, lengths, jax.random.key(0), max_new_tokens=16, sampling=GREEDY)
    out = generate(target, tokens, lengths, jax.random.key(0), drafter=draft, max_new_tokens=16, sampling=GREEDY,
                   method=make_method("eagle", budget=8, policy="confidence:0.3"))
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens))
    drafted = np.asarray(out.drafted)[np.asarray(out.accepted) >= 0]
    assert drafted.max() < 8 and len(np.unique(drafted)) > 1         # trees of different sizes, all pruned


def test_pruned_eagle_tree_samples_the_target_law(tiny_pair):
    target, draft = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    out = decode_law_rows(target, make_method("eagle", budget=6, policy="confidence:0.1"), sampling, draft)
    assert_target_law(target, out.tokens, sampling)
    assert len(np.unique(np.asarray(out.drafted)[:, 0])) > 1          # rows drew trees of different sizes


@pytest.mark.parametrize("method, policy, message", [
    ("eagle", "confidence:1.5", "threshold"), ("eagle", "specdec++:0.5", "tree draft policies"),
    ("rsd-c", "confidence:0.3", "tree draft policies"), ("eagle", "del", "tree draft policies")])
def test_bad_tree_policies_raise(method, policy, message):
    with pytest.raises(ValueError, match=message):
        make_method(method, budget=8, policy=policy)
