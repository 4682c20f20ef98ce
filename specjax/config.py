"""Model configuration: a frozen dataclass (hashable, so it can be a static jit argument) and named presets."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a Llama-family decoder-only LM (Llama, Qwen2, SmolLM2 all fit).

    `attention_bias` is True for Qwen2 (biases on q/k/v); `tie_embeddings` shares the input embedding with the head.
    `init_std` only matters for random initialisation (tests use larger values to get peaked distributions).
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    tie_embeddings: bool = True
    attention_bias: bool = False
    init_std: float = 0.02

    def __post_init__(self) -> None:
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

    @property
    def dim_per_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.n_heads

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


# Random-weight presets for tests, the CLI and benchmarks until trained pairs exist. Pairs share a vocabulary.
NAMED_CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=64, init_std=0.3),
    "tiny-draft": ModelConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32, init_std=0.3),
    "byte-small": ModelConfig(vocab_size=259, d_model=256, n_layers=8, n_heads=8, n_kv_heads=4, d_ff=768),
    "byte-small-draft": ModelConfig(vocab_size=259, d_model=128, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=384),
}


def named_config(name: str) -> ModelConfig:
    """Look up a preset by name; ValueError lists the known names."""
    try:
        return NAMED_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model config {name!r}; known: {sorted(NAMED_CONFIGS)}") from None
