"""The EAGLE head's training loss and checkpoint writer (`specjax.training.eagle`): the loss is zero exactly where
the head reproduces the target's states and counts only masked-in positions; a shipped head reloads through
`load_eagle` as it was shipped (bf16), with its VocabTrim set, feature moment and fused features."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.model.block import Block
from specjax.runners.eagle import eagle_target, init_eagle, load_eagle
from specjax.runners.model import fused_features
from specjax.training.distill import unrolled_distill_loss
from specjax.training.eagle import head_loss, ship_head


def _states(seed, shape=(2, 5, 8)):
    return jax.random.normal(jax.random.key(seed), shape)


def test_head_loss_is_zero_at_the_target_and_positive_elsewhere():
    target, embedding = _states(0), _states(1, (6, 8))
    mask = jnp.array([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], jnp.float32)
    assert float(head_loss([target] * 3, target, mask, embedding, 0.8, 1.0)) == 0.0
    grads = jax.grad(lambda h: head_loss([h, h], target, mask, embedding, 0.8, 1.0))(target)
    np.testing.assert_allclose(np.asarray(grads), 0.0, atol=1e-6)           # a minimum (up to float32 rounding)
    other = target + 0.5 * _states(2)
    assert float(head_loss([other], target, mask, embedding, 1.0, 1.0)) > 0.0
    # masked-out positions do not count: changing the head there leaves the loss as it was
    off = other.at[0, 4].add(3.0).at[1, 3].add(-2.0)
    assert float(head_loss([off], target, mask, embedding, 1.0, 1.0)) == pytest.approx(
        float(head_loss([other], target, mask, embedding, 1.0, 1.0)), rel=1e-6)


def test_head_loss_is_the_unrolled_kl_plus_the_weighted_feature_term():
    target, embedding, mask = _states(0), _states(1, (6, 8)), jnp.ones((2, 5), jnp.float32)
    heads = [target + 0.3 * _states(3), target + 0.6 * _states(4)]
    kl = unrolled_distill_loss([h @ embedding.T for h in heads], target @ embedding.T, mask, 0.5)
    assert float(head_loss(heads, target, mask, embedding, 0.5, 0.0)) == pytest.approx(float(kl), rel=1e-6)
    feature = float(head_loss(heads, target, mask, embedding, 0.5, 1.0)) - float(kl)
    assert feature > 0.0                                         # the depth-1 feature regression
    assert float(head_loss(heads, target, mask, embedding, 0.5, 2.0)) == pytest.approx(float(kl) + 2 * feature,
                                                                                       rel=1e-5)
    # the feature term reads depth 1 only: a deeper depth's states change the KL alone
    moved = [heads[0], heads[1] + 1.0]
    kl_moved = unrolled_distill_loss([h @ embedding.T for h in moved], target @ embedding.T, mask, 0.5)
    assert float(head_loss(moved, target, mask, embedding, 0.5, 1.0)) - float(kl_moved) == pytest.approx(feature,
                                                                                                        rel=1e-5)


def _logits(handle, features):
    """The head's logits `[1, 4, V]` over tokens 1..4 at positions 0..3, given features `[1, 4, F]`."""
    block = Block.chain(jnp.array([[1, 2, 3, 4]], jnp.int32), jnp.zeros((1,), jnp.int32), features)
    return handle.forward(handle.init_cache(1, 8), block).logits


def test_shipped_head_reloads_as_shipped(tiny_pair, tmp_path):
    target, _ = tiny_pair
    eagle = init_eagle(target, d_ff=24, seed=3)
    keep = np.array([0, 2, 3, 5, 7, 11])
    moment = np.asarray(_states(5, (32, 32)))
    extra = {"train": {"d_ff": 24, "trim": keep.size}, "feature_layers": [], "note": "kept"}
    path = ship_head(tmp_path / "head", eagle.params.head, keep, target.config, 7, extra, moment=moment)
    loaded = load_eagle(path, target, trim=True)
    shipped = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16).astype(jnp.float32), eagle.params.head)
    for a, b in zip(jax.tree.leaves(shipped), jax.tree.leaves(loaded.params.head)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(loaded.params.keep_ids), keep)
    np.testing.assert_array_equal(np.asarray(loaded.params.feature_moment), moment)
    features = _states(6, (1, 4, 32))
    expected = _logits(eagle.replace(params=eagle.params.replace(head=shipped)), features)
    np.testing.assert_allclose(np.asarray(_logits(load_eagle(path, target), features)), np.asarray(expected),
                               rtol=1e-5, atol=1e-5)
    # shipping again replaces the checkpoint; a head without a moment reloads without one
    ship_head(path, eagle.params.head, keep, target.config, 8, extra)
    assert load_eagle(path, target).params.feature_moment is None


def test_shipped_fused_head_reloads_with_its_target(tiny_pair, tmp_path):
    target, _ = tiny_pair
    eagle = init_eagle(fused_features(target, (1,)), d_ff=24, seed=4)
    keep = np.arange(16)
    path = ship_head(tmp_path / "fused", eagle.params.head, keep, target.config, 1,
                     {"train": {"d_ff": 24, "trim": 16}, "feature_layers": [1]})
    loaded = load_eagle(path, eagle_target(path, target))
    assert loaded.runner.feature_width == 2 * target.config.d_model
    np.testing.assert_array_equal(np.asarray(loaded.params.head["fuse"]["kernel"][...]),
                                  np.asarray(eagle.params.head["fuse"]["kernel"][...].astype(jnp.bfloat16)
                                             .astype(jnp.float32)))


def test_ship_head_refuses_what_load_eagle_could_not_read(tiny_pair, tmp_path):
    target, _ = tiny_pair
    head = init_eagle(target, d_ff=24, seed=3).params.head
    with pytest.raises(ValueError, match="d_ff and trim = 4"):
        ship_head(tmp_path / "a", head, np.arange(4), target.config, 0, {"train": {"d_ff": 24, "trim": 8}})
    with pytest.raises(ValueError, match="d_ff and trim"):
        ship_head(tmp_path / "b", head, np.arange(4), target.config, 0, {"train": {"trim": 4}})
    other = tmp_path / "not_a_checkpoint"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a specjax checkpoint"):
        ship_head(other, head, np.arange(4), target.config, 0, {"train": {"d_ff": 24, "trim": 4}})
    assert (other / "notes.txt").read_text() == "mine"
