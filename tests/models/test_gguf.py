"""GGUF import: a tiny random Llama written with gguf.GGUFWriter (Q/K permuted as llama.cpp's converter does) must
load back to the same logits; the GGUF tokenizer builder handles byte-level BPE and special tokens.
Needs the `models` extra (gguf, tokenizers)."""
import jax.numpy as jnp
import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from specjax.model.config import ModelConfig  # noqa: E402
from specjax.model.io.gguf import load_gguf, unpermute_qk  # noqa: E402
from specjax.model.io.weights import hf_name_map  # noqa: E402
from specjax.model.decoder import init_model  # noqa: E402

CONFIG = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=48, rope_theta=1e4,
                     rms_eps=1e-5, tie_embeddings=False, init_std=0.3)


def llama_cpp_permute(w, n_head):
    """llama.cpp convert_hf_to_gguf.LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_unpermute_inverts_llama_cpp_permute():
    w = np.random.default_rng(0).normal(size=(4 * 8, 5))
    p = llama_cpp_permute(w, 4)
    assert not np.allclose(p, w)
    np.testing.assert_array_equal(unpermute_qk(p, 4), w)


def _hf_tensors(model):
    """HF-named `[out, in]` tensors of a specjax model (inverse of the loader's map)."""
    from flax import nnx
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v.get_value())
            for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    return {hf: (flat[sj].T if tr else flat[sj]) for hf, (sj, tr) in hf_name_map(model.config).items()}


_GGUF_NAMES = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
               "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
               "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
               "mlp.down_proj": "ffn_down"}


def write_tiny_gguf(path, model):
    c = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(c.n_layers)
    w.add_context_length(64)
    w.add_embedding_length(c.d_model)
    w.add_feed_forward_length(c.d_ff)
    w.add_head_count(c.n_heads)
    w.add_head_count_kv(c.n_kv_heads)
    w.add_rope_freq_base(c.rope_theta)
    w.add_layer_norm_rms_eps(c.rms_eps)
    w.add_vocab_size(c.vocab_size)
    for name, array in _hf_tensors(model).items():
        array = np.ascontiguousarray(array, np.float32)
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            gname = "output.weight"
        else:
            _, _, layer, rest = name.split(".", 3)
            kind = rest.rsplit(".", 1)[0]
            gname = f"blk.{layer}.{_GGUF_NAMES[kind]}.weight"
            if kind == "self_attn.q_proj":
                array = llama_cpp_permute(array, c.n_heads)
            elif kind == "self_attn.k_proj":
                array = llama_cpp_permute(array, c.n_kv_heads)
        w.add_tensor(gname, np.ascontiguousarray(array))
    # a small byte-level BPE vocabulary: 2 specials, a few bytes and one merge
    tokens = ["<|endoftext|>", "<|im_end|>"] + list("abcdefghij") + ["Ġ", "ab", "Ġa"]
    tokens += [f"<unused{i}>" for i in range(c.vocab_size - len(tokens))]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types([3, 3] + [1] * (len(tokens) - 2))
    w.add_token_merges(["a b", "Ġ a"])
    w.add_eos_token_id(1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def test_gguf_roundtrip_logits(tmp_path):
    model = init_model(CONFIG, 3)
    path = tmp_path / "tiny.gguf"
    write_tiny_gguf(path, model)
    contents = load_gguf(path)
    assert contents.config == CONFIG.replace(init_std=0.02, max_positions=64)      # the GGUF's context_length
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, CONFIG.vocab_size, (2, 9)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(9), (2, 9))
    ref, _, _ = model(tokens, positions)
    got, _, _ = contents.model(tokens, positions)
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=1e-5, rtol=0)

    pytest.importorskip("tokenizers")
    from specjax.model.io.tokenizer import tokenizer_from_gguf_metadata
    tok = tokenizer_from_gguf_metadata(contents.metadata)
    assert tok.eos_id == 1
    ids = tok.encode("ab a<|im_end|>")
    assert ids == [13, 14, 1]            # "ab", "Ġa" merged; the special token is one id
    assert tok.decode(ids) == "ab a"
    assert tok.decode(ids, skip_special=False) == "ab a<|im_end|>"


def test_gguf_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_gguf(tmp_path / "missing.gguf")
