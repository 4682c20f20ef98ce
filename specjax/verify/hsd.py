"""Hierarchical speculative decoding (HSD; Zhou et al., arXiv 2601.05724), the single-draft chain rule as its authors
publish it ("clever" variant): **lossy**, kept to measure it (transport/THEORY.md §5.5).

With P_i = Π_{j≤i} p(x_j|x_<j) and Q_i likewise (the joint laws of the drafted prefix), HSD caps the target's prefix
mass by the running maximum of the joint ratio, P̃_i = P_i / max(1, max_{j≤i} P_j/Q_j), and at every position i < K
"steps back" with probability 1 − Σ_x (P̃_i p(x|x_≤i) − Q_i q(x|x_≤i))_+ / max(Σ(·)_+, Σ(·)_−). Dividing by Q_i
shows P̃_i/Q_i is exactly block verification's weight p_i and the step-back probability exactly block's 1 − h_i:
HSD and block verification differ only in how the whole draft passes, min(1, P_K/Q_K) here against p_K there. The
uncapped joint ratio passes drafts whose prefix ratio rose above max(1, P_K/Q_K) and fell again more often than
their target mass allows, so HSD accepts more than block verification and emits a law that is not the target's.
Replacing min(1, P_K/Q_K) by p_K gives block verification back.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from specjax.sampling import sample_token
from specjax.verify.block import BlockDecision, block_weights, decide_last_passing
from specjax.verify.chain import _check_chain_inputs, emitted_tokens


def joint_pass(draft_tokens: jax.Array, draft_probs: jax.Array, target_probs: jax.Array) -> jax.Array:
    """min(1, P_i/Q_i) `[B, K]` for i = 1..K: the probability that HSD passes a whole draft of length i, from the
    uncapped joint ratio (summed in logs: a long product of ratios under- or overflows float32)."""
    k = draft_tokens.shape[1]
    p_x = jnp.take_along_axis(target_probs[:, :k], draft_tokens[..., None], axis=-1)[..., 0]
    q_x = jnp.take_along_axis(draft_probs, draft_tokens[..., None], axis=-1)[..., 0]
    log_ratio = jnp.cumsum(jnp.log(p_x) - jnp.log(q_x), axis=1)          # p_x = 0 gives -inf: never passes
    return jnp.exp(jnp.minimum(log_ratio, 0.0))


def hsd_decision(u: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array, target_probs: jax.Array,
                 num_drafted: jax.Array | None = None) -> BlockDecision:
    """HSD with given uniforms u `[B, K]`: num_accepted `[B]` and the law of the next token `[B, V]`. Shapes and
    num_drafted as in `specjax.verify.block.block_decision`."""
    weights, h = block_weights(draft_tokens, draft_probs, target_probs)
    return decide_last_passing(u, weights, h, joint_pass(draft_tokens, draft_probs, target_probs), draft_probs,
                               target_probs, num_drafted)


def accept_hsd(key: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array,
               target_probs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Verify K chained drafts per row with HSD (lossy: see the module doc). Same contract as
    `specjax.verify.accept_block`: draft_tokens `[B, K]`, draft_probs `[B, K, V]`, target_probs `[B, K+1, V]`;
    returns num_accepted `[B]` and tokens `[B, K+1]`. At temperature 0 (one-hot laws) every joint ratio is 0 or 1
    and HSD equals token and block verification. ValueError (eagerly, on concrete inputs) for malformed inputs."""
    _check_chain_inputs(draft_tokens, draft_probs, target_probs)
    return accept_hsd_unchecked(key, draft_tokens, draft_probs, target_probs)


@jax.jit
def accept_hsd_unchecked(key, draft_tokens, draft_probs, target_probs, num_drafted=None):
    """`accept_hsd` without input checks, for use inside jitted loops (num_drafted `[B]` as in block verification)."""
    key_accept, key_residual = jax.random.split(key)
    u = jax.random.uniform(key_accept, draft_tokens.shape, target_probs.dtype)
    n, law = hsd_decision(u, draft_tokens, draft_probs, target_probs, num_drafted)
    return n, emitted_tokens(draft_tokens, n, sample_token(key_residual, law))
