"""A Llama-family decoder-only LM in flax.nnx: RMSNorm, rotary embeddings at explicit positions, grouped-query
attention over a slot-addressed KV cache, SwiGLU, tied or untied head.

The forward is pure in the cache: `(tokens, positions, cache, slots, mask) -> (logits, hidden, cache')`, so a
single call can prefill a prompt, score a chain of candidates, or score a whole draft tree (ancestor mask + depth
positions). Hot loops drive it through a runner (`specjax.runners.ModelRunner`), which `nnx.split`s the model once
and merges it inside `jax.jit`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from specjax.block import causal_mask
from specjax.cache import KVCache, write_slots
from specjax.config import ModelConfig


class RMSNorm(nnx.Module):
    def __init__(self, dim: int, eps: float):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        var = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=-1, keepdims=True)
        return (x * jax.lax.rsqrt(var + self.eps)) * self.scale[...]


def apply_rope(x: jax.Array, positions: jax.Array, theta: float) -> jax.Array:
    """Rotary embedding, Hugging Face `rotate_half` layout. x: `[B, T, H, D]`; positions: `[B, T]` int."""
    d = x.shape[-1]
    inv_freq = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))           # [D/2]
    angles = positions.astype(jnp.float32)[..., None] * inv_freq                          # [B, T, D/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def _linear(rngs: nnx.Rngs, d_in: int, d_out: int, std: float, bias: bool = False) -> nnx.Linear:
    return nnx.Linear(d_in, d_out, use_bias=bias, kernel_init=nnx.initializers.normal(std), rngs=rngs)


class Attention(nnx.Module):
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        c, hd, std = config, config.dim_per_head, config.init_std
        self.q_proj = _linear(rngs, c.d_model, c.n_heads * hd, std, c.attention_bias)
        self.k_proj = _linear(rngs, c.d_model, c.n_kv_heads * hd, std, c.attention_bias)
        self.v_proj = _linear(rngs, c.d_model, c.n_kv_heads * hd, std, c.attention_bias)
        self.o_proj = _linear(rngs, c.n_heads * hd, c.d_model, std)
        self.config = config

    def __call__(self, x, positions, cache_k, cache_v, slots, mask):
        """x `[B,T,D]`; cache_k/v `[B,S,Hkv,Dh]` or None; slots `[B,T]` (write slots); mask `[B,T,S]` (or
        `[B,T,T]` without cache)."""
        c = self.config
        b, t, _ = x.shape
        hd, g = c.dim_per_head, c.n_heads // c.n_kv_heads
        q = apply_rope(self.q_proj(x).reshape(b, t, c.n_heads, hd), positions, c.rope_theta)
        k = apply_rope(self.k_proj(x).reshape(b, t, c.n_kv_heads, hd), positions, c.rope_theta)
        v = self.v_proj(x).reshape(b, t, c.n_kv_heads, hd)
        if cache_k is not None:
            cache_k, cache_v = write_slots(cache_k, k, slots), write_slots(cache_v, v, slots)
            k, v = cache_k, cache_v
        q = q.reshape(b, t, c.n_kv_heads, g, hd)
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k) * (hd ** -0.5)
        scores = jnp.where(mask[:, None, None, :, :], scores.astype(jnp.float32), -1e30)
        weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
        out = jnp.einsum("bkgts,bskd->btkgd", weights, v).reshape(b, t, c.n_heads * hd)
        return self.o_proj(out), cache_k, cache_v


class MLP(nnx.Module):
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        std = config.init_std
        self.gate_proj = _linear(rngs, config.d_model, config.d_ff, std)
        self.up_proj = _linear(rngs, config.d_model, config.d_ff, std)
        self.down_proj = _linear(rngs, config.d_ff, config.d_model, std)

    def __call__(self, x):
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(config.d_model, config.rms_eps)
        self.attn = Attention(config, rngs)
        self.mlp_norm = RMSNorm(config.d_model, config.rms_eps)
        self.mlp = MLP(config, rngs)

    def __call__(self, x, positions, cache_k, cache_v, slots, mask):
        h, cache_k, cache_v = self.attn(self.attn_norm(x), positions, cache_k, cache_v, slots, mask)
        x = x + h
        return x + self.mlp(self.mlp_norm(x)), cache_k, cache_v


class LlamaLM(nnx.Module):
    """Decoder-only LM. Parameter paths follow Hugging Face names (embed, layers[i].attn.q_proj, ..., final_norm,
    lm_head) so checkpoint importers can map them one to one."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed = nnx.Embed(config.vocab_size, config.d_model,
                               embedding_init=nnx.initializers.normal(config.init_std), rngs=rngs)
        self.layers = nnx.List([DecoderLayer(config, rngs) for _ in range(config.n_layers)])
        self.final_norm = RMSNorm(config.d_model, config.rms_eps)
        self.lm_head = None if config.tie_embeddings else _linear(rngs, config.d_model, config.vocab_size,
                                                                  config.init_std)

    def head(self, hidden: jax.Array) -> jax.Array:
        """Logits `[..., V]` from final-normed hidden states `[..., D]`."""
        return self.embed.attend(hidden) if self.lm_head is None else self.lm_head(hidden)

    def __call__(self, tokens: jax.Array, positions: jax.Array, cache: KVCache | None = None, *,
                 slots: jax.Array | None = None, mask: jax.Array | None = None,
                 num_layers: int | None = None) -> tuple[jax.Array, jax.Array, KVCache | None]:
        """Score `T` new tokens per row.

        tokens, positions: `[B, T]` int. Without a cache: attention among the T tokens only (training, parity),
        mask `[B, T, T]` bool (default causal). With a cache (at least `num_layers` layers): slots `[B, T]` where
        the new keys/values are written, mask `[B, T, S]` bool, which cache slots each query sees after the write
        (see `specjax.block.Block.cache_mask`). num_layers: run only the first L layers, then the final norm and
        head (early-exit drafting). Returns logits `[B, T, V]` float32, final-normed hidden states `[B, T, D]`, and
        the updated cache.
        """
        b, t = tokens.shape
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        if cache is None:
            mask = causal_mask(b, t) if mask is None else mask
            keys, values = [None] * len(layers), [None] * len(layers)
        else:
            if cache.num_layers < len(layers):
                raise ValueError(f"cache has {cache.num_layers} layers, the forward needs {len(layers)}")
            if slots is None or mask is None:
                raise ValueError("a cached forward needs write slots [B, T] and a cache mask [B, T, S]")
            keys, values = list(cache.keys), list(cache.values)
        x = self.embed(tokens)
        for i, layer in enumerate(layers):
            x, keys[i], values[i] = layer(x, positions, keys[i], values[i], slots, mask)
        hidden = self.final_norm(x)
        logits = self.head(hidden).astype(jnp.float32)
        if cache is not None:
            cache = KVCache(keys=tuple(keys) + cache.keys[len(layers):], values=tuple(values) + cache.values[len(layers):])
        return logits, hidden, cache


def init_model(config: ModelConfig, seed: int = 0) -> LlamaLM:
    """Randomly initialised model (explicit seed)."""
    return LlamaLM(config, rngs=nnx.Rngs(seed))
