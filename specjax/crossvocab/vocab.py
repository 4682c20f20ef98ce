"""How one vocabulary reads in another: the map a drafter with its own tokenizer needs to draft for a target.

Both vocabularies are given as the bytes each token id spells (None for special tokens:
`specjax.model.io.tokenizer.token_bytes` reads them for byte-level BPE and SentencePiece alike). Two
things are derived, both as arrays indexed by target id so they travel as parameters of the jitted loop:

- `to_drafter [V_t]`: the drafter id spelling exactly the same bytes (-1 if none): the *shared* tokens, the
  intersection that token-level intersection (TLI) drafts from.
- `pieces [V_t, L]`, `widths [V_t]`: how the drafter reads a target token: the drafter tokens spelling its bytes by
  greedy longest match (L = `max_pieces`; a longer spelling is cut, which changes only what the drafter sees, never
  what is emitted). Special tokens and tokens the drafter cannot spell read as one `fallback` token.

A byte string spelled by several ids of one vocabulary (a SentencePiece piece and its byte-fallback twin) maps to
the one its tokenizer emits: the piece, not the `<0xNN>` token (`byte_tokens`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class VocabMap:
    """to_drafter `[V_t]` int32 (drafter id of the same bytes, -1 if none); pieces `[V_t, L]` int32 and widths
    `[V_t]` int32 (1..L): the drafter tokens a target token reads as, the first `widths[t]` of its row."""

    to_drafter: jnp.ndarray
    pieces: jnp.ndarray
    widths: jnp.ndarray

    @property
    def target_vocab(self) -> int:
        return self.to_drafter.shape[0]

    @property
    def max_pieces(self) -> int:
        return self.pieces.shape[1]


@dataclass(frozen=True)
class Overlap:
    """What a vocabulary map says about a pair (host-side numbers for reports and checks)."""

    target_vocab: int
    drafter_vocab: int
    shared: int
    """Target tokens the drafter spells with one token of its own (what TLI can draft)."""
    widths: dict[int, int]
    """How many target tokens read as w drafter tokens, for each w (before cutting at max_pieces)."""
    cut: int
    """Target tokens whose spelling is longer than max_pieces (the drafter reads their first pieces only)."""
    unspelled: int
    """Target tokens (special tokens included) read as the fallback token."""


def _index(spellings: Sequence[bytes | None], byte_tokens: Sequence[int] = ()) -> dict[bytes, int]:
    """bytes -> id, a piece preferred over a byte-fallback token spelling the same byte."""
    fallback = set(byte_tokens)
    index: dict[bytes, int] = {}
    for i, b in enumerate(spellings):
        if b and (b not in index or (index[b] in fallback and i not in fallback)):
            index[b] = i
    return index


def spell(data: bytes, index: dict[bytes, int], longest: int) -> list[int] | None:
    """The ids spelling `data` by greedy longest match over `index` (bytes -> id); None if some byte has no token."""
    out, i = [], 0
    while i < len(data):
        for n in range(min(longest, len(data) - i), 0, -1):
            token = index.get(data[i:i + n])
            if token is not None:
                break
        else:
            return None
        out.append(token)
        i += n
    return out


def vocab_map(target: Sequence[bytes | None], drafter: Sequence[bytes | None], *, max_pieces: int = 4,
              fallback: int | None = None, target_byte_tokens: Sequence[int] = (),
              drafter_byte_tokens: Sequence[int] = ()) -> tuple[VocabMap, Overlap]:
    """The map from a target vocabulary to a drafter's (module docstring) and its overlap numbers.

    target, drafter: the bytes of every id (None: special). max_pieces: L, at least 1. fallback: the drafter id an
    unspellable target token reads as (default: the drafter's token for b" ", else b"\n", else its first spelled
    token). *_byte_tokens: byte-fallback ids. ValueError for empty vocabularies, max_pieces < 1, a bad fallback."""
    if max_pieces < 1:
        raise ValueError(f"max_pieces must be at least 1, got {max_pieces}")
    if not any(target) or not any(drafter):
        raise ValueError("both vocabularies must spell some bytes (token strings missing?)")
    d_index = _index(drafter, drafter_byte_tokens)
    t_index = _index(target, target_byte_tokens)
    if fallback is None:        # what the drafter reads for a special token: a space, else a newline, else anything
        fallback = d_index.get(b" ", d_index.get(b"\n", min(d_index.values())))
    if not 0 <= fallback < len(drafter):
        raise ValueError(f"fallback {fallback} is not a drafter id (0..{len(drafter) - 1})")
    longest = max(len(b) for b in d_index)
    v = len(target)
    to_drafter = np.full((v,), -1, np.int32)
    pieces = np.full((v, max_pieces), fallback, np.int32)
    widths = np.ones((v,), np.int32)
    counts: dict[int, int] = {}
    cut = unspelled = 0
    for t, b in enumerate(target):
        ids = spell(b, d_index, longest) if b else None
        if ids is None:
            unspelled += 1
            continue
        if len(ids) == 1 and t_index.get(b) == t:
            to_drafter[t] = ids[0]
        counts[len(ids)] = counts.get(len(ids), 0) + 1
        cut += len(ids) > max_pieces
        ids = ids[:max_pieces]
        pieces[t, :len(ids)] = ids
        widths[t] = len(ids)
    overlap = Overlap(v, len(drafter), int((to_drafter >= 0).sum()), dict(sorted(counts.items())), cut, unspelled)
    return VocabMap(jnp.asarray(to_drafter), jnp.asarray(pieces), jnp.asarray(widths)), overlap
