"""Prompt-lookup drafting (n-gram matching over the row's own history): no weights, no extra model call.

The drafter's "cache" is the token history of each row, `[B, S]` int32 with slot = position (-1 = never written),
so it plugs into the same `Drafter.forward` contract as a model: a call writes its tokens at their positions and,
for each query position `p`, proposes the token that followed the most recent earlier occurrence of the longest
suffix `history[p-n+1 .. p]` (`max_ngram >= n >= min_ngram`); with no match it proposes `history[p]` again.

The proposal is deterministic, so the draft law is the one-hot on it (logits 0 there, -inf elsewhere; every warp
keeps it one-hot). Verifying one-hot drafts with the chain rule accepts token x with probability p(x): lossless for
any proposal, which is why a crude matcher can never change the output law, only the speed.

Only slots `<= p` are read, and they always hold the committed prefix and the chain drafted so far: stale slots past
`p` (rejected drafts, prompt padding) are never looked at. Chains only: a tree builder would write several nodes at
one depth position.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from specjax.config import ModelConfig
from specjax.drafters import Drafter
from specjax.validation import check_int

NEVER_WRITTEN = -1


def lookup_next(history: jax.Array, position: jax.Array, max_ngram: int, min_ngram: int = 1) -> jax.Array:
    """The token after the most recent earlier match of the longest n-gram ending at `position`.

    history: `[S]` int (slot = position); position: scalar int. Only `history[:position + 1]` is read.
    Returns a scalar int32: the continuation, or `history[position]` when no n-gram matches.
    """
    slots = jnp.arange(history.shape[0])
    proposal = history[position]
    for n in range(min_ngram, max_ngram + 1):          # longer n-grams override shorter ones
        # a match ends at slot j < position: history[j - i] == history[position - i] for i < n
        match = (slots >= n - 1) & (slots < position) & (position >= n - 1)
        for i in range(n):
            match &= jnp.roll(history, i) == history[jnp.maximum(position - i, 0)]
        last = jnp.max(jnp.where(match, slots, -1))
        proposal = jnp.where(last >= 0, history[jnp.clip(last + 1, 0, history.shape[0] - 1)], proposal)
    return proposal.astype(jnp.int32)


@dataclass(frozen=True)
class PromptLookupDrafter(Drafter):
    """Drafter over no parameters; `config` is the target's (vocabulary and width of the dummy features)."""

    config: ModelConfig
    max_ngram: int = 3
    min_ngram: int = 1

    def init_cache(self, params, batch_size, capacity) -> jax.Array:
        return jnp.full((batch_size, capacity), NEVER_WRITTEN, jnp.int32)

    def forward(self, params, cache, tokens, positions, start, local_mask, features=None):
        b, t = tokens.shape
        slots = jnp.clip(positions, 0, cache.shape[1] - 1)
        cache = cache.at[jnp.arange(b)[:, None], slots].set(tokens.astype(jnp.int32))
        per_query = jax.vmap(lambda h, p: lookup_next(h, p, self.max_ngram, self.min_ngram), (None, 0))
        proposals = jax.vmap(per_query)(cache, slots)                                     # [B, T]
        vocab = jnp.arange(self.config.vocab_size)
        logits = jnp.where(proposals[..., None] == vocab, 0.0, -jnp.inf).astype(jnp.float32)
        return logits, jnp.zeros((b, t, self.config.d_model), jnp.float32), cache


def prompt_lookup_drafter(config: ModelConfig, max_ngram: int = 3, min_ngram: int = 1
                          ) -> tuple[PromptLookupDrafter, dict[str, Any]]:
    """(runner, params) for `generate(..., method="chain", drafter=...)`; params are empty."""
    check_int("max_ngram", max_ngram, low=1, high=16)
    check_int("min_ngram", min_ngram, low=1, high=max_ngram)
    return PromptLookupDrafter(config, max_ngram, min_ngram), {}
