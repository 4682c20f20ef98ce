"""GGUF (llama.cpp) files of the `llama` and `gemma3` architectures: weights dequantized one tensor at a time,
config and tokenizer metadata.

llama.cpp's converter permutes the rows of a Llama's Q and K from the Hugging Face `rotate_half` layout to
interleaved pairs; `unpermute_qk` undoes it because `specjax.model.decoder.apply_rope` uses the Hugging Face layout
(Gemma's Q and K are stored unpermuted: llama.cpp runs them with NEOX rope). llama.cpp stores Gemma's norm scales as
1 + w, the Hugging Face `w` plus `specjax.model.families.NORM_OFFSET`; the loader maps them back to Hugging Face names
and values so one name map serves every loader. What a Gemma 3 GGUF leaves out, llama.cpp (and transformers)
hard-code: local layers everywhere but every sixth, local rotary base 10000, query scale head_dim^-1/2.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from jax.sharding import Mesh

from specjax.model.config import ModelConfig, RopeScaling
from specjax.model.families import NORM_OFFSET
from specjax.model.io.weights import model_from_hf_tensors
from specjax.model.decoder import LlamaLM

ARCHITECTURES = ("llama", "gemma3")
GEMMA3_GLOBAL_EVERY = 6            # llama.cpp's and transformers' sliding_window_pattern for Gemma 3
GEMMA3_LOCAL_THETA = 10_000.0


class _InMemoryNumpy:
    """numpy for `gguf.gguf_reader`, except that its `memmap` reads the whole file into one ordinary array: the
    reader slices a view per metadata item (790k for Gemma 3's 262k-token vocabulary), and a memmap's view costs ~3x
    an array's in Python (opening Gemma 3 270M: 11.7 s -> 4.4 s; SmolLM2: 3.4 s -> 1.1 s)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def memmap(path, mode="r"):
        if mode != "r":
            raise ValueError(f"GGUF files are read, not written (mode {mode!r})")
        return np.fromfile(path, np.uint8)


_READER_PATCH = threading.Lock()      # the reader module's numpy is swapped while one reader opens


def gguf_reader(path: str | Path):
    """An open `gguf.GGUFReader` over the file read into memory once (`_InMemoryNumpy`); ValueError if no file."""
    try:
        import gguf.gguf_reader as reader_module
        from gguf import GGUFReader
    except ImportError:
        raise ImportError("reading GGUF files needs the `gguf` package: pip install gguf") from None
    if not Path(path).is_file():
        raise ValueError(f"GGUF file not found: {path}")
    with _READER_PATCH:
        saved, reader_module.np = reader_module.np, _InMemoryNumpy()
        try:
            return GGUFReader(str(path))
        finally:
            reader_module.np = saved


def _field(reader, key: str, default: Any = None) -> Any:
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _f32(x: Any) -> float:
    """GGUF stores float32 metadata; print-round it so 1e-5 reads back as 1e-5, not 9.9999997e-06."""
    return float(f"{float(x):.7g}")


def config_from_gguf(reader) -> ModelConfig:
    """`ModelConfig` from the `<arch>.*` metadata of an open `gguf.GGUFReader` (arch in ARCHITECTURES)."""
    arch = _field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(f"GGUF architecture {arch!r} is not supported; supported: {ARCHITECTURES}")

    def get(key, default=None):
        return _field(reader, f"{arch}.{key}", default)

    d_model, n_heads, n_layers = int(get("embedding_length")), int(get("attention.head_count")), int(get("block_count"))
    vocab = get("vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
    head_dim = int(get("attention.key_length", get("rope.dimension_count", d_model // n_heads)))
    names = {t.name for t in reader.tensors}
    scaling = None
    if get("rope.scaling.type", "none") not in ("none", None):
        if get("rope.scaling.type") != "linear":
            raise ValueError(f"GGUF rope scaling {get('rope.scaling.type')!r} is not supported (linear only)")
        scaling = RopeScaling("linear", _f32(get("rope.scaling.factor")))
    common = dict(
        vocab_size=int(vocab), d_model=d_model, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=int(get("attention.head_count_kv", n_heads)), d_ff=int(get("feed_forward_length")),
        head_dim=None if head_dim == d_model // n_heads else head_dim, rope_scaling=scaling,
        rms_eps=_f32(get("attention.layer_norm_rms_epsilon", 1e-5)), tie_embeddings="output.weight" not in names,
        max_positions=context_length(reader))
    if arch == "llama":
        return ModelConfig(**common, rope_theta=_f32(get("rope.freq_base", 10000.0)),
                           attention_bias="blk.0.attn_q.bias" in names)
    sliding = tuple(i for i in range(n_layers) if (i + 1) % GEMMA3_GLOBAL_EVERY)
    return ModelConfig(**common, rope_theta=_f32(get("rope.freq_base", 1_000_000.0)), family="gemma3",
                       qk_norm=True, post_norms=True, activation="gelu_tanh", embed_scale=math.sqrt(d_model),
                       sliding_window=int(get("attention.sliding_window")),
                       sliding_layers=sliding, rope_local_theta=GEMMA3_LOCAL_THETA,
                       logit_softcap=get("final_logit_softcapping"), attn_softcap=get("attn_logit_softcapping"))


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's `permute` on a Q or K weight `[n_heads * head_dim, d_in]` (or bias `[n_heads*head_dim]`)."""
    rows = w.shape[0]
    # llama.cpp: w.reshape(n_heads, 2, rows // n_heads // 2, ...).swapaxes(1, 2); this is its inverse
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_BLOCK_NAMES = {
    "llama": {"attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
              "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj"},
    "gemma3": {"attn_norm": "input_layernorm", "post_attention_norm": "post_attention_layernorm",
               "ffn_norm": "pre_feedforward_layernorm", "post_ffw_norm": "post_feedforward_layernorm",
               "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
               "attn_output": "self_attn.o_proj", "attn_q_norm": "self_attn.q_norm",
               "attn_k_norm": "self_attn.k_norm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
               "ffn_down": "mlp.down_proj"},
}


def hf_name(gguf_name: str, arch: str) -> tuple[str, str]:
    """(Hugging Face name, GGUF block kind or "") of a GGUF tensor name; ValueError for an unknown tensor."""
    top = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
           "output.weight": "lm_head.weight"}
    if gguf_name in top:
        return top[gguf_name], ""
    if gguf_name == "rope_freqs.weight":
        raise ValueError("GGUF rope_freqs (per-dimension scaled RoPE) is not supported")
    if gguf_name.startswith("blk."):
        _, layer, kind, suffix = gguf_name.split(".", 3)
        if kind in _BLOCK_NAMES[arch]:
            return f"model.layers.{layer}.{_BLOCK_NAMES[arch][kind]}.{suffix}", kind
        raise ValueError(f"GGUF tensor {gguf_name!r} is not part of a {arch} block")
    raise ValueError(f"unknown GGUF tensor {gguf_name!r}")


class GGUFTensors(Mapping[str, np.ndarray]):
    """The tensors of a GGUF file under their Hugging Face names (`[out, in]` layout, Hugging Face values),
    dequantized to float32 one at a time, on access."""

    def __init__(self, reader, config: ModelConfig):
        self._arch = _field(reader, "general.architecture")
        self._config = config
        self._tensors = {}
        for t in reader.tensors:
            self._tensors[hf_name(t.name, self._arch)[0]] = t

    def __getitem__(self, name: str) -> np.ndarray:
        from gguf.quants import dequantize

        t = self._tensors[name]
        array = np.asarray(dequantize(t.data, t.tensor_type), np.float32)
        kind = hf_name(t.name, self._arch)[1]
        if self._arch == "llama" and kind == "attn_q":
            array = unpermute_qk(array, self._config.n_heads)
        elif self._arch == "llama" and kind == "attn_k":
            array = unpermute_qk(array, self._config.n_kv_heads)
        elif self._arch in NORM_OFFSET and (kind.endswith("norm") or name == "model.norm.weight"):
            array = array - NORM_OFFSET[self._arch]
        return array

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


@dataclass(frozen=True)
class GGUFContents:
    """What a GGUF file holds: the model, its config and the raw tokenizer metadata (`tokenizer.*` fields)."""

    model: LlamaLM
    config: ModelConfig
    metadata: dict[str, Any]


def tokenizer_metadata(reader) -> dict[str, Any]:
    """The `tokenizer.*` fields (tokens, merges, token types, special ids, chat template) as Python values."""
    return {key: field.contents() for key, field in reader.fields.items() if key.startswith("tokenizer.")}


def context_length(reader) -> int | None:
    """The positions the model was trained for (`<arch>.context_length` of an open reader); None if unstated."""
    value = _field(reader, f"{_field(reader, 'general.architecture')}.context_length")
    return None if value is None else int(value)


def gguf_tokenizer(reader):
    """The `specjax.model.io.tokenizer.Tokenizer` of an open reader's `tokenizer.*` metadata."""
    from specjax.model.io.tokenizer import tokenizer_from_gguf_metadata
    return tokenizer_from_gguf_metadata(tokenizer_metadata(reader), _field(reader, "general.architecture"))


def gguf_model(reader, config: ModelConfig, *, source: str = "GGUF", mesh: Mesh | None = None) -> LlamaLM:
    """The `LlamaLM` of an open reader whose `config_from_gguf` is `config` (its dtype, e.g. bfloat16, applied),
    each tensor dequantized and placed straight into its sharding on `mesh`."""
    return model_from_hf_tensors(config, GGUFTensors(reader, config), source=source, mesh=mesh)


def load_gguf(path: str | Path, *, dtype: str | None = None, mesh: Mesh | None = None) -> GGUFContents:
    """Load a GGUF file: the `LlamaLM` (dequantized, in `dtype`, default float32, each tensor placed straight into
    its sharding on `mesh`), its `ModelConfig`, and tokenizer metadata."""
    reader = gguf_reader(path)
    config = config_from_gguf(reader)
    if dtype is not None:
        config = config.replace(dtype=dtype)
    return GGUFContents(gguf_model(reader, config, source=str(path), mesh=mesh), config, tokenizer_metadata(reader))
