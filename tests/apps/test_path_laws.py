"""`PathScorer`: the laws after many paths, scored as one tree on a cached context, equal the laws of scoring each
context + path from scratch; bad input raises before anything is traced."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.bench.path_laws import PathScorer
from specjax.testing.pairs import tiny_pair


@pytest.fixture(scope="module")
def target():
    return tiny_pair()[0]


def test_tree_laws_equal_teacher_forced_laws(target):
    context = [3, 5, 7, 11, 2]
    scorer = PathScorer(target, context, 0.7, capacity=64)
    paths = [(), (4,), (4, 9), (8, 1, 2), (4, 9), (8,)]          # shared prefixes, a repeat, the context itself
    laws = scorer(paths)
    assert laws.shape == (len(paths), target.config.vocab_size) and scorer.calls == 1
    for path, law in zip(paths, laws):
        logits = target.score(jnp.asarray([context + list(path)])).logits[0, -1]
        np.testing.assert_allclose(law, np.asarray(jax.nn.softmax(logits / 0.7)), atol=2e-6)
    np.testing.assert_array_equal(scorer([(), ()]), np.stack([scorer.root] * 2))


def test_bad_input_raises(target):
    with pytest.raises(ValueError, match="at least one token"):
        PathScorer(target, [], 1.0)
    with pytest.raises(ValueError, match="T > 0"):
        PathScorer(target, [1, 2], 0.0)
    with pytest.raises(ValueError, match="capacity"):
        PathScorer(target, list(range(1, 40)), 1.0, capacity=32)
    scorer = PathScorer(target, [1, 2, 3], 1.0, capacity=32)
    with pytest.raises(ValueError, match="capacity"):
        scorer([(i,) for i in range(1, 16)] + [(1, i) for i in range(1, 16)])
