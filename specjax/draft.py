"""The chain draft step: a drafter proposes K tokens per row, with the distributions they were sampled from."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from specjax.drafters import Drafter, causal_mask
from specjax.sampling import SamplingConfig, sample_token, warp_logits


def draft_chain(drafter: Drafter, params: Any, cache: Any, prev: jax.Array, pending: jax.Array,
                position: jax.Array, features: jax.Array, key: jax.Array, num_draft: int,
                sampling: SamplingConfig) -> tuple[Any, jax.Array, jax.Array, jax.Array]:
    """Propose `num_draft` tokens per row.

    The drafter's cache is valid below `position - 1`; the first call re-scores `prev` (at `position - 1`) with
    `pending` (at `position`), because after a fully accepted round the drafter never saw its own last draft.
    prev, pending, position: `[B]` int. features: `[B, 2, D]` target hidden states at positions
    `position - 2, position - 1` (ignored by plain drafters).
    Returns (cache, tokens `[B, K]` int32, probs `[B, K, V]` float32 (the warped laws sampled from), drafter
    features of the drafted tokens `[B, K, D]`).
    """
    b = prev.shape[0]
    keys = jax.random.split(key, num_draft)
    logits, feats, cache = drafter.forward(params, cache, jnp.stack([prev, pending], 1),
                                           jnp.stack([position - 1, position], 1), position - 1,
                                           causal_mask(b, 2), features)
    probs = warp_logits(logits[:, -1], sampling)
    token = sample_token(keys[0], probs)

    def step(carry, step_key):
        cache, tok, pos, feat = carry
        logits, feat, cache = drafter.forward(params, cache, tok[:, None], pos[:, None], pos,
                                              causal_mask(b, 1), feat)
        q = warp_logits(logits[:, 0], sampling)
        nxt = sample_token(step_key, q)
        return (cache, nxt, pos + 1, feat), (nxt, q, feat[:, 0])

    carry = (cache, token, position + 1, feats[:, -1:])
    (cache, _, _, _), (tokens, qs, fs) = jax.lax.scan(step, carry, keys[1:])
    tokens = jnp.concatenate([token[:, None], jnp.moveaxis(tokens, 0, 1)], axis=1)
    probs = jnp.concatenate([probs[:, None], jnp.moveaxis(qs, 0, 1)], axis=1)
    draft_feats = jnp.concatenate([feats[:, -1:], jnp.moveaxis(fs, 0, 1)], axis=1)
    return cache, tokens, probs, draft_feats


# the cache is donated: a Python loop over steps updates it in place instead of copying it every call
draft_step = jax.jit(draft_chain, static_argnames=("drafter", "num_draft", "sampling"), donate_argnames=("cache",))
