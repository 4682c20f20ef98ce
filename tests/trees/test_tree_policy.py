"""Tree size chosen per round (EAGLE-2 with `confidence:H`): nodes whose cumulative path confidence is below H are
not drafted, levels with no such node are skipped; decoding stays greedy-exact and samples the target's law."""
import jax
import numpy as np
import pytest

import trees  # noqa: F401  (registers the tree methods)
from specjax.decode import generate
from specjax.sampling import GREEDY, SamplingConfig
from specjax.speculators import make_method
from specjax.stats import chi_square_pvalue
from tests.core.test_decode import ALPHA, _exact_law


def test_pruned_eagle_tree_is_greedy_exact(tiny_pair, ragged_prompts):
    target, draft = tiny_pair
    tokens, lengths = ragged_prompts
    ar = generate(target, tokens, lengths, jax.random.key(0), method="ar", max_new_tokens=16, sampling=GREEDY)
    out = generate(target, tokens, lengths, jax.random.key(0), drafter=draft, max_new_tokens=16, sampling=GREEDY,
                   method=make_method("eagle", budget=8, policy="confidence:0.3"))
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(ar.tokens))
    drafted = np.asarray(out.drafted)[np.asarray(out.accepted) >= 0]
    assert drafted.max() < 8 and len(np.unique(drafted)) > 1         # trees of different sizes, all pruned


def test_pruned_eagle_tree_samples_the_target_law(tiny_pair):
    target, draft = tiny_pair
    sampling = SamplingConfig(temperature=1.0)
    prompt = [3, 1, 4]
    joint12, third = _exact_law(target, prompt, sampling)
    n = 6000
    out = generate(target, np.tile(np.array(prompt, np.int32), (n, 1)), np.full(n, 3), jax.random.key(42),
                   method=make_method("eagle", budget=6, policy="confidence:0.1"), drafter=draft, max_new_tokens=3,
                   sampling=sampling)
    gen = np.asarray(out.tokens)
    assert chi_square_pvalue(gen[:, 0] * 16 + gen[:, 1], joint12.ravel()) > ALPHA
    assert chi_square_pvalue(gen[:, 2], third) > ALPHA
    assert len(np.unique(np.asarray(out.drafted)[:, 0])) > 1          # rows drew trees of different sizes
    assert chi_square_pvalue(gen[:, 0] * 16 + gen[:, 1], np.roll(joint12.ravel(), 1)) < ALPHA   # negative control


@pytest.mark.parametrize("method, policy, message", [
    ("eagle", "confidence:1.5", "threshold"), ("eagle", "specdec++:0.5", "tree draft policies"),
    ("rsd-c", "confidence:0.3", "tree draft policies"), ("eagle", "del", "tree draft policies")])
def test_bad_tree_policies_raise(method, policy, message):
    with pytest.raises(ValueError, match=message):
        make_method(method, budget=8, policy=policy)
