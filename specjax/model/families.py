"""Model families as configurations of the one decoder (`specjax.model.decoder`), from Hugging Face `config.json` dicts.

| model_type | family | what its config sets |
|---|---|---|
| llama | Llama 2, Llama 3.x, SmolLM2 | rotary scaling `llama3` (3.1/3.2/3.3) or `linear` |
| qwen2 | Qwen2, Qwen2.5 | biases on q/k/v |
| qwen3 | Qwen3 | RMSNorm on each head's q and k, explicit head_dim |
| gemma3_text | Gemma 3 | q/k norms, post-norms, GeGLU, embeddings scaled by sqrt(D), local (sliding-window) layers with their own rotary base, query_pre_attn_scalar, optional soft-caps, tied head |

A family's checkpoint conventions are said here once: Gemma norms store `w` for a scale of `1 + w`
(`NORM_OFFSET`); loaders add it, exporters subtract it, and the decoder only ever sees the scale.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from specjax.model.config import ModelConfig, RopeScaling

HF_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3"}
NORM_OFFSET = {"gemma3": 1.0}
_ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh"}


def norm_offset(config: ModelConfig) -> float:
    """What the family's checkpoints leave out of every RMSNorm scale (1 for Gemma: scale = 1 + w)."""
    return NORM_OFFSET.get(config.family, 0.0)


def rope_from_hf(params: Mapping[str, Any], default_theta: float) -> tuple[float, RopeScaling | None]:
    """(theta, scaling) of one Hugging Face rope parameter block (`rope_parameters` or a legacy `rope_scaling`);
    ValueError for a rope type other than default, linear or llama3."""
    kind = params.get("rope_type", params.get("type")) or "default"
    theta = float(params.get("rope_theta", default_theta))
    if kind == "default":
        return theta, None
    if kind == "linear":
        return theta, RopeScaling("linear", float(params["factor"]))
    if kind == "llama3":
        return theta, RopeScaling("llama3", float(params["factor"]), float(params["low_freq_factor"]),
                                  float(params["high_freq_factor"]), int(params["original_max_position_embeddings"]))
    raise ValueError(f"rope type {kind!r} is not supported (default, linear, llama3)")


def _rope_blocks(cfg: Mapping[str, Any], family: str) -> tuple[dict, dict | None]:
    """The global and (Gemma) local rope parameter blocks, merging transformers 5's `rope_parameters` with the older
    top-level `rope_theta` / `rope_scaling` / `rope_local_base_freq`."""
    params = dict(cfg.get("rope_parameters") or {})
    if family == "gemma3":
        full = dict(params.get("full_attention") or {})
        local = dict(params.get("sliding_attention") or {})
        full.setdefault("rope_theta", cfg.get("rope_theta", 1_000_000.0))
        local.setdefault("rope_theta", cfg.get("rope_local_base_freq", 10_000.0))
    else:
        full, local = params, None
        full.setdefault("rope_theta", cfg.get("rope_theta", 10_000.0))
    legacy = cfg.get("rope_scaling")
    if legacy:
        full = {**full, **legacy}
    return full, local


def _sliding(cfg: Mapping[str, Any], family: str, n_layers: int) -> tuple[int | None, tuple[int, ...]]:
    """(window, local layer indices) from `layer_types` (or Gemma 3's older `sliding_window_pattern`)."""
    layer_types = cfg.get("layer_types")
    if layer_types is None and family == "gemma3":
        pattern = int(cfg.get("sliding_window_pattern", 6))
        layer_types = ["full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(n_layers)]
    sliding = tuple(i for i, kind in enumerate(layer_types or []) if kind == "sliding_attention")
    if family in ("qwen2", "qwen3") and not cfg.get("use_sliding_window", False):
        sliding = ()
    if not sliding:
        return None, ()
    if len(layer_types) != n_layers:
        raise ValueError(f"layer_types has {len(layer_types)} entries for {n_layers} layers")
    return int(cfg["sliding_window"]), sliding


def config_from_hf(cfg: Mapping[str, Any]) -> ModelConfig:
    """Map a Hugging Face `config.json` dict onto `ModelConfig` (float32); ValueError for anything the decoder does
    not implement (an unknown model_type, activation, rope type, biases it has no place for)."""
    model_type = cfg.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"model_type {model_type!r} is not supported; supported: {tuple(HF_MODEL_TYPES)}")
    family = HF_MODEL_TYPES[model_type]
    act = cfg.get("hidden_activation") or cfg.get("hidden_act") or "silu"
    if act not in _ACTIVATIONS:
        raise ValueError(f"hidden_act {act!r} is not supported; supported: {tuple(_ACTIVATIONS)}")
    if cfg.get("mlp_bias", False):
        raise ValueError("mlp_bias=True is not supported")
    if cfg.get("attention_bias", False) and family != "qwen2":
        raise ValueError(f"attention_bias=True is not supported for {model_type} (only Qwen2's q/k/v biases)")
    if cfg.get("use_bidirectional_attention", False):
        raise ValueError("bidirectional attention is not supported (decoder-only LMs)")
    n_heads, d_model, n_layers = int(cfg["num_attention_heads"]), int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
    head_dim = cfg.get("head_dim")
    head_dim = None if head_dim is None or int(head_dim) == d_model // n_heads else int(head_dim)
    full, local = _rope_blocks(cfg, family)
    theta, scaling = rope_from_hf(full, 10_000.0)
    local_theta = None
    if local is not None:
        local_theta, local_scaling = rope_from_hf(local, 10_000.0)
        if local_scaling is not None:
            raise ValueError("scaled rotary embeddings on local (sliding-window) layers are not supported")
    window, sliding = _sliding(cfg, family, n_layers)
    gemma = family == "gemma3"
    return ModelConfig(
        vocab_size=int(cfg["vocab_size"]), d_model=d_model, n_layers=n_layers, n_heads=n_heads,
        n_kv_heads=int(cfg.get("num_key_value_heads") or n_heads), d_ff=int(cfg["intermediate_size"]),
        head_dim=head_dim, rope_theta=theta, rope_scaling=scaling, rms_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(cfg.get("tie_word_embeddings", gemma)), attention_bias=family == "qwen2",
        qk_norm=family in ("qwen3", "gemma3"), post_norms=gemma, activation=_ACTIVATIONS[act],
        embed_scale=math.sqrt(d_model) if gemma else 1.0,
        attention_scale=float(cfg.get("query_pre_attn_scalar", 256)) ** -0.5 if gemma else None,
        sliding_window=window, sliding_layers=sliding, rope_local_theta=local_theta if sliding else None,
        logit_softcap=cfg.get("final_logit_softcapping"), attn_softcap=cfg.get("attn_logit_softcapping"),
        family=family, max_positions=_int_or_none(cfg.get("max_position_embeddings")))


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
