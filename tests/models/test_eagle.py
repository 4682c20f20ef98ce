"""EAGLE-style head and its VocabTrim variant on the tiny random target: lossless greedy decoding, exact draft
laws over the full vocabulary, training lowers the distillation loss, shipped-format checkpoints reload."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.model.block import Block
from specjax.model.config import named_config
from specjax.decode.loop import generate
from specjax.runners.eagle import frequent_token_ids, init_eagle, load_eagle, with_low_rank_head, with_vocab_trim
from specjax.model.io.checkpoint import save_checkpoint
from specjax.model.decoder import init_model
from specjax.runners.model import model_handle
from specjax.sampling import SamplingConfig
from specjax.methods import make_method
from specjax.training.distill import TrainConfig, random_token_batches, train_distill
from tests.exact_tables import assert_target_law, decode_law_rows

PROMPTS = np.array([[1, 2, 3, 4, 5], [5, 6, 0, 0, 0], [7, 0, 0, 0, 0]], np.int32)
LENGTHS = np.array([5, 2, 1], np.int32)


@pytest.fixture(scope="module")
def target():
    return model_handle(init_model(named_config("tiny"), 0))


def _eagle_forward(drafter, tokens, features):
    """One cached forward of an EAGLE handle over tokens `[1, T]` at positions 0.. with the given features."""
    block = Block.chain(tokens, jnp.zeros((1,), jnp.int32), features)
    return drafter.forward(drafter.init_cache(1, 8), block)


def test_greedy_eagle_and_vocabtrim_equal_ar(target, concurrently):
    greedy = SamplingConfig(temperature=0.0)
    drafter = init_eagle(target, seed=1)
    drafters = (drafter, with_vocab_trim(drafter, np.array([0, 3, 4, 9])))
    *sds, ar = concurrently(
        [lambda d=d: generate(target, PROMPTS, LENGTHS, jax.random.key(1), method=make_method("chain", num_draft=3),
                              max_new_tokens=10, sampling=greedy, drafter=d) for d in drafters] +
        [lambda: generate(target, PROMPTS, LENGTHS, jax.random.key(0), max_new_tokens=10, sampling=greedy)])
    for sd in sds:
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens))


def test_vocabtrim_law_is_exact_over_full_vocab(target):
    drafter = with_vocab_trim(init_eagle(target), np.array([2, 5, 11]))
    feats = jax.random.normal(jax.random.key(0), (1, 3, target.config.d_model))
    out = _eagle_forward(drafter, jnp.array([[1, 2, 3]]), feats)
    probs = np.asarray(jax.nn.softmax(out.logits, -1))
    assert probs.shape == (1, 3, 16) and out.hidden.shape == (1, 3, target.config.d_model)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    outside = np.setdiff1d(np.arange(16), [2, 5, 11])
    assert np.all(probs[..., outside] == 0) and np.all(probs[..., [2, 5, 11]] > 0)
    with pytest.raises(ValueError, match="keep_ids"):
        with_vocab_trim(drafter, np.array([16]))


def _draft_probs(drafter, d_model):
    feats = jax.random.normal(jax.random.key(0), (1, 3, d_model))
    logits = _eagle_forward(drafter, jnp.array([[1, 2, 3]]), feats).logits
    return np.asarray(jax.nn.softmax(logits, -1), np.float64)


def test_low_rank_head_is_exact_law_and_full_rank_reproduces_head(target):
    d = target.config.d_model
    full = init_eagle(target, seed=3)
    trimmed = with_vocab_trim(full, np.array([1, 4, 6, 9, 13]))
    for base in (full, trimmed):
        exact = _draft_probs(base, d)
        np.testing.assert_allclose(_draft_probs(with_low_rank_head(base, d), d), exact, atol=2e-5)
        low = _draft_probs(with_low_rank_head(base, 2), d)
        np.testing.assert_allclose(low.sum(-1), 1.0, atol=1e-6)
        assert np.all((low > 0) == (exact > 0))              # same support (VocabTrim zeros stay exact zeros)
        assert np.abs(low - exact).max() > 1e-3             # rank 2 really is a different, cheaper law
    # data-aware factors: hidden states confined to a 3-dim subspace are served exactly by a rank-3 head
    basis = np.linalg.qr(np.random.default_rng(0).normal(size=(d, 3)))[0]                  # [D, 3]
    with_moment = lambda m: full.replace(params=full.params.replace(feature_moment=jnp.asarray(m, jnp.float32)))
    weighted = with_low_rank_head(with_moment(basis @ basis.T), 3)
    plain = with_low_rank_head(full, 3)
    h = jnp.asarray(np.random.default_rng(1).normal(size=(5, 3)) @ basis.T, jnp.float32)     # [5, D] in the span
    exact = np.asarray(h @ full.params.embedding.T)
    def low_logits(handle):
        a, b = handle.params.head_factors
        return np.asarray((h @ a) @ b)
    np.testing.assert_allclose(low_logits(weighted), exact, atol=1e-3)
    assert np.abs(low_logits(plain) - exact).max() > 10 * np.abs(low_logits(weighted) - exact).max()
    full_rank = with_low_rank_head(with_moment(np.eye(d) + basis @ basis.T), d)
    np.testing.assert_allclose(_draft_probs(full_rank, d), _draft_probs(full, d), atol=2e-5)
    for bad, message in ((0, "rank"), (d + 1, "rank")):
        with pytest.raises(ValueError, match=message):
            with_low_rank_head(full, bad)
    with pytest.raises(ValueError, match="before"):
        with_vocab_trim(with_low_rank_head(full, 4), np.array([1, 2]))


def test_low_rank_drafter_is_lossless(target, concurrently):
    """Greedy SD == AR, and sampled SD matches the enumerated target law (chi-square), with a rank-3 head."""
    drafter = with_low_rank_head(init_eagle(target, seed=4), 3)
    greedy = SamplingConfig(temperature=0.0)
    sampling = SamplingConfig(temperature=1.0)
    out, sd, ar = concurrently([
        lambda: decode_law_rows(target, make_method("chain", num_draft=2), sampling, drafter, seed=5),
        lambda: generate(target, PROMPTS, LENGTHS, jax.random.key(1), method=make_method("chain", num_draft=3),
                         max_new_tokens=10, sampling=greedy, drafter=drafter),
        lambda: generate(target, PROMPTS, LENGTHS, jax.random.key(0), max_new_tokens=10, sampling=greedy)])
    np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens))
    assert_target_law(target, out.tokens, sampling)
    assert 1.0 < out.acceptance_length < 3.0


def test_frequent_token_ids():
    stream = np.array([3, 3, 3, 1, 1, 7, 9])
    np.testing.assert_array_equal(frequent_token_ids(stream, 10, 2), [1, 3])
    np.testing.assert_array_equal(frequent_token_ids(stream, 10, 2, always=(0,)), [0, 3])


def test_training_lowers_loss_and_checkpoint_reloads(target, tmp_path):
    from specjax.runners.model import as_model
    eagle = init_eagle(target, d_ff=24, seed=2)
    params = eagle.params

    def target_apply(tokens):
        pos = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        logits, hidden, _ = as_model(target)(tokens, pos)
        return logits, hidden

    def student_apply(head, tokens, hidden):
        pos = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        feats = jnp.concatenate([jnp.zeros_like(hidden[:, :1]), hidden[:, :-1]], axis=1)
        h, _ = eagle.runner.hidden(params.replace(head=head), tokens, pos, feats)
        return h @ params.embedding.T

    head, _, losses = train_distill(params.head, student_apply, target_apply, random_token_batches(16, 8, 8, 0),
                                    TrainConfig(steps=30, learning_rate=1e-2, warmup_steps=2))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])

    save_checkpoint(tmp_path / "head", {"head": jax.tree.map(lambda x: x.astype(jnp.bfloat16), head),
                                        "keep_ids": jnp.arange(4, dtype=jnp.int32)},
                    config=target.config, extra={"train": {"d_ff": 24, "trim": 4}})
    loaded = load_eagle(tmp_path / "head", target, trim=True)
    assert np.array_equal(np.asarray(loaded.params.keep_ids), np.arange(4))
    a = jax.tree.leaves(head)[0]
    b = jax.tree.leaves(loaded.params.head)[0]
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-2, atol=1e-2)   # bf16 on disk
    save_checkpoint(tmp_path / "wide", {"head": head, "keep_ids": jnp.arange(4, dtype=jnp.int32)},
                    extra={"train": {"d_ff": 32, "trim": 4}})
    with pytest.raises(ValueError, match="mlp/down_proj/kernel"):
        load_eagle(tmp_path / "wide", target)
