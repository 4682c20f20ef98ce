"""GTO (`trees.gto`): the rollout is a decode round (its accepted drafts and emitted tokens are those of the decode
loop's first round, its reward the accepted length at temperature 0); the surrogate's log-probabilities are the
drafter's laws as it drafts (`specjax.decode.draft.score_chain` against `draft_chain`); advantages and the clipped
surrogate by hand; no signal when the drafter is its reference; training resumes exactly; bad input raises."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.bench.acceptance import _target_out
from specjax.decode.loop import generate, prefill
from specjax.decode.draft import draft_chain, score_chain
from specjax.runners.eagle import init_eagle
from specjax.sampling import GREEDY, SamplingConfig, warp_logits
from specjax.training.distill import TrainConfig, distill_loss, train_with_loss
from trees import make_speculator
from trees.gto import GTOConfig, check_contexts, group_advantages, gto_surrogate, ppo_surrogate, rollout

BUILDER = make_speculator("eagle", budget=6, top_k=2, depth=3).builder


def _contexts(seed: int, b: int = 4, w: int = 6):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 16, (b, w)), jnp.int32), jnp.asarray(rng.integers(0, 16, (b,)), jnp.int32)


@pytest.mark.parametrize("kind", ["model", "eagle"])
def test_score_chain_is_the_law_draft_chain_drafted_from(kind, tiny_pair):
    """Teacher-forced on the tokens `draft_chain` sampled, `score_chain` gives back the laws it sampled them from
    (a separate draft model, and an EAGLE-style head reading the target's features then its own)."""
    target, draft = tiny_pair
    drafter = draft if kind == "model" else init_eagle(target, seed=3)
    tokens, _ = _contexts(0, w=7)
    lengths = jnp.full((4,), 7, jnp.int32)
    sampling = SamplingConfig(temperature=1.0)

    @jax.jit
    def drafted_and_scored(tokens):
        start = prefill(target, drafter, tokens, lengths, jax.random.key(1), sampling, 16)
        caches, ctx = start.caches, start.ctx
        chain = draft_chain(drafter, caches.drafter, ctx, jax.random.key(2), 4, sampling)
        return chain.probs, warp_logits(score_chain(drafter, caches.drafter, ctx, chain.tokens), sampling)
    drafted, scored = drafted_and_scored(tokens)
    np.testing.assert_allclose(np.asarray(scored), np.asarray(drafted), atol=1e-5)


def test_rollout_is_the_decode_loops_first_round(tiny_pair):
    """At temperature 0, with the target's own next token as the root: each drafter's accepted drafts and emitted
    tokens in the rollout are the first round of tree decoding from the same prompt, and each tree's reward is its
    accepted length (the draft tree reward of a greedy target). Drafters: the target itself (every level accepted)
    and the separate draft model (mostly rejected)."""
    target, draft = tiny_pair
    contexts, _ = _contexts(3)
    lengths = jnp.full((4,), contexts.shape[1], jnp.int32)
    logits, _ = _target_out(target, contexts)
    pending = jnp.argmax(logits[:, -1], -1).astype(jnp.int32)
    out = jax.jit(lambda c, p: rollout(target, target, draft, BUILDER, c, p, jax.random.key(0), GREEDY))(
        contexts, pending)
    spec = make_speculator("eagle", budget=6, top_k=2, depth=3)
    seen = []
    for tree, drafter in ((out.current, target), (out.reference, draft)):
        decoded = generate(target, contexts, lengths, jax.random.key(5), method=spec, drafter=drafter,
                           max_new_tokens=8, sampling=GREEDY)
        n = np.asarray(tree.num_accepted)
        np.testing.assert_array_equal(n, np.asarray(decoded.accepted[:, 0]))
        tokens = np.asarray(decoded.tokens)
        np.testing.assert_array_equal(tokens[:, 0], np.asarray(pending))
        for row in range(4):
            np.testing.assert_array_equal(np.asarray(tree.emitted[row, :n[row] + 1]), tokens[row, 1:n[row] + 2])
        np.testing.assert_allclose(np.asarray(tree.reward), n, atol=1e-6)
        seen.append(n)
    assert np.all(seen[0] == 3) and np.any(seen[1] < 3)          # both ends of the range are exercised


def test_advantages_and_clipped_surrogate_by_hand():
    adv_c, adv_r = group_advantages(jnp.array([3.0, 1.0, 2.0, 2.0]), jnp.array([1.0, 2.0, 2.0, 2.0]))
    scale = np.sqrt(np.mean(np.array([1.0, -0.5, 0, 0]) ** 2))                  # rms of the half-differences
    np.testing.assert_allclose(np.asarray(adv_c), np.array([1.0, -0.5, 0, 0]) / scale, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(adv_r), -np.asarray(adv_c), rtol=1e-6)
    zero_c, zero_r = group_advantages(jnp.ones(3), jnp.ones(3))                  # equal trees: no signal
    assert not np.any(np.asarray(zero_c)) and not np.any(np.asarray(zero_r))

    mask = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    old = jnp.zeros((2, 2))
    grad = lambda logq, adv: np.asarray(jax.grad(lambda l: ppo_surrogate(l, old, adv, mask, 0.2))(logq))
    # ratio 1: the policy gradient -A / (masked tokens) on each masked token, nothing on the padding
    np.testing.assert_allclose(grad(jnp.zeros((2, 2)), jnp.array([1.0, -2.0])),
                               np.array([[-1 / 3, -1 / 3], [2 / 3, 0.0]]), rtol=1e-6)
    # clipped where it would push the ratio further out: r = e^0.5 > 1.2 with A > 0, r = e^-0.5 < 0.8 with A < 0
    out = jnp.array([[0.5, 0.5], [-0.5, 0.0]])
    np.testing.assert_allclose(grad(out, jnp.array([1.0, -1.0])), 0.0, atol=1e-7)
    # not clipped when the step would bring the ratio back (r < 1 with A > 0): the gradient is -A r / 3
    np.testing.assert_allclose(grad(-out, jnp.array([1.0, -1.0]))[0], -np.exp(-0.5) / 3 * np.ones(2), rtol=1e-5)


def _gto_loss(target, head_like, cfg=GTOConfig()):
    """The loss `train_eagle.py gto` uses, on the tiny pair: distillation anchor + GTO surrogate (a one-level tree
    keeps its compilation short)."""
    builder = make_speculator("eagle", budget=2, top_k=2, depth=1).builder

    def loss(head, batch):
        drafter = head_like.replace(params=head_like.params.replace(head=head))
        frozen = head_like.replace(params=head_like.params.replace(head=jax.lax.stop_gradient(head)))
        out = rollout(target, frozen, head_like, builder, batch["contexts"], batch["pending"],
                      jax.random.fold_in(jax.random.key(4), batch["step"]), SamplingConfig(temperature=1.0))
        surrogate, prefix = gto_surrogate(drafter, head_like, out, cfg)
        return distill_loss(prefix.logits, _target_out(target, batch["contexts"])[0]) + surrogate
    return loss


def _batch(step):
    contexts, pending = _contexts(100 + step, b=8)
    return {"contexts": contexts, "pending": pending, "step": jnp.int32(step)}


def test_no_signal_at_the_reference_and_exact_resumption(tiny_pair, tmp_path):
    """A drafter that is its own reference gets a surrogate of exactly 0 and no gradient from it; a GTO run stopped
    after 1 step and resumed from its orbax checkpoint ends where the uninterrupted 3-step run does."""
    target, _ = tiny_pair
    eagle = init_eagle(target, d_ff=32, seed=2)
    builder = make_speculator("eagle", budget=2, top_k=2, depth=1).builder

    @jax.jit
    def value_and_grad(head, contexts, pending):
        out = rollout(target, eagle, eagle, builder, contexts, pending, jax.random.key(0), SamplingConfig(1.0))
        return jax.value_and_grad(lambda h: gto_surrogate(eagle.replace(params=eagle.params.replace(head=h)), eagle,
                                                          out, GTOConfig())[0])(head)
    value, grads = value_and_grad(eagle.params.head, *_contexts(7, b=8))
    assert float(value) == 0.0
    assert all(not np.any(np.asarray(g)) for g in jax.tree.leaves(grads))

    cfg = TrainConfig(steps=3, learning_rate=1e-2, warmup_steps=1, checkpoint_every=1)
    copy = lambda: jax.tree.map(jnp.copy, eagle.params.head)
    loss = _gto_loss(target, eagle)                 # one loss function: the three runs share one compiled step
    whole, _, losses = train_with_loss(copy(), loss, _batch, cfg)
    train_with_loss(copy(), loss, _batch, cfg, checkpoint_dir=tmp_path, stop_after=1)
    resumed, _, rest = train_with_loss(copy(), loss, _batch, cfg, checkpoint_dir=tmp_path)
    assert len(rest) == 2
    np.testing.assert_allclose(rest, losses[1:], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(whole),
                                                              jax.tree.leaves(eagle.params.head)))
    assert moved > 1e-4                                                   # the run did train


def test_bad_input_raises():
    with pytest.raises(ValueError, match="clip"):
        GTOConfig(clip=0.0)
    with pytest.raises(ValueError, match="eps"):
        GTOConfig(eps=0.0)
    contexts, pending = _contexts(0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        check_contexts(np.asarray(contexts) + 16, pending, 16)
    with pytest.raises(ValueError, match=r"\[B, W\]"):
        check_contexts(contexts, pending[:2], 16)
    check_contexts(contexts, pending, 16)
