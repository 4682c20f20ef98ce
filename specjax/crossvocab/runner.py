"""A drafter with its own vocabulary, presented to the decode loop in the target's: token-level intersection (TLI).

The loop only ever speaks target ids. This runner reads each target token as the drafter tokens that spell it
(`VocabMap.pieces`) and turns the drafter's law over its own vocabulary into a law over the target's: the drafter's
logits of the shared tokens (`VocabMap.to_drafter`), the others at -inf. Warping then renormalises over the shared
tokens, which is TLI's restricted law; the verifier is given exactly the law each draft was drawn from, so every
method and verifier stays lossless whatever the drafter sees (transport/THEORY.md §5.7).

Layout. Target slot s owns drafter slots `L*s .. L*s + L-1` (L = `max_pieces`); a token of width w writes its pieces
in the first w and leaves the rest unwritten and never visible. The drafter's rotary position of a piece is the
number of drafter tokens before it along its own path (committed prefix plus, in a tree, its ancestors), so the
drafter sees an ordinary text. The width of every slot's token lives beside the cache and moves with it, like a
grammar state (`specjax.constrain.runner`). Drafted tokens are shared, hence one piece each: a block whose tokens all
read as one piece (every drafting call after the first) runs the drafter on T tokens, not T*L (a `lax.cond`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.crossvocab.vocab import VocabMap
from specjax.model.block import Block
from specjax.model.cache import gather_path
from specjax.runners.base import Forward, Handle, WrappingRunner


@struct.dataclass
class CrossVocabCache:
    """inner: the drafter's cache, `L` slots per target slot; widths `[B, S]` int32: how many drafter tokens the
    target token at each slot reads as (0: never written)."""

    inner: Any
    widths: jax.Array


@struct.dataclass
class CrossVocabParams:
    """The drafter's parameters and the vocabulary map (arrays: a new pair of the same shapes reuses the loop)."""

    inner: Any
    vocab: VocabMap


@dataclass(frozen=True)
class CrossVocabRunner(WrappingRunner):
    """`inner` (a drafter over its own vocabulary) drafting in a target vocabulary of `target_vocab` tokens, each
    read as at most `max_pieces` drafter tokens (module docstring)."""

    target_vocab: int = 0
    max_pieces: int = 1

    @property
    def config(self):
        return self.inner.config.replace(vocab_size=self.target_vocab)

    @property
    def emits_features(self):
        return False            # a drafter only: never a target

    @property
    def emits_exit_hidden(self):
        return False

    def inner_params(self, params):
        return params.inner

    def init_cache(self, params, batch_size, capacity):
        return CrossVocabCache(self.inner.init_cache(params.inner, batch_size, self.max_pieces * capacity),
                               jnp.zeros((batch_size, capacity), jnp.int32))

    def begin(self, cache, prompt_lengths):
        return cache

    def commit(self, cache, position, path_slots, num_accepted):
        l = self.max_pieces
        offsets = jnp.arange(l, dtype=path_slots.dtype)
        pieces = jnp.where(path_slots[..., None] >= 0, l * path_slots[..., None] + offsets, -1)
        inner = self.inner.commit(cache.inner, l * position, pieces.reshape(path_slots.shape[0], -1),
                                  l * (num_accepted + 1) - 1)
        return CrossVocabCache(inner, gather_path(cache.widths, position, path_slots, num_accepted + 1))

    def forward(self, params, cache, block: Block) -> Forward:
        vocab = params.vocab
        tokens = jnp.clip(block.tokens, 0, self.target_vocab - 1)
        rows = jnp.arange(block.batch_size)[:, None]
        widths = cache.widths.at[rows, block.slots].set(vocab.widths[tokens])
        block_widths = jnp.take_along_axis(widths, block.slots, axis=1)                     # [B, T]

        def run(pieces_per_token: int):
            out = self.inner.forward(params.inner, cache.inner,
                                     drafter_block(block, vocab, widths, pieces_per_token, self.max_pieces))
            last = jnp.minimum(block_widths, pieces_per_token) - 1                          # [B, T]
            index = jnp.arange(block.length)[None, :] * pieces_per_token + last
            pick = lambda a: jnp.take_along_axis(a, index[..., None], axis=1)
            return pick(out.logits), pick(out.hidden), out.cache

        if self.max_pieces == 1:
            logits, hidden, inner = run(1)
        else:
            logits, hidden, inner = jax.lax.cond(jnp.all(block_widths == 1), lambda: run(1),
                                                 lambda: run(self.max_pieces))
        shared = vocab.to_drafter >= 0
        mapped = jnp.where(shared, jnp.take(logits, jnp.maximum(vocab.to_drafter, 0), axis=-1), -jnp.inf)
        return Forward(logits=mapped, hidden=hidden, cache=CrossVocabCache(inner, widths))


def drafter_block(block: Block, vocab: VocabMap, widths: jax.Array, pieces_per_token: int, max_pieces: int
                  ) -> Block:
    """The drafter's block for a target block: token t of the block becomes its first `pieces_per_token` pieces
    `[B, T*P]`, at drafter slots `L*slot + a`, rotary positions counted along each token's own path, seeing the
    pieces of every target slot it sees (a window over the whole drafter cache) and its own earlier pieces.
    widths `[B, S]`: every target slot's width with the block's tokens written."""
    b, t = block.tokens.shape
    p, l = pieces_per_token, max_pieces
    s = widths.shape[1]
    tokens = jnp.clip(block.tokens, 0, vocab.target_vocab - 1)
    seen = block.cache_mask(s) & (jnp.arange(s)[None, None, :] != block.slots[..., None])       # [B, T, S]
    before = jnp.sum(jnp.where(seen, widths[:, None, :], 0), axis=-1)                          # [B, T]
    a = jnp.arange(p, dtype=jnp.int32)
    pieces = vocab.pieces[tokens][..., :p]                                                     # [B, T, P]
    slots = l * block.slots[..., None] + a                                                     # [B, T, P]
    positions = before[..., None] + a
    # query (i, a) sees piece a' of slot s' if it sees s' and a' < widths[s'], or s' is its own slot and a' <= a
    written = jnp.arange(l)[None, None, :] < widths[..., None]                                 # [B, S, L]
    others = seen[:, :, None, :, None] & written[:, None, None, :, :]                          # [B, T, 1, S, L]
    own = ((jnp.arange(s)[None, None, :] == block.slots[..., None])[:, :, None, :, None]
           & (jnp.arange(l)[None, None, None, None, :] <= a[None, None, :, None, None]))       # [B, T, P, S, L]
    visible = (others | own).reshape(b, t * p, s * l)
    return Block(tokens=pieces.reshape(b, t * p), positions=positions.reshape(b, t * p),
                 slots=slots.reshape(b, t * p), window=jnp.zeros((b,), jnp.int32), visible=visible)


def cross_vocab(drafter: Handle, vocab: VocabMap) -> Handle:
    """`drafter` (over its own vocabulary) drafting in the target vocabulary `vocab` maps to, by TLI. ValueError
    for a drafter that reads target features (it belongs to one target), a map built for another drafter
    vocabulary, or a map with no shared token."""
    if drafter.runner.reads_features:
        raise ValueError(f"{drafter.runner.name} reads a target's features: it drafts for that target only, in its "
                         "vocabulary (a cross-vocabulary drafter is a model of its own)")
    dv = drafter.config.vocab_size
    top = int(jnp.max(vocab.pieces))
    if top >= dv or int(jnp.max(vocab.to_drafter)) >= dv:
        raise ValueError(f"the vocabulary map names drafter id {top}, the drafter has {dv} tokens: "
                         "the map was built for another drafter")
    if not bool(jnp.any(vocab.to_drafter >= 0)):
        raise ValueError("the two vocabularies share no token: token-level intersection cannot draft")
    return Handle(CrossVocabRunner(drafter.runner, target_vocab=vocab.target_vocab, max_pieces=vocab.max_pieces),
                  CrossVocabParams(drafter.params, vocab))
