"""Sampling warps: logits -> probability vectors. The verifier is lossless with respect to the *warped* target."""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class SamplingConfig:
    """temperature 0 = greedy (one-hot argmax, ties to the smallest id); top_k 0 = off; top_p 1 = off."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {t!r}")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise ValueError(f"top_k must be an integer >= 0 (0 = off), got {self.top_k!r}")
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p!r}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = SamplingConfig(temperature=0.0)


def warp_logits(logits: jax.Array, sampling: SamplingConfig) -> jax.Array:
    """Probabilities `[..., V]` (float32) after temperature, top-k and top-p; greedy gives exact one-hots."""
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    if sampling.greedy:
        return jax.nn.one_hot(jnp.argmax(logits, axis=-1), vocab, dtype=jnp.float32)
    x = logits / sampling.temperature
    if 0 < sampling.top_k < vocab:
        kth = jax.lax.top_k(x, sampling.top_k)[0][..., -1:]
        x = jnp.where(x < kth, -jnp.inf, x)
    if sampling.top_p < 1.0:
        probs = jax.nn.softmax(x, axis=-1)
        sorted_probs = -jnp.sort(-probs, axis=-1)
        mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
        # smallest prefix (in descending order) whose mass reaches top_p; its last probability is the cut-off
        cutoff = jnp.min(jnp.where(mass_before < sampling.top_p, sorted_probs, jnp.inf), axis=-1, keepdims=True)
        x = jnp.where(probs < cutoff, -jnp.inf, x)
    return jax.nn.softmax(x, axis=-1)


def safe_log(probs: jax.Array) -> jax.Array:
    """log(probs) with exact -inf at zeros (no NaN gradients through the masked branch)."""
    return jnp.where(probs > 0, jnp.log(jnp.where(probs > 0, probs, 1.0)), -jnp.inf)


def law_statistics(q: jax.Array) -> jax.Array:
    """`[..., 2]`: the log of the top probability and the entropy of each law `q [..., V]` (how confident a drafter
    is, as draft-length policies and acceptance heads read it)."""
    top = jnp.max(q, axis=-1)
    entropy = -jnp.sum(jnp.where(q > 0, q * safe_log(q), 0.0), axis=-1)
    return jnp.stack([jnp.log(jnp.maximum(top, 1e-30)), entropy], axis=-1)


SAMPLE_BLOCK = 256          # tokens per block of the two-stage sampler


def sample_token(key: jax.Array, probs: jax.Array) -> jax.Array:
    """One token per row from `probs[..., V]` (int32 `[...]`); zero-probability tokens are never drawn.

    Two-stage Gumbel-max: a block of SAMPLE_BLOCK consecutive tokens by its mass, then a token inside it by its
    probability. P(block) · P(token | block) = p(token), so the law is exact (up to the float32 block sums), and a
    draw costs about 2·sqrt(V)-sized random vectors instead of V: at V = 49,152 one row is ~10x faster on a CPU
    than a Gumbel over the whole vocabulary (threefry dominates there).
    """
    v = probs.shape[-1]
    if v <= 2 * SAMPLE_BLOCK:
        return jax.random.categorical(key, safe_log(probs), axis=-1).astype(jnp.int32)
    num_blocks = -(-v // SAMPLE_BLOCK)
    pad = [(0, 0)] * (probs.ndim - 1) + [(0, num_blocks * SAMPLE_BLOCK - v)]
    blocks = jnp.pad(probs, pad).reshape(probs.shape[:-1] + (num_blocks, SAMPLE_BLOCK))
    key_block, key_token = jax.random.split(key)
    block = jax.random.categorical(key_block, safe_log(jnp.sum(blocks, axis=-1)), axis=-1)
    inner = jnp.take_along_axis(blocks, block[..., None, None], axis=-2)[..., 0, :]
    token = block * SAMPLE_BLOCK + jax.random.categorical(key_token, safe_log(inner), axis=-1)
    return token.astype(jnp.int32)
