"""Retrieval drafting (REST-style): a datastore of n-gram contexts and their most frequent continuations, built once
from a corpus of token ids and queried inside the jitted loop (static shapes, no host round-trip).

The datastore holds one table per context length n in `[min_ngram, max_ngram]`: the distinct n-token contexts of
the corpus, stored newest token first and sorted lexicographically (`contexts [U, n]` int32), and the `M` tokens
that followed each most often (`tokens [U, M]`, -1 past the known ones; ties: the smaller id) with their counts
(`counts [U, M]`). A query takes the last tokens of its own path (as prompt lookup does, `specjax.runners.lookup.
path_suffix`), binary-searches every table (ceil(log2 U) steps of n-token comparisons) and proposes the
continuations of the longest context found. Their scores are log(count), so the draft law follows the corpus
frequencies and a dynamic tree builder spends its budget where the corpus is confident. With no match at all the
drafter proposes the query token again (a drafter must always propose something; in a hybrid this is switched off).

Like every proposal drafter, any proposal is lossless under a correct verifier: the corpus can only change speed.
Building is plain numpy, deterministic (fixed sort orders), and done once per corpus (`specjax.apps.datastores`
caches it on disk).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from specjax.model.block import Block
from specjax.model.config import ModelConfig
from specjax.runners.lookup import Proposals, ProposalRunner, count_scores, path_suffixes, write_history
from specjax.runners.base import Handle
from specjax.validation import check_int

SEPARATOR = -1           # between documents of the concatenated corpus: no n-gram crosses it


@struct.dataclass
class NgramTable:
    """The contexts of one length n: contexts `[U, n]` int32 (newest token first, sorted lexicographically),
    tokens `[U, M]` int32 (continuations, most frequent first, -1 past the known ones), counts `[U, M]` int32."""

    contexts: jax.Array
    tokens: jax.Array
    counts: jax.Array

    @property
    def ngram(self) -> int:
        return self.contexts.shape[1]


@struct.dataclass
class Datastore:
    """One `NgramTable` per context length, shortest first (a tuple, so the datastore is a pytree of arrays)."""

    tables: tuple

    @property
    def ngrams(self) -> tuple[int, ...]:
        return tuple(t.ngram for t in self.tables)

    @property
    def num_proposals(self) -> int:
        return self.tables[0].tokens.shape[1]

    @property
    def nbytes(self) -> int:
        return sum(int(np.asarray(a).nbytes) for t in self.tables for a in (t.contexts, t.tokens, t.counts))


def concatenate_documents(documents: Sequence[Sequence[int]]) -> np.ndarray:
    """The corpus as one int32 array, documents joined by SEPARATOR."""
    parts = []
    for doc in documents:
        parts += [np.asarray(doc, np.int32), np.array([SEPARATOR], np.int32)]
    return np.concatenate(parts) if parts else np.zeros((0,), np.int32)


def build_table(corpus: np.ndarray, n: int, num_proposals: int, min_count: int = 1) -> NgramTable:
    """The table of context length `n` over `corpus` (`concatenate_documents`), numpy arrays. Contexts seen fewer
    than `min_count` times are left out (at least one row is kept: an all-SEPARATOR row no query matches)."""
    m = num_proposals
    length = corpus.shape[0] - n                               # windows corpus[j : j + n] followed by corpus[j + n]
    if length > 0:
        # row = (context newest first, next token)
        rows = np.stack([corpus[n - 1 - i:n - 1 - i + length] for i in range(n)] + [corpus[n:n + length]], axis=1)
        rows = rows[np.all(rows != SEPARATOR, axis=1)]
    else:
        rows = np.zeros((0, n + 1), np.int32)
    if rows.shape[0] == 0:
        return NgramTable(np.full((1, n), SEPARATOR, np.int32), np.full((1, m), -1, np.int32),
                          np.zeros((1, m), np.int32))
    rows = rows[np.lexsort(rows.T[::-1])]                      # lexicographic by (context..., next)
    new_pair = np.concatenate([[True], np.any(rows[1:] != rows[:-1], axis=1)])
    starts = np.flatnonzero(new_pair)
    pairs = rows[starts]
    pair_counts = np.diff(np.append(starts, rows.shape[0]))
    new_ctx = np.concatenate([[True], np.any(pairs[1:, :n] != pairs[:-1, :n], axis=1)])
    group = np.cumsum(new_ctx) - 1                             # context index of each distinct pair
    totals = np.bincount(group, weights=pair_counts).astype(np.int64)
    order = np.lexsort((pairs[:, n], -pair_counts, group))    # per context: most frequent, then smaller id
    group_start = np.flatnonzero(new_ctx)
    rank = np.arange(order.shape[0]) - group_start[group[order]]
    keep = rank < m
    u = group_start.shape[0]
    tokens = np.full((u, m), -1, np.int32)
    counts = np.zeros((u, m), np.int32)
    tokens[group[order][keep], rank[keep]] = pairs[order[keep], n]
    counts[group[order][keep], rank[keep]] = pair_counts[order[keep]]
    contexts = pairs[group_start, :n]
    kept = totals >= min_count
    if not np.any(kept):
        return build_table(np.zeros((0,), np.int32), n, m)
    return NgramTable(contexts[kept].astype(np.int32), tokens[kept], counts[kept])


def build_datastore(documents: Sequence[Sequence[int]], *, max_ngram: int = 4, min_ngram: int = 1,
                    num_proposals: int = 4, min_count: int = 1) -> Datastore:
    """A datastore (numpy arrays) over `documents` (token-id sequences); contexts longer than one token seen fewer
    than `min_count` times are dropped (they cost memory and rarely recur)."""
    check_int("max_ngram", max_ngram, low=1, high=16)
    check_int("min_ngram", min_ngram, low=1, high=max_ngram)
    check_int("num_proposals", num_proposals, low=1, high=64)
    check_int("min_count", min_count, low=1)
    corpus = concatenate_documents(documents)
    return Datastore(tuple(build_table(corpus, n, num_proposals, min_count if n > 1 else 1)
                           for n in range(min_ngram, max_ngram + 1)))


def find_context(table: NgramTable, query: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Binary search of `query [n]` (newest first) in `table`: (found `[]` bool, row index `[]` int32).
    A query holding a negative id (a path shorter than n) is never found."""
    contexts = table.contexts
    u, n = contexts.shape

    def less(row):                                             # row < query, lexicographically
        differ = row != query
        i = jnp.argmax(differ)
        return jnp.any(differ) & (row[i] < query[i])

    def step(_, bounds):
        lo, hi = bounds
        mid = (lo + hi) // 2
        go_right = less(contexts[jnp.clip(mid, 0, u - 1)]) & (lo < hi)
        return jnp.where(go_right, mid + 1, lo), jnp.where(go_right | (lo >= hi), hi, mid)

    lo, _ = jax.lax.fori_loop(0, max(1, int(np.ceil(np.log2(u + 1)))), step, (jnp.int32(0), jnp.int32(u)))
    idx = jnp.clip(lo, 0, u - 1)
    found = (lo < u) & jnp.all(contexts[idx] == query) & jnp.all(query >= 0)
    return found, idx.astype(jnp.int32)


def datastore_proposals(store: Datastore, suffix: jax.Array, repeat_unmatched: bool = True
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Continuations of the longest context of `store` that ends the path: suffix `[max_ngram]` (newest first, -1
    where the path is shorter). Returns tokens, valid, counts `[M]` (valid: a prefix). With no match and
    `repeat_unmatched`, the query token (suffix[0]) with count 1."""
    m = store.num_proposals
    tokens, counts = jnp.full((m,), -1, jnp.int32), jnp.zeros((m,), jnp.int32)
    matched = jnp.bool_(False)
    for table in store.tables:                                 # shortest first: longer matches override
        found, idx = find_context(table, suffix[:table.ngram])
        tokens = jnp.where(found, table.tokens[idx], tokens)
        counts = jnp.where(found, table.counts[idx], counts)
        matched |= found
    if repeat_unmatched:
        tokens = tokens.at[0].set(jnp.where(matched, tokens[0], suffix[0]))
        counts = counts.at[0].set(jnp.where(matched, counts[0], 1))
    return tokens, tokens >= 0, counts


@dataclass(frozen=True)
class DatastoreRunner(ProposalRunner):
    """Retrieval drafter; params: a `Datastore` (jax arrays), cache: the row's token history `[B, S]`."""

    config: ModelConfig
    max_ngram: int = 4
    num_proposals: int = 4
    repeat_unmatched: bool = True

    @property
    def name(self) -> str:
        return f"rest:{self.max_ngram}"

    def propose(self, params: Datastore, cache, block: Block) -> Proposals:
        cache = write_history(cache, block)
        suffix, _ = path_suffixes(cache, block, self.max_ngram)
        query = jax.vmap(jax.vmap(lambda s: datastore_proposals(params, s, self.repeat_unmatched)))
        tokens, valid, counts = query(suffix)                                                    # [B, T, M]
        return Proposals(tokens, valid, count_scores(counts), cache)


def datastore_handle(config: ModelConfig, store: Datastore, repeat_unmatched: bool = True) -> Handle:
    """Handle of a retrieval drafter over `store` for a target with `config` (the store's arrays are its params)."""
    if not isinstance(store, Datastore) or not store.tables:
        raise ValueError("store must be a Datastore with at least one table (specjax.runners.retrieval.build_datastore)")
    ngrams = store.ngrams
    if list(ngrams) != list(range(ngrams[0], ngrams[-1] + 1)):
        raise ValueError(f"datastore tables must cover consecutive context lengths, got {ngrams}")
    for t in store.tables:
        top = int(np.max(np.asarray(t.tokens)))
        if top >= config.vocab_size or int(np.max(np.asarray(t.contexts))) >= config.vocab_size:
            raise ValueError(f"datastore token ids reach {top}: not of this target's vocabulary "
                             f"({config.vocab_size}); build it with the target's tokenizer")
    params = jax.tree.map(jnp.asarray, store)
    return Handle(DatastoreRunner(config, ngrams[-1], store.num_proposals, bool(repeat_unmatched)), params)
