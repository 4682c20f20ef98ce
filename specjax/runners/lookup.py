"""Prompt-lookup drafting (n-gram matching over the row's own history): no weights, no model call.

The runner's cache is the row's token history `[B, S]` int32, slot-addressed like a KV cache (-1 = never written),
so it drafts chains and trees through the same `Runner` protocol as a model. For each query the runner takes the
last `n` tokens of the query's own path (the committed prefix below the block's window, then the window slots the
query sees: its ancestors and itself), finds every earlier occurrence of that n-gram in the committed history for
the longest `n` in `[min_ngram, max_ngram]` that occurs at all, and proposes the distinct tokens that followed those
occurrences, most frequent first (ties: most recent first), up to `num_proposals`. With no match it proposes the
query token again.

The proposals are deterministic. Their logits are `-PROPOSAL_GAP * rank` (the rest -inf), so the draft law is
essentially one-hot on the best proposal: a chain drafts it, a deterministic tree builder takes the proposals in
rank order as children, and a sampled builder draws from that exact law. Any proposal is lossless under a correct
verifier (the drafts are verified against the law they were drawn from, or as point masses), which is why a crude
matcher can only change the speed, never the output law.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.model.block import Block
from specjax.model.config import ModelConfig
from specjax.runners.base import Forward, Handle, Runner
from specjax.validation import check_int

NEVER_WRITTEN = -1
PROPOSAL_GAP = 20.0          # logit gap between consecutive proposals: the best one carries 1 - O(e^-20) mass


def path_suffix(history: jax.Array, window: jax.Array, window_tokens: jax.Array, visible: jax.Array,
                length: int) -> tuple[jax.Array, jax.Array]:
    """The last `length` tokens of one query's path, newest first, and the first token of its in-window path.

    history `[S]` int (slot-addressed); window: scalar first window slot; window_tokens, visible `[W]`: the tokens
    at the window slots and which of them the query sees (the query itself is the last one it sees). Returns
    (suffix `[length]` int32, -1 where the path is shorter; first `[]` int32, the oldest visible window token).
    """
    seen = visible.astype(jnp.int32)
    after = jnp.cumsum(seen[::-1])[::-1] - seen                 # visible window slots after each slot
    count = jnp.sum(seen)
    picks = []
    for i in range(length):                                     # i = 0 is the query itself
        in_window = jnp.sum(jnp.where(visible & (after == i), window_tokens, 0))
        back = window - 1 - (i - count)                         # past the window: the committed history
        from_history = jnp.where(back >= 0, history[jnp.clip(back, 0, history.shape[0] - 1)], -1)
        picks.append(jnp.where(i < count, in_window, from_history))
    first = jnp.sum(jnp.where(visible & (after == count - 1), window_tokens, 0))
    return jnp.stack(picks).astype(jnp.int32), first.astype(jnp.int32)


def lookup_proposals(history: jax.Array, window: jax.Array, suffix: jax.Array, first: jax.Array, max_ngram: int,
                     min_ngram: int, num_proposals: int, repeat_unmatched: bool = True
                     ) -> tuple[jax.Array, jax.Array]:
    """Distinct continuations of the longest matching n-gram, most frequent first (ties: most recent first).

    history `[S]` int; window: scalar (slots below it are the committed history that may be matched); suffix
    `[max_ngram]` the path's last tokens, newest first; first: the path token right after the history. Returns
    (tokens `[num_proposals]` int32, valid `[num_proposals]` bool).
    """
    s = history.shape[0]
    slots = jnp.arange(s)
    nxt = jnp.where(slots + 1 < window, history[jnp.clip(slots + 1, 0, s - 1)], first)
    best = jnp.zeros((s,), bool)
    match = (slots < window) & (nxt >= 0)
    for n in range(1, max_ngram + 1):                           # the n-gram ending at j equals the path's last n
        back = slots - (n - 1)
        match &= (back >= 0) & (suffix[n - 1] >= 0) & (history[jnp.clip(back, 0, s - 1)] == suffix[n - 1])
        if n >= min_ngram:
            best = jnp.where(jnp.any(match), match, best)       # longer n-grams override shorter ones
    # distinct continuations by frequency: sort (token, slot), count each run, score = count * S + last slot
    token = jnp.where(best, nxt, jnp.iinfo(jnp.int32).max)
    order = jnp.lexsort((slots, token))
    tok_sorted, slot_sorted = token[order], slots[order]
    run_start = jnp.concatenate([jnp.array([True]), tok_sorted[1:] != tok_sorted[:-1]])
    run_end = jnp.concatenate([tok_sorted[1:] != tok_sorted[:-1], jnp.array([True])])
    start_index = jax.lax.cummax(jnp.where(run_start, slots, 0))
    count = slots - start_index + 1
    score = jnp.where(run_end & (tok_sorted < jnp.iinfo(jnp.int32).max),
                      count * s + slot_sorted, -1)
    top, idx = jax.lax.top_k(score, num_proposals)
    tokens = jnp.where(top >= 0, tok_sorted[idx], 0)
    valid = top >= 0
    if not repeat_unmatched:
        return tokens.astype(jnp.int32), valid
    # no match at all: propose the query token again (cheap, sometimes right in repetitive text)
    tokens = tokens.at[0].set(jnp.where(valid[0], tokens[0], suffix[0]))
    return tokens.astype(jnp.int32), valid.at[0].set(True)


def proposal_logits(tokens: jax.Array, valid: jax.Array, vocab_size: int, scores: jax.Array | None = None
                    ) -> jax.Array:
    """Logits `[..., V]` float32: `scores[..., M]` (default `-PROPOSAL_GAP * rank`) at the valid proposals
    `tokens[..., M]`, -inf elsewhere."""
    if scores is None:
        scores = jnp.broadcast_to(-PROPOSAL_GAP * jnp.arange(tokens.shape[-1], dtype=jnp.float32), tokens.shape)
    where = jnp.where(valid, tokens, vocab_size)                 # invalid proposals are dropped by the scatter
    flat_where = where.reshape(-1, tokens.shape[-1])
    rows = jnp.arange(flat_where.shape[0])[:, None]
    logits = jnp.full((flat_where.shape[0], vocab_size), -jnp.inf, jnp.float32)
    logits = logits.at[rows, flat_where].set(scores.reshape(flat_where.shape).astype(jnp.float32), mode="drop")
    return logits.reshape(tokens.shape[:-1] + (vocab_size,))


@struct.dataclass
class Proposals:
    """What a proposal drafter offers at each query: tokens `[B, T, M]` int32, best first; valid `[B, T, M]` bool
    (a prefix of each query's M); scores `[B, T, M]` float32, the draft law's logits at them (the rest of the
    vocabulary has none); the drafter's updated cache."""

    tokens: jax.Array
    valid: jax.Array
    scores: jax.Array
    cache: Any


class ProposalRunner(Runner):
    """A drafter that proposes at most `num_proposals` distinct tokens per query (n-gram, retrieval): `propose`
    says which, `forward` turns them into logits (-inf outside them). Hidden states are zeros of the target's
    width. A hybrid (`specjax.runners.hybrid`) merges any of them with another drafter."""

    num_proposals: int

    def init_cache(self, params, batch_size, capacity) -> jax.Array:
        """The row's token history `[B, S]` int32 (NEVER_WRITTEN where no token was written)."""
        return jnp.full((batch_size, capacity), NEVER_WRITTEN, jnp.int32)

    def propose(self, params, cache, block: Block) -> Proposals:
        raise NotImplementedError

    def forward(self, params, cache, block: Block) -> Forward:
        out = self.propose(params, cache, block)
        logits = proposal_logits(out.tokens, out.valid, self.config.vocab_size, out.scores)
        b, t = block.tokens.shape
        return Forward(logits, jnp.zeros((b, t, self.config.d_model), jnp.float32), out.cache)


def write_history(history: jax.Array, block: Block) -> jax.Array:
    """The token history `[B, S]` with the block's tokens written at their slots."""
    rows = jnp.arange(block.batch_size)[:, None]
    return history.at[rows, block.slots].set(block.tokens, mode="drop")


def path_suffixes(history: jax.Array, block: Block, length: int) -> tuple[jax.Array, jax.Array]:
    """`path_suffix` of every query of `block` over the history `[B, S]` (the block already written): suffixes
    `[B, T, length]` int32 (newest first, -1 where a path is shorter) and first path tokens `[B, T]`."""
    w = block.visible.shape[2]
    window_slots = jnp.clip(block.window[:, None] + jnp.arange(w)[None, :], 0, history.shape[1] - 1)
    window_tokens = jnp.take_along_axis(history, window_slots, axis=1)                   # [B, W]
    per_row = jax.vmap(lambda h, win, tok, vis: path_suffix(h, win, tok, vis, length), in_axes=(None, None, None, 0))
    return jax.vmap(per_row)(history, block.window, window_tokens, block.visible)


def count_scores(counts: jax.Array) -> jax.Array:
    """Draft-law logits of proposals seen `counts` times: log(count) (a proposal seen 0 times scores as 1)."""
    return jnp.log(jnp.maximum(counts, 1).astype(jnp.float32))


@dataclass(frozen=True)
class LookupRunner(ProposalRunner):
    """n-gram drafter over no parameters; `config` is the target's (vocabulary; width of its zero features).
    repeat_unmatched: with no match, propose the query token again (off in a hybrid, where the other drafter's
    guess is better)."""

    config: ModelConfig
    max_ngram: int = 3
    min_ngram: int = 1
    num_proposals: int = 4
    repeat_unmatched: bool = True

    @property
    def name(self) -> str:
        return f"lookup:{self.max_ngram}"

    def propose(self, params, cache, block: Block) -> Proposals:
        cache = write_history(cache, block)
        suffix, first = path_suffixes(cache, block, self.max_ngram)

        def one_query(history, window, suffix, first):
            return lookup_proposals(history, window, suffix, first, self.max_ngram, self.min_ngram,
                                    self.num_proposals, self.repeat_unmatched)

        per_row = jax.vmap(one_query, in_axes=(None, None, 0, 0))
        tokens, valid = jax.vmap(per_row)(cache, block.window, suffix, first)                 # [B, T, M]
        scores = jnp.broadcast_to(-PROPOSAL_GAP * jnp.arange(self.num_proposals, dtype=jnp.float32), tokens.shape)
        return Proposals(tokens, valid, scores, cache)


def lookup_handle(config: ModelConfig, max_ngram: int = 3, min_ngram: int = 1, num_proposals: int = 4,
                  repeat_unmatched: bool = True) -> Handle:
    """Handle of a prompt-lookup drafter for a target with `config` (its parameters are empty)."""
    check_int("max_ngram", max_ngram, low=1, high=16)
    check_int("min_ngram", min_ngram, low=1, high=max_ngram)
    check_int("num_proposals", num_proposals, low=1, high=config.vocab_size)
    return Handle(LookupRunner(config, max_ngram, min_ngram, num_proposals, bool(repeat_unmatched)), {})
