"""Model configuration: a frozen dataclass (hashable, so it can be a static jit argument) and named presets.

One decoder (`specjax.model.decoder`) covers every family we load; a family is a choice of these fields (see
`specjax.model.families` for the mapping from Hugging Face configs), never a copied modeling file.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

ROPE_KINDS = ("linear", "llama3")
FAMILIES = ("llama", "qwen2", "qwen3", "gemma3")
ACTIVATIONS = ("silu", "gelu_tanh")


def check_dtype(name: str, value: str) -> None:
    """ValueError unless `value` names a floating-point dtype numpy/jax know (float32, bfloat16, float16, ...)."""
    import ml_dtypes  # noqa: F401  (registers bfloat16 & co. with numpy)
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise ValueError(f"{name} must name a floating-point dtype (e.g. float32, bfloat16), got {value!r}") from None
    if dtype.kind != "f" and dtype.name not in ("bfloat16",):
        raise ValueError(f"{name} must name a floating-point dtype, got {value!r}")


@dataclass(frozen=True)
class RopeScaling:
    """Rotary frequency scaling of a long-context checkpoint (Hugging Face `rope_scaling` / `rope_parameters`)."""

    kind: str
    """"linear" (every frequency divided by `factor`) or "llama3" (Llama-3.1/3.2/3.3: low frequencies divided by
    `factor`, high ones kept, a smooth blend between)."""
    factor: float
    """The context extension factor."""
    low_freq_factor: float = 1.0
    """llama3: wavelengths above original_max_position / low_freq_factor are divided by `factor`."""
    high_freq_factor: float = 4.0
    """llama3: wavelengths below original_max_position / high_freq_factor are kept."""
    original_max_position: int = 8192
    """llama3: the pre-training context length."""

    def __post_init__(self) -> None:
        if self.kind not in ROPE_KINDS:
            raise ValueError(f"rope scaling {self.kind!r} is not supported; supported: {ROPE_KINDS}")
        if not self.factor > 0 or (self.kind == "llama3" and not self.high_freq_factor > self.low_freq_factor > 0):
            raise ValueError(f"bad rope scaling parameters: {self}")


@dataclass(frozen=True)
class ModelConfig:
    """Shape, numerics and variant switches of a decoder-only LM (Llama, Qwen2/2.5, Qwen3, SmolLM2, Gemma 3)."""

    vocab_size: int
    """V, the vocabulary."""
    d_model: int
    """D, the residual width."""
    n_layers: int
    n_heads: int
    """Query heads."""
    n_kv_heads: int
    """Key/value heads (grouped-query attention: n_heads is a multiple)."""
    d_ff: int
    """Hidden width of the gated MLP."""
    head_dim: int | None = None
    """Per-head width; None = d_model // n_heads."""
    rope_theta: float = 10000.0
    """Rotary base (of the full-attention layers when local layers have their own)."""
    rms_eps: float = 1e-5
    tie_embeddings: bool = True
    """The head is the input embedding (transposed)."""
    attention_bias: bool = False
    """Biases on q/k/v (Qwen2)."""
    init_std: float = 0.02
    """Only for random initialisation (tests use larger values to get peaked distributions)."""
    dtype: str = "float32"
    """Weights and activations (e.g. "bfloat16"); logits, warps and acceptance rules stay float32."""
    cache_dtype: str | None = None
    """KV cache entries; None = `dtype`."""
    rope_scaling: RopeScaling | None = None
    """Frequency scaling of the full-attention layers' rotary embedding (Llama-3.x: kind "llama3")."""
    qk_norm: bool = False
    """RMSNorm on every head's query and key before the rotary embedding (Qwen3, Gemma 3)."""
    post_norms: bool = False
    """RMSNorm on the attention and MLP outputs before each residual add (Gemma 2/3 "sandwich" norms)."""
    activation: str = "silu"
    """Gate activation of the MLP: "silu" (SwiGLU) or "gelu_tanh" (GeGLU, Gemma)."""
    embed_scale: float = 1.0
    """Input embeddings are multiplied by this (Gemma: sqrt(d_model))."""
    attention_scale: float | None = None
    """Attention scores are multiplied by this; None = head_dim ** -0.5 (Gemma: query_pre_attn_scalar ** -0.5)."""
    sliding_window: int | None = None
    """Local layers see only keys at positions > query position - sliding_window."""
    sliding_layers: tuple[int, ...] = ()
    """Indices of the local (sliding-window) layers; the others attend to the whole prefix."""
    rope_local_theta: float | None = None
    """Rotary base of the local layers (unscaled); None = rope_theta."""
    logit_softcap: float | None = None
    """Final logits become cap * tanh(logits / cap) (Gemma 2)."""
    attn_softcap: float | None = None
    """Attention scores become cap * tanh(scores / cap) (Gemma 2)."""
    family: str = "llama"
    """Checkpoint family whose tensor names and conventions loaders and exporters follow (`specjax.model.families`)."""
    max_positions: int | None = None
    """The context the model was trained for (a checkpoint's `max_position_embeddings` / `context_length`):
    `generate` refuses prompts and lengths past it. None = unbounded (random presets)."""

    def __post_init__(self) -> None:
        # JSON round trips (checkpoint sidecars) give lists and dicts back: restore the hashable forms
        object.__setattr__(self, "sliding_layers", tuple(int(i) for i in self.sliding_layers))
        if isinstance(self.rope_scaling, dict):
            object.__setattr__(self, "rope_scaling", RopeScaling(**self.rope_scaling))
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}) or set head_dim")
        if self.dim_per_head % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.dim_per_head}")
        check_dtype("ModelConfig.dtype", self.dtype)
        if self.cache_dtype is not None:
            check_dtype("ModelConfig.cache_dtype", self.cache_dtype)
        if self.family not in FAMILIES:
            raise ValueError(f"family {self.family!r} is not known; known: {FAMILIES}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not supported; supported: {ACTIVATIONS}")
        if self.sliding_layers and (self.sliding_window is None or self.sliding_window < 1):
            raise ValueError(f"sliding layers {self.sliding_layers} need a positive sliding_window, "
                             f"got {self.sliding_window!r}")
        if any(not 0 <= i < self.n_layers for i in self.sliding_layers):
            raise ValueError(f"sliding_layers {self.sliding_layers} must lie in [0, {self.n_layers})")
        if self.max_positions is not None and (not isinstance(self.max_positions, int) or self.max_positions < 1):
            raise ValueError(f"ModelConfig.max_positions must be a positive integer or None, got "
                             f"{self.max_positions!r}")
        for name in ("logit_softcap", "attn_softcap", "attention_scale"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"ModelConfig.{name} must be a positive number or None, got {value!r}")

    @property
    def dim_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    @property
    def kv_dtype(self) -> str:
        """The KV cache dtype (cache_dtype, else dtype)."""
        return self.cache_dtype or self.dtype

    def is_sliding(self, layer: int) -> bool:
        return layer in self.sliding_layers

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# Random-weight presets for tests, the CLI and benchmarks until trained pairs exist. Pairs share a vocabulary.
NAMED_CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, init_std=0.3),
    "tiny-draft": ModelConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, init_std=0.3),
    # model-parallel test pair: 8 query heads, 4 KV heads (sharded on a model axis of 2 or 4, replicated on 8), a
    # vocabulary of 32 (split over up to 8 devices); the drafter's 4 heads shard on up to 4 devices
    "tiny-mp": ModelConfig(vocab_size=32, d_model=64, n_layers=2, n_heads=8, n_kv_heads=4, d_ff=128, init_std=0.3),
    "tiny-mp-draft": ModelConfig(vocab_size=32, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64,
                                 init_std=0.3),
    "byte-small": ModelConfig(vocab_size=259, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4, d_ff=768),
    "byte-small-draft": ModelConfig(vocab_size=259, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=384),
    # the byte-level pair at test size: experiments run end to end on real prompts in seconds
    "byte-tiny": ModelConfig(vocab_size=259, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, init_std=0.3),
    "byte-tiny-draft": ModelConfig(vocab_size=259, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32,
                                   init_std=0.3),
    # about 1.04B parameters (Llama-3.2-1B's layers with a 32k vocabulary, bf16): the sharding benchmark's model
    "llama-1b": ModelConfig(vocab_size=32768, d_model=2048, n_layers=16, n_heads=32, n_kv_heads=8, d_ff=8192,
                            rope_theta=500000.0, dtype="bfloat16"),
}


def named_config(name: str) -> ModelConfig:
    """Look up a preset by name; ValueError lists the known names."""
    try:
        return NAMED_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; known: {sorted(NAMED_CONFIGS)}") from None
