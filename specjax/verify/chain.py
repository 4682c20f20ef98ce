"""The single-draft acceptance rule (Leviathan et al.; Chen et al.) applied along a chain of K drafts."""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from specjax.sampling import sample_token
from specjax.validation import check_key, check_probs, check_tokens, is_concrete

PAD_TOKEN = -1


def residual_distribution(p: jax.Array, q: jax.Array) -> jax.Array:
    """`norm((p - q)_+)` along the last axis; where p == q (no residual mass) it returns p, which is then never used
    by a correct caller (rejection has probability TV(p, q) = 0) but keeps the output a distribution."""
    res = jnp.maximum(p - q, 0.0)
    mass = jnp.sum(res, axis=-1, keepdims=True)
    return jnp.where(mass > 0, res / jnp.where(mass > 0, mass, 1.0), p)


def accept_chain(key: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array,
                 target_probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Verify K chained drafts per row with the single-draft rule; lossless w.r.t. `target_probs`.

    key: PRNG key. draft_tokens: `[B, K]` int, drafted in order. draft_probs: `[B, K, V]`, the law each draft was
    sampled from (after warps). target_probs: `[B, K+1, V]`, the warped target law at each draft position plus the
    bonus position. Returns `num_accepted [B]` and `tokens [B, K+1]`: `tokens[b, :n]` are the accepted drafts,
    `tokens[b, n]` the correction (from `norm((p_n - q_n)_+)`) or, if all K were accepted, the bonus token from
    `p_K`; later entries are `PAD_TOKEN` (-1). At temperature 0 (one-hot p and q) this accepts exactly while the
    draft equals the target argmax, and the correction is the argmax.
    Raises ValueError (eagerly, on concrete inputs) for malformed shapes or probabilities.
    """
    check_key("key", key)
    _check_chain_inputs(draft_tokens, draft_probs, target_probs)
    return accept_chain_unchecked(key, draft_tokens, draft_probs, target_probs)


class ChainDecision(NamedTuple):
    """num_accepted `[B]` int32 and the law of the token emitted after them, `[B, V]` (possibly unnormalised)."""

    num_accepted: jax.Array
    final_law: jax.Array


def chain_decision(u: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array, target_probs: jax.Array,
                   num_drafted: jax.Array | None = None) -> ChainDecision:
    """The token-by-token rule with given uniforms u `[B, K]`: accept draft i while u_i q(x_i) < p(x_i), then the
    correction law norm((p_n - q_n)_+), or p_n when every drafted token was accepted. num_drafted `[B]` (default
    K): row b drafted only its first num_drafted[b] slots; the others are absent."""
    b, k = draft_tokens.shape
    num_drafted = jnp.full((b,), k) if num_drafted is None else num_drafted
    p_x = jnp.take_along_axis(target_probs[:, :k], draft_tokens[..., None], axis=-1)[..., 0]
    q_x = jnp.take_along_axis(draft_probs, draft_tokens[..., None], axis=-1)[..., 0]
    drafted = jnp.arange(k)[None, :] < num_drafted[:, None]
    accepted = drafted & (u * q_x < p_x)                       # accept w.p. min(1, p/q) without dividing
    n = jnp.sum(jnp.cumprod(accepted.astype(jnp.int32), axis=1), axis=1)
    p_n = jnp.take_along_axis(target_probs, n[:, None, None], axis=1)[:, 0]
    q_ext = jnp.concatenate([draft_probs, jnp.zeros_like(target_probs[:, :1])], axis=1)
    q_n = jnp.take_along_axis(q_ext, n[:, None, None], axis=1)[:, 0]
    q_n = jnp.where((n >= num_drafted)[:, None], 0.0, q_n)    # every drafted token accepted: the bonus from p_n
    return ChainDecision(n.astype(jnp.int32), residual_distribution(p_n, q_n))


def emitted_tokens(draft_tokens: jax.Array, num_accepted: jax.Array, last: jax.Array) -> jax.Array:
    """`[B, K+1]`: the accepted drafts, then `last [B]`, then PAD_TOKEN (the chain rules' output layout)."""
    b, k = draft_tokens.shape
    slots = jnp.arange(k + 1)[None, :]
    ext = jnp.concatenate([draft_tokens, jnp.full((b, 1), PAD_TOKEN, draft_tokens.dtype)], axis=1)
    n = num_accepted[:, None]
    return jnp.where(slots < n, ext, jnp.where(slots == n, last[:, None], PAD_TOKEN)).astype(jnp.int32)


@jax.jit
def accept_chain_unchecked(key, draft_tokens, draft_probs, target_probs, num_drafted=None):
    """`accept_chain` without input checks, for use inside jitted loops (same contract; num_drafted `[B]` as in
    `chain_decision`)."""
    key_accept, key_residual = jax.random.split(key)
    u = jax.random.uniform(key_accept, draft_tokens.shape)
    n, law = chain_decision(u, draft_tokens, draft_probs, target_probs, num_drafted)
    return n, emitted_tokens(draft_tokens, n, sample_token(key_residual, law))


def _check_chain_inputs(draft_tokens, draft_probs, target_probs) -> None:
    if np.ndim(draft_tokens) != 2:
        raise ValueError(f"draft_tokens must be [B, K], got shape {np.shape(draft_tokens)}")
    b, k = np.shape(draft_tokens)
    if k < 1:
        raise ValueError("draft_tokens must hold at least one draft (K >= 1)")
    check_probs("draft_probs", draft_probs, ndim=3)
    check_probs("target_probs", target_probs, ndim=3)
    v = np.shape(draft_probs)[-1]
    if np.shape(draft_probs) != (b, k, v):
        raise ValueError(f"draft_probs must be [B, K, V] = [{b}, {k}, V], got {np.shape(draft_probs)}")
    if np.shape(target_probs) != (b, k + 1, v):
        raise ValueError(f"target_probs must be [B, K+1, V] = [{b}, {k + 1}, {v}] (same vocabulary as the draft), "
                         f"got {np.shape(target_probs)}")
    check_tokens("draft_tokens", draft_tokens, v)
    if is_concrete(draft_tokens) and is_concrete(draft_probs):
        q_x = np.take_along_axis(np.asarray(draft_probs), np.asarray(draft_tokens)[..., None], axis=-1)
        if np.any(q_x <= 0):
            raise ValueError("a drafted token has zero probability under draft_probs: draft_probs must be the law "
                             "the drafts were sampled from")
