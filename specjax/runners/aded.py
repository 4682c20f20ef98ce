"""Online n-gram drafting (ADED-style): per-row n-gram statistics updated inside the decode loop from the tokens the
row has committed, queried in O(1) per context length.

Each row carries, for every context length n in `[min_ngram, max_ngram]`, a direct-mapped table of `H` buckets
(`buckets`): a bucket holds one context (its n tokens, newest first), the `M` tokens that followed it most often and
their counts and last positions. A new (context, next token) pair hashes its context to a bucket; a different
context evicts the old one (recent contexts win, which is the adaptation), a known next token's count grows, an
unknown one replaces the least frequent (then oldest) entry. A query hashes the last n tokens of its own path,
longest n first, and proposes the bucket's tokens by count (ties: most recent); scores are log(count).

When the statistics learn: the cache remembers how far each row's history has been absorbed (`counted`) and
absorbs the slots `[counted, window)` at every call of two or more tokens. By the drafting protocol
(`specjax.decode.draft.draft_chain`, `trees.pool.draft_level`) those calls are the prefill and each round's opening
(they re-score `prev` at `position - 1`) and the tree levels (window `position - 1`), below whose window every slot
is committed; the one-token calls of a chain sit above its own uncommitted drafts and absorb nothing. So the tables
hold statistics of committed tokens only, one round behind at most (the newest transition is absorbed the round
after). As with every proposal drafter, any proposal is lossless under a correct verifier.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from specjax.model.block import Block
from specjax.model.config import ModelConfig
from specjax.runners.lookup import NEVER_WRITTEN, Proposals, ProposalRunner, count_scores, path_suffixes, write_history
from specjax.runners.base import Handle
from specjax.validation import check_int

_FNV_PRIME = 16777619


@struct.dataclass
class AdedCache:
    """history `[B, S]` int32 (slot-addressed tokens, as prompt lookup's cache); counted `[B]` int32 (slots below
    it are absorbed into the tables); per context length l (L of them), bucket h: contexts `[B, L, H, n_max]` int32
    (newest first, -1 past n_l and in empty buckets), tokens `[B, L, H, M]` int32 (-1: empty entry), counts
    `[B, L, H, M]` int32, last `[B, L, H, M]` int32 (slot of the newest occurrence)."""

    history: jax.Array
    counted: jax.Array
    contexts: jax.Array
    tokens: jax.Array
    counts: jax.Array
    last: jax.Array


def bucket_of(context: jax.Array, n: int, buckets: int) -> jax.Array:
    """FNV-1a-style hash of `context[:n]` (newest first) into `[0, buckets)`."""
    h = jnp.uint32(2166136261)
    for i in range(n):
        h = (h ^ (context[i] + 1).astype(jnp.uint32)) * jnp.uint32(_FNV_PRIME)
    return (h % jnp.uint32(buckets)).astype(jnp.int32)


@dataclass(frozen=True)
class AdedRunner(ProposalRunner):
    """Online n-gram drafter over no parameters; `config` is the target's (vocabulary, feature width)."""

    config: ModelConfig
    max_ngram: int = 3
    min_ngram: int = 1
    num_proposals: int = 4
    buckets: int = 1024
    repeat_unmatched: bool = True

    @property
    def name(self) -> str:
        return f"aded:{self.max_ngram}"

    @property
    def ngrams(self) -> tuple[int, ...]:
        return tuple(range(self.min_ngram, self.max_ngram + 1))

    def init_cache(self, params, batch_size, capacity) -> AdedCache:
        shape = (batch_size, len(self.ngrams), self.buckets)
        m = self.num_proposals
        return AdedCache(history=jnp.full((batch_size, capacity), NEVER_WRITTEN, jnp.int32),
                         counted=jnp.zeros((batch_size,), jnp.int32),
                         contexts=jnp.full(shape + (self.max_ngram,), -1, jnp.int32),
                         tokens=jnp.full(shape + (m,), -1, jnp.int32), counts=jnp.zeros(shape + (m,), jnp.int32),
                         last=jnp.full(shape + (m,), -1, jnp.int32))

    def _absorb_one(self, row: AdedCache, p: jax.Array) -> AdedCache:
        """Count (context ending at slot p - 1, token at slot p) in every table of one row."""
        s = row.history.shape[0]
        x = row.history[p]
        back = p - 1 - jnp.arange(self.max_ngram)
        context = jnp.where(back >= 0, row.history[jnp.clip(back, 0, s - 1)], -1)      # newest first
        contexts, tokens, counts, last = row.contexts, row.tokens, row.counts, row.last
        for l, n in enumerate(self.ngrams):
            ctx = jnp.where(jnp.arange(self.max_ngram) < n, context, -1)
            ok = jnp.all(ctx[:n] >= 0) & (x >= 0)
            h = bucket_of(ctx, n, self.buckets)
            same = jnp.all(contexts[l, h] == ctx)
            tok = jnp.where(same, tokens[l, h], -1)                  # another context: evict it
            cnt = jnp.where(same, counts[l, h], 0)
            lst = jnp.where(same, last[l, h], -1)
            hit = tok == x
            # a known token: its entry; else the least frequent, oldest entry (empty ones first)
            j = jnp.where(jnp.any(hit), jnp.argmax(hit), jnp.argmin(cnt * (s + 1) + lst))
            tok, cnt, lst = tok.at[j].set(x), cnt.at[j].set(jnp.where(hit[j], cnt[j] + 1, 1)), lst.at[j].set(p)
            contexts = contexts.at[l, h].set(jnp.where(ok, ctx, contexts[l, h]))
            tokens = tokens.at[l, h].set(jnp.where(ok, tok, tokens[l, h]))
            counts = counts.at[l, h].set(jnp.where(ok, cnt, counts[l, h]))
            last = last.at[l, h].set(jnp.where(ok, lst, last[l, h]))
        return row.replace(contexts=contexts, tokens=tokens, counts=counts, last=last)

    def absorb(self, row: AdedCache, window: jax.Array) -> AdedCache:
        """Absorb the committed slots `[counted, window)` of one row (a while loop: no host round-trip)."""
        def body(r: AdedCache) -> AdedCache:        # the row itself is the carry: `counted` is the next slot
            return self._absorb_one(r, r.counted).replace(counted=r.counted + 1)

        return jax.lax.while_loop(lambda r: r.counted < window, body, row)

    def query(self, row: AdedCache, suffix: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Proposals of one query: tokens, valid, counts `[M]` of the longest known context ending the path."""
        s, m = row.history.shape[0], self.num_proposals
        tokens, counts, last = jnp.full((m,), -1, jnp.int32), jnp.zeros((m,), jnp.int32), jnp.zeros((m,), jnp.int32)
        matched = jnp.bool_(False)
        for l, n in enumerate(self.ngrams):                          # shortest first: longer matches override
            ctx = jnp.where(jnp.arange(self.max_ngram) < n, suffix, -1)
            h = bucket_of(ctx, n, self.buckets)
            found = jnp.all(row.contexts[l, h] == ctx) & jnp.all(ctx[:n] >= 0) & (row.tokens[l, h, 0] >= 0)
            tokens = jnp.where(found, row.tokens[l, h], tokens)
            counts = jnp.where(found, row.counts[l, h], counts)
            last = jnp.where(found, row.last[l, h], last)
            matched |= found
        order = jnp.argsort(-(counts * (s + 1) + last), stable=True)
        tokens, counts = tokens[order], counts[order]
        if self.repeat_unmatched:
            tokens = tokens.at[0].set(jnp.where(matched, tokens[0], suffix[0]))
            counts = counts.at[0].set(jnp.where(matched, counts[0], 1))
        return tokens, tokens >= 0, counts

    def propose(self, params, cache: AdedCache, block: Block) -> Proposals:
        cache = cache.replace(history=write_history(cache.history, block))
        if block.length >= 2:                  # a round's opening, a tree level or the prefill (module docstring)
            cache = jax.vmap(self.absorb)(cache, block.window)
        suffix, _ = path_suffixes(cache.history, block, self.max_ngram)
        tokens, valid, counts = jax.vmap(jax.vmap(self.query, in_axes=(None, 0)))(cache, suffix)   # [B, T, M]
        return Proposals(tokens, valid, count_scores(counts), cache)

    def commit(self, cache: AdedCache, position, path_slots, num_accepted) -> AdedCache:
        """Move the accepted path in the history; the tables absorb it at the next round's opening."""
        return cache.replace(history=super().commit(cache.history, position, path_slots, num_accepted))


def aded_handle(config: ModelConfig, max_ngram: int = 3, min_ngram: int = 1, num_proposals: int = 4,
                buckets: int = 1024, repeat_unmatched: bool = True) -> Handle:
    """Handle of an online n-gram drafter for a target with `config` (its parameters are empty)."""
    check_int("max_ngram", max_ngram, low=1, high=16)
    check_int("min_ngram", min_ngram, low=1, high=max_ngram)
    check_int("num_proposals", num_proposals, low=1, high=min(64, config.vocab_size))
    check_int("buckets", buckets, low=1, high=1 << 20)
    return Handle(AdedRunner(config, max_ngram, min_ngram, num_proposals, buckets, bool(repeat_unmatched)), {})
