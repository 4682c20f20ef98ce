"""Lossy chain rules in the decode loop (their formulas: `specjax.verify.lossy_rules`): typical acceptance, fuzzy
speculative decoding, EARS, top-M leniency and FLy. A speculator runs one only when built with allow_lossy
(`specjax.verify.names.check_chain_verifier`); the audit measures what each costs (transport/THEORY.md §5.6)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from specjax.sampling import sample_token
from specjax.verify.chain import emitted_tokens, residual_distribution
from specjax.verify.lossy_rules import FALLBACK_TARGET, loosen, pass_probability
from specjax.verify.names import LossyRule, parse_lossy


def lossy_decision(rule: LossyRule, u: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array,
                   target_probs: jax.Array, num_drafted: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """num_accepted `[B]` and the law `[B, V]` of the token emitted after them, for uniforms u `[B, K]`,
    draft_tokens `[B, K]`, draft_probs `[B, K, V]`, target_probs `[B, K+1, V]`, num_drafted `[B]` (default K)."""
    b, k = draft_tokens.shape
    num_drafted = jnp.full((b,), k) if num_drafted is None else num_drafted
    a = pass_probability(rule, target_probs[:, :k], draft_probs, draft_tokens, jnp)
    passed = loosen(rule, u < a, target_probs[:, :k], num_drafted, jnp)
    n = jnp.sum(jnp.cumprod(passed.astype(jnp.int32), axis=1), axis=1)
    p_n = jnp.take_along_axis(target_probs, n[:, None, None], axis=1)[:, 0]
    q_ext = jnp.concatenate([draft_probs, jnp.zeros_like(target_probs[:, :1])], axis=1)
    q_n = jnp.take_along_axis(q_ext, n[:, None, None], axis=1)[:, 0]
    fallback_p = (n >= num_drafted) | (rule.name in FALLBACK_TARGET)    # the bonus, or a rule that falls back to p
    return n.astype(jnp.int32), residual_distribution(p_n, jnp.where(fallback_p[:, None], 0.0, q_n))


def accept_lossy_unchecked(spec: str, key: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array,
                           target_probs: jax.Array, num_drafted: jax.Array | None = None):
    """Verify K chained drafts per row with the lossy rule `spec` ("NAME[:values]", static), e.g. "fuzzy:0.2".
    The chain rules' contract: draft_tokens `[B, K]`, draft_probs `[B, K, V]`, target_probs `[B, K+1, V]`;
    returns num_accepted `[B]` and tokens `[B, K+1]` (the passed drafts, one more token, then PAD)."""
    rule = parse_lossy(spec)
    key_accept, key_fallback = jax.random.split(key)
    u = jax.random.uniform(key_accept, draft_tokens.shape, target_probs.dtype)
    n, law = lossy_decision(rule, u, draft_tokens, draft_probs, target_probs, num_drafted)
    return n, emitted_tokens(draft_tokens, n, sample_token(key_fallback, law))
