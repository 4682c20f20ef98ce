"""Block verification (Sun et al., ICLR'25, arXiv 2403.10444) along a chain of K sampled drafts
(transport/THEORY.md §5.1): the block is accepted jointly instead of token by token.

With p_0 = 1 and the drafted tokens x_1..x_K (B rows, vocabulary V):
    p_i = min(1, p_{i-1} · p(x_i|x_<i) / q(x_i|x_<i))                         i = 1..K
    Z_i = Σ_x (p_i p(x|x_≤i) − q(x|x_≤i))_+,   h_i = Z_i / (Z_i + 1 − p_i)  (i < K),   h_K = p_K
    n   = the LAST i with u_i < h_i (0 if none), u_i ~ U(0,1) independent
    emit x_1..x_n, then one token from norm((p_n p(·|x_≤n) − q(·|x_≤n))_+) (n < K) or from p(·|x_≤K) (n = K).
Lossless for any autoregressive draft law and never worse than token verification in expectation (Sun et al.,
Theorems 1–2; checked here by exact enumeration in tests/core/test_block.py). When h_i's denominator is 0 (p_i = 1
and p = q at x_≤i) p_{i+1} = 1 again, so a later index passes with certainty and the 0/0 convention (h = 1) never
changes n.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from specjax.sampling import sample_token
from specjax.verify.chain import _check_chain_inputs, emitted_tokens, residual_distribution


class BlockDecision(NamedTuple):
    """num_accepted `[B]` int32 and the law of the token emitted after them, `[B, V]` (possibly unnormalised)."""

    num_accepted: jax.Array
    final_law: jax.Array


def block_weights(draft_tokens: jax.Array, draft_probs: jax.Array, target_probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Sequence-level weights p_i `[B, K+1]` (p_0 = 1) and pass probabilities h_i `[B, K]` (i = 1..K).

    draft_tokens `[B, K]`, draft_probs `[B, K, V]`, target_probs `[B, K+1, V]`.
    """
    k = draft_tokens.shape[1]
    p_x = jnp.take_along_axis(target_probs[:, :k], draft_tokens[..., None], axis=-1)[..., 0]
    q_x = jnp.take_along_axis(draft_probs, draft_tokens[..., None], axis=-1)[..., 0]

    def step(w, xs):
        px, qx = xs
        # min(1, w p/q) written without dividing when it caps (q(x) > 0 for a drafted token; q = 0 caps at 1)
        nxt = jnp.where(w * px >= qx, jnp.ones_like(w), w * px / jnp.where(qx > 0, qx, 1.0))
        return nxt, nxt

    _, w = jax.lax.scan(step, jnp.ones(p_x.shape[:1], target_probs.dtype), (p_x.T, q_x.T))
    weights = jnp.concatenate([jnp.ones_like(p_x[:, :1]), w.T], axis=1)                       # [B, K+1]
    z = jnp.sum(jnp.maximum(weights[:, 1:k, None] * target_probs[:, 1:k] - draft_probs[:, 1:k], 0.0), -1)
    den = z + (1.0 - weights[:, 1:k])
    h = jnp.where(den > 0, z / jnp.where(den > 0, den, 1.0), 1.0)
    return weights, jnp.concatenate([h, weights[:, k:]], axis=1)


def block_decision(u: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array,
                   target_probs: jax.Array, num_drafted: jax.Array | None = None) -> BlockDecision:
    """The block rule with given uniforms u `[B, K]`: how many drafts pass and the law of the next token.
    num_drafted `[B]` (default K): row b's block is its first num_drafted[b] drafts (h = p at its last one)."""
    weights, h = block_weights(draft_tokens, draft_probs, target_probs)
    return decide_last_passing(u, weights, h, weights[:, 1:], draft_probs, target_probs, num_drafted)


def decide_last_passing(u: jax.Array, weights: jax.Array, h: jax.Array, whole_pass: jax.Array,
                        draft_probs: jax.Array, target_probs: jax.Array,
                        num_drafted: jax.Array | None = None) -> BlockDecision:
    """n = the LAST index i in 1..L with u_i < h_i (0 if none), where L = num_drafted `[B]` (default K) and index L
    passes with probability whole_pass[:, L-1] instead of h_L; then the law of the next token,
    norm((weights_n p_n − q_n)_+) or p_L. weights `[B, K+1]`, h and whole_pass `[B, K]`, draft_probs `[B, K, V]`,
    target_probs `[B, K+1, V]`. Block verification passes its own weights as whole_pass; HSD (specjax.verify.hsd)
    the uncapped joint ratio."""
    b, k = h.shape
    index = jnp.arange(1, k + 1, dtype=jnp.int32)
    num_drafted = jnp.full((b,), k) if num_drafted is None else num_drafted
    length = num_drafted[:, None]                    # a shorter block: its last index passes w.p. whole_pass, none after
    h = jnp.where(index[None, :] == length, whole_pass, jnp.where(index[None, :] > length, 0.0, h))
    n = jnp.max(jnp.where(u < h, index[None, :], 0), axis=1)                                 # the LAST index passing
    w_n = jnp.take_along_axis(weights, n[:, None], axis=1)
    p_n = jnp.take_along_axis(target_probs, n[:, None, None], axis=1)[:, 0]
    q_ext = jnp.concatenate([draft_probs, jnp.zeros_like(target_probs[:, :1])], axis=1)
    q_n = jnp.take_along_axis(q_ext, n[:, None, None], axis=1)[:, 0]
    q_n = jnp.where((n >= num_drafted)[:, None], 0.0, q_n)                                   # the whole block passed
    return BlockDecision(n.astype(jnp.int32), residual_distribution(w_n * p_n, q_n))


def accept_block(key: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array,
                 target_probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Verify K chained drafts per row with block verification; lossless w.r.t. `target_probs`.

    Same contract as `specjax.verify.accept_chain`: draft_tokens `[B, K]` int (sampled in order), draft_probs
    `[B, K, V]` (the law each draft was sampled from, after warps), target_probs `[B, K+1, V]`. Returns
    `num_accepted [B]` and `tokens [B, K+1]` (accepted drafts, one correction or bonus token, then PAD_TOKEN).
    With one-hot drafts (temperature 0) p_i never caps and this equals token verification.
    Raises ValueError (eagerly, on concrete inputs) for malformed shapes or probabilities.
    """
    _check_chain_inputs(draft_tokens, draft_probs, target_probs)
    return accept_block_unchecked(key, draft_tokens, draft_probs, target_probs)


@jax.jit
def accept_block_unchecked(key, draft_tokens, draft_probs, target_probs, num_drafted=None):
    """`accept_block` without input checks, for use inside jitted loops (same contract; num_drafted `[B]` as in
    `accept_chain_unchecked`)."""
    key_accept, key_residual = jax.random.split(key)
    u = jax.random.uniform(key_accept, draft_tokens.shape, target_probs.dtype)
    n, law = block_decision(u, draft_tokens, draft_probs, target_probs, num_drafted)
    return n, emitted_tokens(draft_tokens, n, sample_token(key_residual, law))
