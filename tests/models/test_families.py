"""Every family is a configuration of the one decoder: logits (<= 1e-4) and greedy tokens equal Hugging Face
transformers' on tiny random checkpoints of Llama-3.x (rope type llama3), Qwen3 (q/k norms, explicit head_dim) and
Gemma 3 (local/global layers with a sliding window smaller than the test sequences, q/k norms, post-norms, GeGLU,
scaled embeddings, query_pre_attn_scalar, final soft-cap, norms stored as w for 1 + w), saved as multi-file
safetensors with an index. Greedy tokens: transformers' greedy continuation scored in one forward (no decode loop to
compile), and for Gemma 3 also decoded by `generate`, whose cache records positions for the sliding window.
Needs the `parity` extra (torch, transformers)."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from specjax.decode.loop import generate  # noqa: E402
from specjax.model.io.safetensors_hf import INDEX_NAME, load_hf_config, load_hf_model  # noqa: E402
from specjax.model.io.weights import hf_tensors_from_model  # noqa: E402
from specjax.runners.model import model_handle  # noqa: E402
from specjax.sampling import SamplingConfig  # noqa: E402

COMMON = dict(vocab_size=96, hidden_size=64, intermediate_size=112, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=128, initializer_range=0.2,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)
LLAMA3_ROPE = dict(rope_type="llama3", rope_theta=5000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=16)


def _hf_model(kind: str):
    torch.manual_seed(0)
    if kind == "llama3":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**COMMON, rope_parameters=LLAMA3_ROPE))
    elif kind == "qwen3":
        model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**COMMON, head_dim=24,
                                                                       tie_word_embeddings=True))
    else:
        cfg = transformers.Gemma3TextConfig(
            **COMMON, head_dim=16, query_pre_attn_scalar=24, sliding_window=4, final_logit_softcapping=5.0,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 20000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 500.0}})
        model = transformers.Gemma3ForCausalLM(cfg)
    with torch.no_grad():          # random init sets every norm to the identity; make them matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0.0, 0.2)
    return model.float().eval()


@pytest.mark.parametrize("kind", ["llama3", "qwen3", "gemma3"])
def test_family_logits_and_greedy_match_transformers(kind, tmp_path):
    hf = _hf_model(kind)
    hf.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="40KB")
    assert (tmp_path / INDEX_NAME).is_file() and len(list(tmp_path.glob("*.safetensors"))) > 1
    config = load_hf_config(tmp_path)
    model = load_hf_model(tmp_path)
    if kind == "llama3":
        assert config.rope_scaling.kind == "llama3" and config.rope_scaling.original_max_position == 16
    if kind == "gemma3":
        assert config.sliding_layers == (0, 2) and config.sliding_window == 4 and config.rope_local_theta == 500.0
        assert config.post_norms and config.qk_norm and config.tie_embeddings and config.logit_softcap == 5.0

    # transformers' greedy continuation of a random prompt; specjax scores the whole sequence in one forward: equal
    # logits and every argmax equal to transformers' next token mean the same greedy tokens
    prompt = np.random.default_rng(0).integers(3, COMMON["vocab_size"], size=(1, 6))
    with torch.no_grad():
        ids = hf.generate(torch.from_numpy(prompt), max_new_tokens=12, min_new_tokens=12, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
        ref = hf(ids).logits.numpy()
    ids = ids.numpy()
    logits, _, _ = model(jnp.asarray(ids, jnp.int32), jnp.arange(ids.shape[1])[None])
    logits = np.asarray(logits)
    assert np.max(np.abs(logits - ref)) <= 1e-4
    np.testing.assert_array_equal(logits[0, 5:-1].argmax(-1), ids[0, 6:])
    if kind == "gemma3":        # the cached decode past the window: local layers mask by the positions recorded
        res = generate(model_handle(model), prompt.astype(np.int32), np.array([6], np.int32), jax.random.key(0),
                       max_new_tokens=12, sampling=SamplingConfig(temperature=0.0))
        np.testing.assert_array_equal(np.asarray(res.tokens[0]), ids[0, 6:])

    # the exporter inverts the loader (Gemma's norm offset included)
    state = hf.state_dict()
    for name, array in hf_tensors_from_model(model).items():
        np.testing.assert_allclose(array, state[name].numpy(), atol=1e-6, err_msg=name)


def test_mismatched_checkpoint_names_the_tensor(tmp_path):
    hf = _hf_model("qwen3")
    hf.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="40KB")
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 100}))
    with pytest.raises(ValueError, match=r"'layers/0/mlp/(gate|up|down)_proj/kernel' has shape"):
        load_hf_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 4}))
    with pytest.raises(ValueError, match=r"'model\.layers\.3\.\S+' is missing"):
        load_hf_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "qwen2"}))      # no q/k norms there
    with pytest.raises(ValueError, match="bias' is missing"):
        load_hf_model(tmp_path)
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    first = sorted(index["weight_map"])[0]
    index["weight_map"][first] = "model-99999-of-99999.safetensors"
    (tmp_path / INDEX_NAME).write_text(json.dumps(index))
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model-99999-of-99999.safetensors, which is missing"):
        load_hf_model(tmp_path)


def test_config_mapping_rejects_what_the_decoder_lacks():
    base = json.loads(transformers.Gemma3TextConfig(**COMMON).to_json_string())
    from specjax.model.families import config_from_hf
    config = config_from_hf(base)
    assert config.sliding_layers == (0, 1, 2) and config.attention_scale == 256 ** -0.5   # pattern 6, 3 layers
    with pytest.raises(ValueError, match="hidden_act"):
        config_from_hf({**base, "hidden_activation": "relu"})
    with pytest.raises(ValueError, match="rope type 'yarn'"):
        config_from_hf({**base, "rope_parameters": {"full_attention": {"rope_type": "yarn", "factor": 4.0}}})
    with pytest.raises(ValueError, match="bidirectional"):
        config_from_hf({**base, "use_bidirectional_attention": True})
