"""GGUF (llama.cpp) Llama-architecture files: dequantized float32 weights, config and tokenizer metadata.

llama.cpp's converter permutes the rows of Q and K from the Hugging Face `rotate_half` layout to interleaved pairs;
`unpermute_qk` undoes it because `specjax.model.apply_rope` uses the Hugging Face layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specjax.config import ModelConfig
from specjax.io.weights import model_from_hf_tensors
from specjax.model import LlamaLM


def _reader(path: str | Path):
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ImportError("reading GGUF files needs the `gguf` package: pip install gguf") from None
    if not Path(path).is_file():
        raise ValueError(f"GGUF file not found: {path}")
    return GGUFReader(str(path))


def _field(reader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _f32(x: Any) -> float:
    """GGUF stores float32 metadata; print-round it so 1e-5 reads back as 1e-5, not 9.9999997e-06."""
    return float(f"{float(x):.7g}")


def config_from_gguf(reader) -> ModelConfig:
    """`ModelConfig` from the `llama.*` metadata of an open `gguf.GGUFReader`."""
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF architecture {arch!r} is not supported (llama only)")
    d_model = int(_field(reader, "llama.embedding_length"))
    n_heads = int(_field(reader, "llama.attention.head_count"))
    vocab = _field(reader, "llama.vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
    head_dim = int(_field(reader, "llama.rope.dimension_count", d_model // n_heads))
    names = {t.name for t in reader.tensors}
    return ModelConfig(
        vocab_size=int(vocab), d_model=d_model, n_layers=int(_field(reader, "llama.block_count")),
        n_heads=n_heads, n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)),
        d_ff=int(_field(reader, "llama.feed_forward_length")),
        head_dim=None if head_dim == d_model // n_heads else head_dim,
        rope_theta=_f32(_field(reader, "llama.rope.freq_base", 10000.0)),
        rms_eps=_f32(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings="output.weight" not in names, attention_bias="blk.0.attn_q.bias" in names)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's `permute` on a Q or K weight `[n_heads * head_dim, d_in]` (or bias `[n_heads*head_dim]`)."""
    rows = w.shape[0]
    # llama.cpp: w.reshape(n_heads, 2, rows // n_heads // 2, ...).swapaxes(1, 2); this is its inverse
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_GGUF_TO_HF = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def hf_tensors_from_gguf(reader, config: ModelConfig) -> dict[str, np.ndarray]:
    """Dequantize every tensor to float32 and rename it to its Hugging Face Llama name (`[out, in]` layout)."""
    from gguf.quants import dequantize

    out = {}
    for t in reader.tensors:
        array = np.asarray(dequantize(t.data, t.tensor_type), np.float32)
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        elif t.name == "output.weight":
            name = "lm_head.weight"
        elif t.name.startswith("blk."):
            _, layer, kind, suffix = t.name.split(".", 3)
            if kind not in _GGUF_TO_HF:
                raise ValueError(f"GGUF tensor {t.name!r} is not part of a Llama block")
            name = f"model.layers.{layer}.{_GGUF_TO_HF[kind]}.{suffix}"
            if kind == "attn_q":
                array = unpermute_qk(array, config.n_heads)
            elif kind == "attn_k":
                array = unpermute_qk(array, config.n_kv_heads)
        elif t.name == "rope_freqs.weight":
            raise ValueError("GGUF rope_freqs (scaled RoPE) is not supported")
        else:
            raise ValueError(f"unknown GGUF tensor {t.name!r}")
        out[name] = array
    return out


@dataclass(frozen=True)
class GGUFContents:
    """What a GGUF file holds: the model, its config and the raw tokenizer metadata (`tokenizer.*` fields)."""

    model: LlamaLM
    config: ModelConfig
    metadata: dict[str, Any]


def tokenizer_metadata(reader) -> dict[str, Any]:
    """The `tokenizer.*` fields (tokens, merges, token types, special ids, chat template) as Python values."""
    return {key: field.contents() for key, field in reader.fields.items() if key.startswith("tokenizer.")}


def load_gguf(path: str | Path) -> GGUFContents:
    """Load a Llama GGUF file: dequantized float32 `LlamaLM`, its `ModelConfig`, and tokenizer metadata."""
    reader = _reader(path)
    config = config_from_gguf(reader)
    model = model_from_hf_tensors(config, hf_tensors_from_gguf(reader, config), source=str(path))
    return GGUFContents(model, config, tokenizer_metadata(reader))
