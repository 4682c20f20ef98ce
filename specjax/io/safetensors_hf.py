"""Hugging Face checkpoint directories (config.json + *.safetensors) for the Llama and Qwen2 families.

The safetensors format is read directly (8-byte header length, JSON header, raw little-endian tensors), so loading
needs no torch and no `safetensors` package.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from specjax.config import ModelConfig
from specjax.io.weights import model_from_hf_tensors
from specjax.model import LlamaLM

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")

_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def _rope_theta(cfg: Mapping[str, Any]) -> float:
    """rope_theta sits at the top level (older transformers) or in `rope_parameters` (transformers >= 5)."""
    params = cfg.get("rope_parameters") or {}
    scaling = cfg.get("rope_scaling") or {}
    for block in (params, scaling):
        kind = block.get("rope_type", block.get("type", "default"))
        if kind not in (None, "default"):
            raise ValueError(f"rope type {kind!r} is not supported (only default RoPE)")
    return float(params.get("rope_theta", cfg.get("rope_theta", 10000.0)))


def config_from_hf(cfg: Mapping[str, Any]) -> ModelConfig:
    """Map a Hugging Face `config.json` dict (model_type llama | qwen2) onto `ModelConfig`; ValueError otherwise."""
    model_type = cfg.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not supported; supported: {SUPPORTED_MODEL_TYPES}")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act {cfg['hidden_act']!r} is not supported (SwiGLU with silu only)")
    if cfg.get("mlp_bias", False):
        raise ValueError("mlp_bias=True is not supported")
    if model_type == "qwen2" and cfg.get("use_sliding_window", False):
        raise ValueError("Qwen2 sliding-window attention is not supported")
    n_heads = int(cfg["num_attention_heads"])
    d_model = int(cfg["hidden_size"])
    head_dim = cfg.get("head_dim")
    bias = True if model_type == "qwen2" else bool(cfg.get("attention_bias", False))
    return ModelConfig(
        vocab_size=int(cfg["vocab_size"]), d_model=d_model, n_layers=int(cfg["num_hidden_layers"]),
        n_heads=n_heads, n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads),
        d_ff=int(cfg["intermediate_size"]),
        head_dim=None if head_dim is None or int(head_dim) == d_model // n_heads else int(head_dim),
        rope_theta=_rope_theta(cfg), rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", False)), attention_bias=bias)


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of one .safetensors file as float/int numpy arrays (BF16 widened to float32)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path}: not a safetensors file (too short)")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > len(data) - 8:
        raise ValueError(f"{path}: not a safetensors file (bad header length)")
    header = json.loads(data[8:8 + header_len])
    base = 8 + header_len
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin: base + end]
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            bits = np.frombuffer(raw, np.uint16).astype(np.uint32) << 16
            out[name] = bits.view(np.float32).reshape(shape)
        elif info["dtype"] in _DTYPES:
            out[name] = np.frombuffer(raw, _DTYPES[info["dtype"]]).reshape(shape)
        else:
            raise ValueError(f"{path}: tensor {name!r} has unsupported dtype {info['dtype']}")
    return out


def load_hf_config(directory: str | Path) -> ModelConfig:
    """`ModelConfig` of a Hugging Face checkpoint directory."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ValueError(f"{directory}: no config.json (expected a Hugging Face checkpoint directory)")
    return config_from_hf(json.loads(path.read_text()))


def load_hf_model(directory: str | Path) -> LlamaLM:
    """A `LlamaLM` (float32) from a Hugging Face checkpoint directory (single or sharded safetensors)."""
    directory = Path(directory)
    config = load_hf_config(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{directory}: no *.safetensors files")
    tensors: dict[str, np.ndarray] = {}
    for f in files:
        tensors.update(read_safetensors(f))
    return model_from_hf_tensors(config, tensors, source=str(directory))
