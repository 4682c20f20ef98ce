"""EAGLE-3's fused features (`specjax.runners.model.fused_features`, an `EagleHead` with `fuse`): the fused target emits
its low/mid states beside the final one with unchanged logits; a head reading them decodes losslessly (greedy chains
and trees equal AR, sampled chains match the enumerated target law); a tree level fuses the root's feature exactly as
the head's own forward does; it trains with the training-time test and reloads from its checkpoint only with the
target that emits its features; mismatched widths and bad layers raise."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.model.block import Block
from specjax.model.config import named_config
from specjax.decode.loop import generate, prefill
from specjax.runners.eagle import eagle_target, init_eagle, load_eagle
from specjax.runners.hybrid import hybrid_handle
from specjax.runners.lookup import lookup_handle
from specjax.model.io.checkpoint import save_checkpoint
from specjax.model.decoder import init_model
from specjax.runners.model import as_model, fused_features, model_handle, with_exits
from specjax.sampling import GREEDY, SamplingConfig
from specjax.methods import make_method
from specjax.training.distill import TrainConfig, random_token_batches, train_with_loss, unrolled_distill_loss
from specjax.training.unrolled import unrolled_drafts
from tests.exact_tables import assert_target_law, decode_law_rows
from trees import make_speculator

PROMPTS = np.array([[1, 2, 3, 4, 5], [5, 6, 0, 0, 0], [7, 0, 0, 0, 0]], np.int32)
LENGTHS = np.array([5, 2, 1], np.int32)


@pytest.fixture(scope="module")
def target():
    """A 3-layer random target (so a low and a middle layer exist) and its fused handle (layers 1 and 2)."""
    plain = model_handle(init_model(named_config("tiny").replace(n_layers=3), 0))
    return plain, fused_features(plain, (1, 2))


def _run(handle, tokens):
    return handle.forward(handle.init_cache(tokens.shape[0], tokens.shape[1]),
                          Block.chain(tokens, jnp.zeros((tokens.shape[0],), jnp.int32)))


def test_fused_target_emits_layer_states_with_the_same_logits(target):
    plain, fused = target
    tokens = jnp.asarray(PROMPTS)
    a, b = _run(plain, tokens), _run(fused, tokens)
    d = plain.config.d_model
    assert fused.runner.feature_width == 3 * d and b.hidden.shape == (3, 5, 3 * d)
    np.testing.assert_allclose(np.asarray(b.logits), np.asarray(a.logits), atol=1e-5)
    np.testing.assert_allclose(np.asarray(b.hidden[..., -d:]), np.asarray(a.hidden), atol=1e-5)
    np.testing.assert_allclose(np.asarray(fused.runner.head(fused.params, b.hidden)), np.asarray(a.logits),
                               atol=1e-5)
    exits = _run(with_exits(plain, (1, 2)), tokens)
    np.testing.assert_allclose(np.asarray(b.hidden[..., :2 * d]), np.asarray(exits.exit_hidden.reshape(3, 5, 2 * d)),
                               atol=1e-5)


def test_fused_head_is_lossless(target, concurrently):
    """Greedy chains and EAGLE-2 trees equal AR; sampled chains match the enumerated target law (chi-square). The
    five loops compile concurrently."""
    plain, fused = target
    head = init_eagle(fused, seed=1)
    assert head.runner.feature_width == 3 * plain.config.d_model and head.runner.name == "eagle3"
    # a hybrid is a wrapping runner: it reads the fused features as its head does (it was refused before)
    hybrid = hybrid_handle(head, lookup_handle(plain.config))
    assert hybrid.runner.feature_width == head.runner.feature_width and hybrid.runner.reads_features
    sampling = SamplingConfig(temperature=1.0)
    runs = ((make_method("chain", num_draft=3), head), (make_speculator("eagle", budget=6, top_k=2, depth=3), head),
            (make_speculator("eagle2", budget=6, top_k=2, depth=3), hybrid))
    out, *sds, ar = concurrently(
        [lambda: decode_law_rows(fused, make_method("chain", num_draft=2), sampling, head, seed=5)] +
        [lambda method=method, drafter=drafter: generate(fused, PROMPTS, LENGTHS, jax.random.key(1), method=method,
                                                         drafter=drafter, max_new_tokens=10, sampling=GREEDY)
         for method, drafter in runs] +
        [lambda: generate(plain, PROMPTS, LENGTHS, jax.random.key(0), max_new_tokens=10, sampling=GREEDY)])
    for (method, _), sd in zip(runs, sds):
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=str(method))
    assert_target_law(plain, out.tokens, sampling)
    with pytest.raises(ValueError, match="reads features of width"):
        generate(plain, PROMPTS, LENGTHS, jax.random.key(1), method=make_method("chain", num_draft=2), drafter=head)


def test_tree_level_fuses_the_root_feature_as_the_forward_does(target):
    """The pool's first level (root and prev fused by `fuse_features`, then read as D-wide features) scores the
    root exactly as a chain's first call (which passes the wide features to the head)."""
    from trees.builders import Eagle2Tree
    from specjax.decode.draft import score_chain
    plain, fused = target
    head = init_eagle(fused, seed=2)
    builder = Eagle2Tree(budget=2, top_k=2, depth=1)

    @jax.jit
    def root_laws(tokens, lengths):
        start = prefill(fused, head, tokens, lengths, jax.random.key(0), GREEDY, 16)
        caches, ctx = start.caches, start.ctx
        built = builder.build(head, caches.drafter, ctx, jax.random.key(1), SamplingConfig(1.0), keep_laws=True)
        chain = score_chain(head, caches.drafter, ctx, jnp.zeros((3, 1), jnp.int32))
        return built.tree.probs[:, 0], jax.nn.softmax(chain[:, 0], -1)
    tree_law, chain_law = root_laws(jnp.asarray(PROMPTS), jnp.asarray(LENGTHS))
    np.testing.assert_allclose(np.asarray(tree_law), np.asarray(chain_law), atol=1e-5)


def test_fused_head_trains_and_reloads_only_with_its_target(target, tmp_path):
    plain, fused = target
    head = init_eagle(fused, d_ff=24, seed=2)

    def loss_fn(params, z):
        out = _run(fused, z)
        outs = list(unrolled_drafts(head.replace(params=head.params.replace(head=params)), z, out.hidden, 2))
        return unrolled_distill_loss([o.logits for o in outs], out.logits)
    batches = random_token_batches(16, 8, 8, 0)
    trained, _, losses = train_with_loss(head.params.head, loss_fn, lambda s: jnp.asarray(batches(s)),
                                         TrainConfig(steps=30, learning_rate=1e-2, warmup_steps=2))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    save_checkpoint(tmp_path / "head", {"head": jax.tree.map(lambda x: x.astype(jnp.bfloat16), trained),
                                        "keep_ids": jnp.arange(16, dtype=jnp.int32)},
                    config=plain.config, extra={"train": {"d_ff": 24, "trim": 16}, "feature_layers": [1, 2]})
    loaded = load_eagle(tmp_path / "head", eagle_target(tmp_path / "head", plain))
    assert loaded.runner.feature_width == 3 * plain.config.d_model
    np.testing.assert_allclose(np.asarray(loaded.params.head["fuse"]["kernel"][...]),
                               np.asarray(trained["fuse"]["kernel"][...].astype(jnp.bfloat16).astype(jnp.float32)))
    with pytest.raises(ValueError, match="features of layers"):
        load_eagle(tmp_path / "head", plain)


def test_bad_feature_layers_raise(target):
    plain, fused = target
    for bad in ((0,), (3,), (2, 1), (1, 1), ()):
        with pytest.raises(ValueError):
            fused_features(plain, bad)
    with pytest.raises(ValueError, match="full model"):
        fused_features(fused, (1,))
    assert as_model(fused).config.n_layers == 3
