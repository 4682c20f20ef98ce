"""Logits and greedy-generation parity with Hugging Face transformers on tiny random Llama / Qwen2 checkpoints
built from a config (no network). Needs the `parity` extra (torch, transformers)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from specjax.decode.loop import generate  # noqa: E402
from specjax.model.io.safetensors_hf import config_from_hf, load_hf_config, load_hf_model, read_safetensors  # noqa: E402
from specjax.runners.model import model_handle  # noqa: E402
from specjax.sampling import SamplingConfig  # noqa: E402

COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=128, initializer_range=0.2,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)


def _make(kind: str, tmp_path, tie: bool):
    torch.manual_seed(0)
    if kind == "llama":
        cfg = transformers.LlamaConfig(**COMMON, tie_word_embeddings=tie, rope_theta=5000.0)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        cfg = transformers.Qwen2Config(**COMMON, tie_word_embeddings=tie, rope_theta=5000.0)
        model = transformers.Qwen2ForCausalLM(cfg)
        with torch.no_grad():   # random init zeroes biases; make them matter
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0.0, 0.2)
    model = model.float().eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    return model


@pytest.mark.parametrize("kind,tie", [("llama", True), ("llama", False), ("qwen2", False), ("qwen2", True)])
def test_logits_and_greedy_match_transformers(kind, tie, tmp_path):
    hf = _make(kind, tmp_path, tie)
    config = load_hf_config(tmp_path)
    assert config.attention_bias == (kind == "qwen2") and config.tie_embeddings == tie
    assert config.rope_theta == 5000.0 and config.n_kv_heads == 2
    model = load_hf_model(tmp_path)

    rng = np.random.default_rng(0)
    tokens = rng.integers(3, COMMON["vocab_size"], size=(2, 11)).astype(np.int32)
    with torch.no_grad():
        ref = hf(torch.from_numpy(tokens.astype(np.int64))).logits.numpy()
    positions = np.broadcast_to(np.arange(11), tokens.shape)
    logits, _, _ = model(jnp.asarray(tokens), jnp.asarray(positions))
    assert np.max(np.abs(np.asarray(logits) - ref)) <= 1e-4

    prompt = tokens[:1, :6]
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(prompt.astype(np.int64)), max_new_tokens=12, do_sample=False,
                          eos_token_id=None, pad_token_id=0, min_new_tokens=12)
    ref_new = out[0, 6:].numpy()
    res = generate(model_handle(model), prompt, np.array([6], np.int32), jax.random.key(0), max_new_tokens=12,
                   sampling=SamplingConfig(temperature=0.0))
    np.testing.assert_array_equal(np.asarray(res.tokens[0]), ref_new)


def test_safetensors_reader_matches_reference(tmp_path):
    from safetensors.numpy import load_file
    _make("qwen2", tmp_path, False)
    ours = read_safetensors(next(tmp_path.glob("*.safetensors")))
    ref = load_file(str(next(tmp_path.glob("*.safetensors"))))
    assert set(ours) == set(ref)
    for name in ref:
        np.testing.assert_array_equal(ours[name], ref[name])


def test_config_mapping_rejects_unsupported(tmp_path):
    base = json.loads(transformers.LlamaConfig(**COMMON).to_json_string())
    config_from_hf(base)
    with pytest.raises(ValueError, match="model_type"):
        config_from_hf({**base, "model_type": "gpt2"})
    with pytest.raises(ValueError, match="rope type"):
        config_from_hf({**base, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
