"""The chain draft step: a drafter proposes K tokens per row, with the distributions they were sampled from."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.block import Block
from specjax.runners import Handle
from specjax.sampling import SamplingConfig, sample_token, warp_logits
from specjax.state import DecodeContext


@struct.dataclass
class ChainDraft:
    """cache: the drafter's cache; tokens `[B, K]` int32; probs `[B, K, V]` float32, the warped law each draft was
    sampled from (what the verifier must be given)."""

    cache: Any
    tokens: jax.Array
    probs: jax.Array


def draft_chain(drafter: Handle, cache: Any, ctx: DecodeContext, key: jax.Array, num_draft: int,
                sampling: SamplingConfig) -> ChainDraft:
    """Propose `num_draft` tokens per row: `num_draft` drafter calls over 2, 1, 1, ... tokens.

    The drafter's cache is valid below `position - 1`; the first call re-scores `prev` (at `position - 1`) with
    `pending` (at `position`), because after a fully accepted round the drafter never saw its own last draft. A
    drafter that reads features gets the target's hidden states for the first call and its own output after.
    """
    keys = jax.random.split(key, num_draft)
    features = ctx.features if drafter.runner.reads_features else None
    first = drafter.forward(cache, Block.chain(jnp.stack([ctx.prev, ctx.pending], 1), ctx.position - 1, features))
    q0 = warp_logits(first.logits[:, -1], sampling)
    token0 = sample_token(keys[0], q0)

    def step(carry, step_key):
        cache, tok, pos, feat = carry
        out = drafter.forward(cache, Block.chain(tok[:, None], pos, feat if drafter.runner.reads_features else None))
        q = warp_logits(out.logits[:, 0], sampling)
        nxt = sample_token(step_key, q)
        return (out.cache, nxt, pos + 1, out.hidden), (nxt, q)

    carry = (first.cache, token0, ctx.position + 1, first.hidden[:, -1:])
    (cache, _, _, _), (tokens, qs) = jax.lax.scan(step, carry, keys[1:])
    tokens = jnp.concatenate([token0[:, None], jnp.moveaxis(tokens, 0, 1)], axis=1)
    probs = jnp.concatenate([q0[:, None], jnp.moveaxis(qs, 0, 1)], axis=1)
    return ChainDraft(cache, tokens, probs)


# the cache is donated: a Python loop over steps updates it in place instead of copying it every call
draft_step = jax.jit(draft_chain, static_argnames=("num_draft", "sampling"), donate_argnames=("cache",))
