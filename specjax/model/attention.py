"""Softmax attention of grouped queries over a slot-addressed cache, under a visibility mask: over every slot
(`attend`), or chunk by chunk only as far as the last visible slot (`attend_by_chunks`), which the decoder uses for
long caches so that a cache preallocated for a long generation costs each step in proportion to its filled part.
Axes as in `specjax.model.block`: B rows, T queries, S cache slots; Hkv key/value heads, G query heads per KV head,
Dh head width."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
    """cap * tanh(x / cap) (Gemma 2's soft capping), or x when cap is None."""
    return x if cap is None else cap * jnp.tanh(x / cap)


CHUNKED_FROM = 1024     # caches of at least this many slots are attended chunk by chunk, only as far as filled
ATTENTION_CHUNK = 256   # slots per chunk


def attend(q, k, v, mask, scale, cap):
    """Softmax attention of q `[B, T, Hkv, G, Dh]` over every slot of k, v `[B, S, Hkv, Dh]` under mask `[B, T, S]`:
    `[B, T, Hkv, G, Dh]`."""
    scores = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, None, None, :, :], softcap(scores, cap), -1e30)
    weights = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgts,bskd->btkgd", weights, v)


def attend_by_chunks(q, k, v, mask, scale, cap):
    """`attend` over only the chunks of ATTENTION_CHUNK slots up to the last slot any query sees (online softmax,
    a `lax.while_loop` whose trip count is read off the mask): a cache preallocated for a long generation costs each
    step in proportion to the part filled so far, not to its capacity. The slots past the last whole chunk (fewer
    than a chunk) are attended every time. Equal to `attend` up to float reassociation. Returns (out, k, v): k and v
    pass through the loop unchanged, and the caller keeps the returned ones as its cache (a loop operand that is
    still used after the loop would otherwise be copied whole, a cost in proportion to the capacity again)."""
    b, t, hkv, g, _ = q.shape
    s = k.shape[1]
    full = s // ATTENTION_CHUNK
    seen = jnp.max(jnp.where(mask, jnp.arange(1, s + 1, dtype=jnp.int32), 0))          # last visible slot + 1
    chunks = jnp.minimum((seen + ATTENTION_CHUNK - 1) // ATTENTION_CHUNK, full)

    def fold(carry, k_c, v_c, mask_c):
        """One chunk folded into the running (max, sum, weighted values) of every query."""
        top, total, acc = carry
        scores = jnp.einsum("btkgd,bskd->bkgts", q, k_c, preferred_element_type=jnp.float32) * scale
        scores = softcap(scores, cap)
        visible = mask_c[:, None, None, :, :]
        new_top = jnp.maximum(top, jnp.max(jnp.where(visible, scores, -jnp.inf), axis=-1))
        safe_top = jnp.where(jnp.isfinite(new_top), new_top, 0.0)            # no visible slot yet: nothing to add
        weights = jnp.where(visible, jnp.exp(scores - safe_top[..., None]), 0.0)
        decay = jnp.where(jnp.isfinite(top), jnp.exp(top - safe_top), 0.0)
        part = jnp.einsum("bkgts,bskd->bkgtd", weights.astype(v_c.dtype), v_c, preferred_element_type=jnp.float32)
        return new_top, total * decay + jnp.sum(weights, axis=-1), acc * decay[..., None] + part

    def body(state):
        i, carry, k, v = state
        start = i * ATTENTION_CHUNK
        take = lambda x, axis: jax.lax.dynamic_slice_in_dim(x, start, ATTENTION_CHUNK, axis=axis)
        return i + 1, fold(carry, take(k, 1), take(v, 1), take(mask, 2)), k, v

    init = (jnp.full((b, hkv, g, t), -jnp.inf, jnp.float32), jnp.zeros((b, hkv, g, t), jnp.float32),
            jnp.zeros((b, hkv, g, t, q.shape[-1]), jnp.float32))
    _, carry, k, v = jax.lax.while_loop(lambda state: state[0] < chunks, body, (jnp.int32(0), init, k, v))
    tail = full * ATTENTION_CHUNK
    if tail < s:
        carry = fold(carry, k[:, tail:], v[:, tail:], mask[:, :, tail:])
    _, total, acc = carry
    out = acc / jnp.maximum(total, 1e-30)[..., None]                       # [B, Hkv, G, T, Dh]
    return jnp.transpose(out, (0, 3, 1, 2, 4)).astype(v.dtype), k, v
