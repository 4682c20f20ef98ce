"""One decoder-only LM in flax.nnx for every family we load (Llama 2/3.x, Qwen2/2.5, Qwen3, SmolLM2, Gemma 3).

RMSNorm (optionally also on each head's query/key and on the sublayer outputs), rotary embeddings at explicit
positions (optionally scaled, with their own base on local layers), grouped-query attention over a slot-addressed
KV cache (full or sliding-window per layer, optionally soft-capped), a gated MLP (SiLU or tanh-GELU), tied or untied
head. Which of these a model uses is its `ModelConfig`: a family is a configuration, not a modeling file.

The forward is pure in the cache: `(tokens, positions, cache, slots, mask) -> (logits, hidden, cache')`, so a
single call can prefill a prompt, score a chain of candidates, or score a whole draft tree (ancestor mask + depth
positions). Hot loops drive it through a runner (`specjax.runners.model.ModelRunner`), which `nnx.split`s the model once
and merges it inside `jax.jit`.

Every parameter is declared once, with its logical axes as metadata (`AXES`: vocab, embed, heads, kv_heads, mlp,
head_dim); `specjax.parallel.sharding` maps them onto a mesh and the memory planner reads them. Numerics: weights and
activations in `config.dtype`; norm statistics, attention scores and softmax, the head's accumulation and the
logits in float32.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from specjax.model.block import causal_mask
from specjax.model import attention
from specjax.model.cache import KVCache, write_slots
from specjax.model.config import ModelConfig, RopeScaling

AXES = "axes"            # Variable metadata key: the logical axes of a parameter, one name per dimension


class RMSNorm(nnx.Module):
    """RMSNorm with a float32 scale whatever the model dtype (D floats: no memory to save, and a Gemma checkpoint's
    1 + w is kept exactly). `axis` names the normalised dimension's logical axis."""

    def __init__(self, dim: int, eps: float, axis: str = "embed"):
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32), **{AXES: (axis,)})
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        return (x32 * jax.lax.rsqrt(var + self.eps) * self.scale[...]).astype(x.dtype)


def rope_frequencies(head_dim: int, theta: float, scaling: RopeScaling | None = None) -> jax.Array:
    """Inverse rotary frequencies `[head_dim / 2]` float32, scaled as Hugging Face's `linear` / `llama3` rope
    types do."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    if scaling is None:
        return inv_freq
    if scaling.kind == "linear":
        return inv_freq / scaling.factor
    # llama3: long wavelengths slowed by `factor`, short ones kept, a linear blend in 1/wavelength between
    low_wavelen = scaling.original_max_position / scaling.low_freq_factor
    high_wavelen = scaling.original_max_position / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_max_position / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor)
    blended = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(medium, blended, scaled)


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotary embedding, Hugging Face `rotate_half` layout. x: `[B, T, H, Dh]`; positions: `[B, T]` int;
    inv_freq `[Dh / 2]` (`rope_frequencies`)."""
    d = x.shape[-1]
    angles = positions.astype(jnp.float32)[..., None] * inv_freq                          # [B, T, Dh/2]
    cos = jnp.cos(angles)[:, :, None, :]
    sin = jnp.sin(angles)[:, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def _linear(rngs: nnx.Rngs, config: ModelConfig, d_in: int, d_out: int, axes: tuple[str, str],
            bias: bool = False) -> nnx.Linear:
    dtype = jnp.dtype(config.dtype)
    return nnx.Linear(d_in, d_out, use_bias=bias, dtype=dtype, param_dtype=dtype,
                      kernel_init=nnx.initializers.normal(config.init_std), kernel_metadata={AXES: axes},
                      bias_metadata={AXES: axes[1:]}, rngs=rngs)


class Attention(nnx.Module):
    """Grouped-query attention; q/k/v column-parallel (split by heads), o row-parallel (see `specjax.parallel.sharding`)."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs, sliding: bool = False):
        c, hd = config, config.dim_per_head
        self.q_proj = _linear(rngs, c, c.d_model, c.n_heads * hd, ("embed", "heads"), c.attention_bias)
        self.k_proj = _linear(rngs, c, c.d_model, c.n_kv_heads * hd, ("embed", "kv_heads"), c.attention_bias)
        self.v_proj = _linear(rngs, c, c.d_model, c.n_kv_heads * hd, ("embed", "kv_heads"), c.attention_bias)
        self.o_proj = _linear(rngs, c, c.n_heads * hd, c.d_model, ("heads", "embed"))
        self.q_norm = RMSNorm(hd, c.rms_eps, "head_dim") if c.qk_norm else None
        self.k_norm = RMSNorm(hd, c.rms_eps, "head_dim") if c.qk_norm else None
        self.config = config
        self.sliding = sliding

    def __call__(self, x, positions, cache_k, cache_v, slots, mask):
        """x `[B,T,D]`; cache_k/v `[B,S,Hkv,Dh]` or None; slots `[B,T]` (write slots); mask `[B,T,S]` (or
        `[B,T,T]` without cache), already restricted to the sliding window on a local layer."""
        c = self.config
        b, t, _ = x.shape
        hd, g = c.dim_per_head, c.n_heads // c.n_kv_heads
        with jax.named_scope("qkv"):
            q = self.q_proj(x).reshape(b, t, c.n_heads, hd)
            k = self.k_proj(x).reshape(b, t, c.n_kv_heads, hd)
            v = self.v_proj(x).reshape(b, t, c.n_kv_heads, hd)
            if self.q_norm is not None:
                q, k = self.q_norm(q), self.k_norm(k)
        with jax.named_scope("rope"):
            if self.sliding:
                inv_freq = rope_frequencies(hd, c.rope_local_theta or c.rope_theta)
            else:
                inv_freq = rope_frequencies(hd, c.rope_theta, c.rope_scaling)
            q, k = apply_rope(q, positions, inv_freq), apply_rope(k, positions, inv_freq)
        if cache_k is not None:
            with jax.named_scope("cache_write"):
                cache_k, cache_v = write_slots(cache_k, k, slots), write_slots(cache_v, v, slots)
            k, v = cache_k, cache_v
        with jax.named_scope("attend"):
            q = q.reshape(b, t, c.n_kv_heads, g, hd)
            scale = c.attention_scale if c.attention_scale is not None else hd ** -0.5
            if cache_k is not None and k.shape[1] >= attention.CHUNKED_FROM:
                out, cache_k, cache_v = attention.attend_by_chunks(q, k, v, mask, scale, c.attn_softcap)
            else:
                out = attention.attend(q, k, v, mask, scale, c.attn_softcap)
            out = out.reshape(b, t, c.n_heads * hd)
        with jax.named_scope("o_proj"):
            return self.o_proj(out), cache_k, cache_v


class MLP(nnx.Module):
    """Gated MLP: gate/up column-parallel, down row-parallel."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs):
        self.gate_proj = _linear(rngs, config, config.d_model, config.d_ff, ("embed", "mlp"))
        self.up_proj = _linear(rngs, config, config.d_model, config.d_ff, ("embed", "mlp"))
        self.down_proj = _linear(rngs, config, config.d_ff, config.d_model, ("mlp", "embed"))
        self.activation = config.activation

    def __call__(self, x):
        gate = self.gate_proj(x)
        gate = jax.nn.silu(gate) if self.activation == "silu" else jax.nn.gelu(gate, approximate=True)
        return self.down_proj(gate * self.up_proj(x))


class DecoderLayer(nnx.Module):
    """Pre-norm attention and MLP, each optionally followed by a post-norm (`config.post_norms`)."""

    def __init__(self, config: ModelConfig, rngs: nnx.Rngs, sliding: bool = False):
        d, eps = config.d_model, config.rms_eps
        self.attn_norm = RMSNorm(d, eps)
        self.attn = Attention(config, rngs, sliding)
        self.attn_post_norm = RMSNorm(d, eps) if config.post_norms else None
        self.mlp_norm = RMSNorm(d, eps)
        self.mlp = MLP(config, rngs)
        self.mlp_post_norm = RMSNorm(d, eps) if config.post_norms else None
        self.sliding = sliding

    def __call__(self, x, positions, cache_k, cache_v, slots, mask):
        with jax.named_scope("attn"):
            h, cache_k, cache_v = self.attn(self.attn_norm(x), positions, cache_k, cache_v, slots, mask)
            if self.attn_post_norm is not None:
                h = self.attn_post_norm(h)
            x = x + h
        with jax.named_scope("mlp"):
            h = self.mlp(self.mlp_norm(x))
            if self.mlp_post_norm is not None:
                h = self.mlp_post_norm(h)
            return x + h, cache_k, cache_v


class LlamaLM(nnx.Module):
    """Decoder-only LM. Parameter paths follow Hugging Face names (embed, layers[i].attn.q_proj, ..., final_norm,
    lm_head) so checkpoint importers can map them one to one."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype = jnp.dtype(config.dtype)
        self.embed = nnx.Embed(config.vocab_size, config.d_model, dtype=dtype, param_dtype=dtype,
                               embedding_init=nnx.initializers.normal(config.init_std),
                               embedding_metadata={AXES: ("vocab", "embed")}, rngs=rngs)
        self.layers = nnx.List([DecoderLayer(config, rngs, config.is_sliding(i)) for i in range(config.n_layers)])
        self.final_norm = RMSNorm(config.d_model, config.rms_eps)
        self.lm_head = (None if config.tie_embeddings else
                        _linear(rngs, config, config.d_model, config.vocab_size, ("embed", "vocab")))

    def head(self, hidden: jax.Array) -> jax.Array:
        """Logits `[..., V]` float32 (accumulated in float32, soft-capped if the config says) from final-normed
        hidden states `[..., D]`."""
        if self.lm_head is None:
            logits = jnp.einsum("...d,vd->...v", hidden, self.embed.embedding[...], preferred_element_type=jnp.float32)
        else:
            logits = jnp.einsum("...d,dv->...v", hidden, self.lm_head.kernel[...], preferred_element_type=jnp.float32)
        return attention.softcap(logits.astype(jnp.float32), self.config.logit_softcap)

    def __call__(self, tokens: jax.Array, positions: jax.Array, cache: KVCache | None = None, *,
                 slots: jax.Array | None = None, mask: jax.Array | None = None,
                 num_layers: int | None = None) -> tuple[jax.Array, jax.Array, KVCache | None]:
        """Score `T` new tokens per row.

        tokens, positions: `[B, T]` int. Without a cache: attention among the T tokens only (training, parity),
        mask `[B, T, T]` bool (default causal). With a cache (at least `num_layers` layers): slots `[B, T]` where
        the new keys/values are written, mask `[B, T, S]` bool, which cache slots each query sees after the write
        (see `specjax.model.block.Block.cache_mask`); local layers further restrict it to keys whose position is within
        the sliding window (the cache records each slot's position). num_layers: run only the first L layers, then
        the final norm and head (early-exit drafting). Returns logits `[B, T, V]` float32, final-normed hidden
        states `[B, T, D]`, and the updated cache.
        """
        hidden, cache, _ = self.trunk(tokens, positions, cache, slots=slots, mask=mask, num_layers=num_layers)
        with jax.named_scope("head"):
            return self.head(hidden), hidden, cache

    def trunk(self, tokens: jax.Array, positions: jax.Array, cache: KVCache | None = None, *,
              slots: jax.Array | None = None, mask: jax.Array | None = None, num_layers: int | None = None,
              exits: tuple[int, ...] = ()) -> tuple[jax.Array, KVCache | None, jax.Array | None]:
        """`__call__` without the head, also returning the final-normed hidden states after the first E layers for
        each E in `exits` (what the early exit at E would feed its head, read off this one pass): `[B, T, C, D]`
        (C = len(exits)), or None without exits. Returns (hidden `[B, T, D]`, cache, exit hidden)."""
        c = self.config
        b, t = tokens.shape
        layers = self.layers if num_layers is None else self.layers[:num_layers]
        if cache is None:
            mask = causal_mask(b, t) if mask is None else mask
            keys, values = [None] * len(layers), [None] * len(layers)
            key_positions = positions
        else:
            if cache.num_layers < len(layers):
                raise ValueError(f"cache has {cache.num_layers} layers, the forward needs {len(layers)}")
            if slots is None or mask is None:
                raise ValueError("a cached forward needs write slots [B, T] and a cache mask [B, T, S]")
            keys, values = list(cache.keys[:len(layers)]), list(cache.values[:len(layers)])
            if cache.positions is not None:
                cache = cache.replace(positions=write_slots(cache.positions, positions, slots))
            key_positions = cache.positions
        local_mask = None
        if any(layer.sliding for layer in layers):
            if key_positions is None:
                raise ValueError("sliding-window layers need a cache that records positions (init_cache(config))")
            local_mask = mask & (key_positions[:, None, :] > positions[:, :, None] - c.sliding_window)
        with jax.named_scope("embed"):
            x = self.embed(tokens)
            if c.embed_scale != 1.0:
                x = x * jnp.asarray(c.embed_scale, x.dtype)
        exit_hidden = []
        for i, layer in enumerate(layers):
            x, keys[i], values[i] = layer(x, positions, keys[i], values[i], slots,
                                          local_mask if layer.sliding else mask)
            if i + 1 in exits:
                exit_hidden.append(self.final_norm(x))
        if cache is not None:
            n = len(layers)
            cache = cache.replace(keys=tuple(keys) + cache.keys[n:], values=tuple(values) + cache.values[n:])
        return self.final_norm(x), cache, jnp.stack(exit_hidden, axis=2) if exits else None


def init_model(config: ModelConfig, seed: int = 0) -> LlamaLM:
    """Randomly initialised model (explicit seed), parameters in `config.dtype` (norm scales float32)."""
    return LlamaLM(config, rngs=nnx.Rngs(seed))
