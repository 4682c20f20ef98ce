"""Training-time test (EAGLE-3): the KL put on every depth of the head unrolled on its own outputs
(`specjax.training.unrolled.unrolled_drafts`, `specjax.training.distill.unrolled_distill_loss`). One depth is the teacher-forced
EAGLE-1 loss; deeper terms count only chains that start inside the text; and on the tiny target a head trained
with it drafts deeper chains the target accepts more often than a head trained teacher-forced on the same batches
and steps (exact expected accepted length of a round, by enumeration)."""
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.bench.acceptance import _target_out
from specjax.runners.eagle import init_eagle
from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig
from specjax.training.distill import (TrainConfig, distill_loss, random_token_batches, train_with_loss,
    unrolled_distill_loss)
from specjax.runners.base import shifted_features
from specjax.training.unrolled import unrolled_drafts
from tests.exact_tables import exact_chain_tau, round_laws


def test_one_depth_is_the_teacher_forced_loss(tiny_pair):
    target, _ = tiny_pair
    eagle = init_eagle(target, seed=3)
    z = jnp.asarray(np.random.default_rng(0).integers(0, 16, (3, 9)), jnp.int32)
    logits, hidden = _target_out(target, z)
    mask = jnp.asarray(np.random.default_rng(1).random((3, 9)) < 0.8, jnp.float32)
    outs = list(unrolled_drafts(eagle, z, hidden, 3))
    # depth 1 is the head run teacher-forced (no cache) on the target's shifted features
    pos = jnp.broadcast_to(jnp.arange(9), z.shape)
    h, _ = eagle.runner.hidden(eagle.params, z, pos, shifted_features(hidden))
    np.testing.assert_allclose(np.asarray(outs[0].hidden), np.asarray(h), atol=1e-5)
    one = unrolled_distill_loss([outs[0].logits], logits, mask)
    np.testing.assert_allclose(float(one), float(distill_loss(outs[0].logits, logits, mask)), rtol=1e-6)
    # depth d counts queries s >= d - 1 only, weighted decay^(d-1)
    three = unrolled_distill_loss([o.logits for o in outs], logits, mask, decay=0.5)
    inside = lambda d: mask * (jnp.arange(9) >= d - 1)[None]
    by_hand = sum(0.5 ** (d - 1) * distill_loss(o.logits, logits, inside(d)) for d, o in enumerate(outs, 1)) / 1.75
    np.testing.assert_allclose(float(three), float(by_hand), rtol=1e-6)
    assert abs(float(three) - float(one)) > 1e-3           # the deeper terms do count
    with pytest.raises(ValueError, match="at least one depth"):
        unrolled_distill_loss([], logits)
    with pytest.raises(ValueError, match="decay"):
        unrolled_distill_loss([outs[0].logits], logits, decay=0.0)


def _train(target, depth: int, steps: int = 80):
    """An EAGLE head trained on the tiny target's laws over random texts, with the KL on depths 1..depth."""
    eagle = init_eagle(target, d_ff=32, seed=2)

    def loss_fn(head, z):
        logits, hidden = _target_out(target, z)
        outs = list(unrolled_drafts(Handle(eagle.runner, eagle.params.replace(head=head)), z, hidden, depth))
        return unrolled_distill_loss([o.logits for o in outs], logits)
    batches = random_token_batches(16, 8, 12, seed=0)
    head, _, losses = train_with_loss(eagle.params.head, loss_fn, lambda s: jnp.asarray(batches(s)),
                                      TrainConfig(steps=steps, learning_rate=1e-2, warmup_steps=5))
    return eagle.replace(params=eagle.params.replace(head=head)), losses


def test_training_time_test_raises_deep_acceptance(tiny_pair):
    """Same init, batches and steps: the head trained on depths 1..3 accepts more at depths 2 and 3 (exact
    expected accepted length of a round, enumerated with the decode loop's own calls) than the teacher-forced one,
    while its first draft stays about as good; the unrolled loss's own depth-3 value agrees."""
    target, _ = tiny_pair
    v = target.config.vocab_size
    taus = {}
    for depth in (1, 3):
        head, losses = _train(target, depth)
        assert np.mean(losses[-10:]) < np.mean(losses[:10])
        p, q = round_laws(target, head, [1, 2, 3, 4, 5], 7, 3, SamplingConfig(temperature=1.0))
        taus[depth] = exact_chain_tau(p, q, v, 3)                          # chains K = 1, 2, 3
    tf, ttt = taus[1], taus[3]
    gain = np.diff(np.r_[1.0, ttt]) - np.diff(np.r_[1.0, tf])               # P(draft k accepted), TTT - EAGLE-1
    assert gain[1] > 0 and gain[2] > 0, (tf, ttt)
    assert ttt[0] > tf[0] - 0.05, (tf, ttt)
