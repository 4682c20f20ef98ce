"""Tiny tokenizers and token models for the exact string-level suite (transport.exact.strings; transport/THEORY.md
§5.7): tokenizers over a 2-3 character alphabet that split strings differently, greedy longest-match encoding and
segmentation, and seeded context-dependent next-token laws. numpy float64.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


# ---- tokenizers -------------------------------------------------------------------------------------------------

def check_tokenizer(tokenizer: Sequence[str], alphabet: str) -> tuple[str, ...]:
    """The tokenizer as a tuple if its tokens are distinct non-empty strings over `alphabet` and it holds every
    single character (so every string is encodable); ValueError otherwise."""
    tok = tuple(tokenizer)
    if not tok or any(not isinstance(t, str) or not t for t in tok):
        raise ValueError(f"a tokenizer is a non-empty tuple of non-empty strings, got {tok!r}")
    if len(set(tok)) != len(tok):
        raise ValueError(f"duplicate tokens in {tok!r}")
    if set("".join(tok)) - set(alphabet):
        raise ValueError(f"tokens of {tok!r} use characters outside the alphabet {alphabet!r}")
    missing = [c for c in alphabet if c not in tok]
    if missing:
        raise ValueError(f"tokenizer {tok!r} lacks the single characters {missing}: not every string is encodable")
    return tok


@functools.cache
def token_index(tokenizer: tuple[str, ...]) -> tuple[dict[str, int], int]:
    """({token: id}, longest token length)."""
    return {t: i for i, t in enumerate(tokenizer)}, max(map(len, tokenizer))


def _longest(tokenizer: tuple[str, ...], rest: str) -> int:
    """Id of the longest token that is a prefix of the non-empty string `rest`."""
    index, longest = token_index(tokenizer)
    for n in range(min(len(rest), longest), 0, -1):
        if rest[:n] in index:
            return index[rest[:n]]
    raise ValueError(f"{rest[0]!r} is not a token of {tokenizer!r}")


def encode(tokenizer: tuple[str, ...], s: str) -> tuple[int, ...]:
    """Greedy longest-match encoding of s, left to right (the canonical encoding of this suite)."""
    out, pos = [], 0
    while pos < len(s):
        out.append(_longest(tokenizer, s[pos:]))
        pos += len(tokenizer[out[-1]])
    return tuple(out)


def pieces(drafter_tokenizer: tuple[str, ...], token_string: str) -> tuple[int, ...]:
    """How a target token is shown to the drafter: its drafter encoding."""
    return encode(drafter_tokenizer, token_string)


def text(tokenizer: tuple[str, ...], ids: Sequence[int]) -> str:
    """The string of a token sequence."""
    return "".join(tokenizer[i] for i in ids)


def segment(tokenizer: tuple[str, ...], stream: str, count: int) -> tuple[int, ...]:
    """The first ≤ count tokens of the greedy longest-match segmentation of an unbounded character stream of which
    `stream` is known; a token is kept only once determined, i.e. no longer token could still match."""
    _, longest = token_index(tokenizer)
    out, pos = [], 0
    while len(out) < count and pos < len(stream):
        rest = stream[pos:]
        if len(rest) < longest and any(len(t) > len(rest) and t.startswith(rest) for t in tokenizer):
            break
        out.append(_longest(tokenizer, rest))
        pos += len(tokenizer[out[-1]])
    return tuple(out)


# ---- token models -----------------------------------------------------------------------------------------------

class Model(Protocol):
    """What the rules need of a token model: its tokenizer and history -> next-token law `[V]`."""
    tokenizer: tuple[str, ...]

    def __call__(self, history: tuple[int, ...]) -> np.ndarray: ...


def _bucket(history: Sequence[int], buckets: int) -> int:
    """A rolling hash of the whole history (its length included), mod `buckets`."""
    h = len(history)
    for t in history:
        h = (h * 1_000_003 + int(t) + 1) % 2_147_483_647
    return h % buckets


@dataclass(frozen=True, eq=False)
class TokenModel:
    """Context-dependent next-token laws: row `laws[hash(history) mod H]` of a table `[H, V]`."""
    tokenizer: tuple[str, ...]
    """The model's V token strings."""
    laws: np.ndarray
    """`[H, V]` float64 next-token laws, one per history bucket."""

    def __call__(self, history: tuple[int, ...]) -> np.ndarray:
        return self.laws[_bucket(history, len(self.laws))]


def random_token_model(tokenizer: Sequence[str], seed: int, temperature: float = 1.0, buckets: int = 13,
                       scale: float = 2.0) -> TokenModel:
    """A seeded model: logits `[buckets, V]` ~ N(0, scale²), laws softmax(logits / temperature); temperature 0 is
    greedy (one-hot argmax, ties to the smaller id). The same seed gives the same logits at every temperature."""
    if temperature < 0 or buckets < 1:
        raise ValueError(f"need temperature >= 0 and buckets >= 1, got {temperature}, {buckets}")
    tok = tuple(tokenizer)
    logits = np.random.default_rng(seed).normal(0.0, scale, (buckets, len(tok)))
    if temperature == 0:
        return TokenModel(tok, np.eye(len(tok))[np.argmax(logits, axis=1)])
    z = np.exp((logits - logits.max(1, keepdims=True)) / temperature)
    return TokenModel(tok, z / z.sum(1, keepdims=True))
