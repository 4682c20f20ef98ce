"""Regexes and JSON schemas compiled to token automata over a model's vocabulary, with outlines-core (a maintained
Rust library: the regex's byte-level DFA walked over every token's bytes), and cached on disk.

The vocabulary is the bytes each token id stands for (`specjax.model.io.tokenizer.token_bytes` reads them from a `tokenizers` tokenizer:
byte-level BPE such as SmolLM2's, or SentencePiece pieces such as Gemma's); special tokens have none and are never
allowed, except the end-of-sequence token, which ends a string of the language.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from specjax.constrain.automaton import TokenAutomaton, from_classes, from_transitions
from specjax.model.io.tokenizer import token_bytes  # noqa: F401 (re-exported: specjax.constrain)


def _outlines():
    try:
        import outlines_core
    except ImportError:
        raise ImportError("grammar constraints need outlines-core: pip install 'specjax[grammar]'") from None
    return outlines_core


def cache_dir() -> Path:
    """Where compiled automata are kept: $SPECJAX_CACHE/automata, else ~/.cache/specjax/automata."""
    root = os.environ.get("SPECJAX_CACHE") or Path.home() / ".cache" / "specjax"
    return Path(root) / "automata"


def regex_from_json_schema(schema: str | dict) -> str:
    """The regex outlines-core derives from a JSON schema (a JSON string or a dict); ValueError for a schema it
    cannot compile."""
    text = schema if isinstance(schema, str) else json.dumps(schema)
    try:
        return _outlines().json_schema.build_regex_from_schema(text)
    except Exception as e:          # outlines-core raises its own error types; the caller needs a ValueError
        raise ValueError(f"unsupported or invalid JSON schema: {e}") from None


def compile_regex(regex: str, vocabulary: Sequence[bytes | str | None], eos_id: int,
                  use_cache: bool = True) -> TokenAutomaton:
    """The masked-mode automaton of `regex` over `vocabulary` (id -> the token's bytes or text; None: a special
    token, never allowed), EOS allowed in accepting states. Cached on disk by a hash of the regex and the
    vocabulary. ValueError for an invalid regex, an EOS id outside the vocabulary, or a language no sequence of
    these tokens can spell."""
    v = len(vocabulary)
    if not isinstance(eos_id, int) or not 0 <= eos_id < v:
        raise ValueError(f"eos_id must be a token id in [0, {v}), got {eos_id!r}")
    if not isinstance(regex, str) or not regex:
        raise ValueError("the regex must be a non-empty string")
    key = _cache_key(regex, vocabulary, eos_id)
    path = cache_dir() / f"{key}.npz"
    if use_cache and path.exists():
        saved = np.load(path)
        return from_classes(saved["columns"], saved["token_class"], int(saved["initial"]), eos_id)
    automaton = _build(regex, vocabulary, eos_id)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, columns=np.asarray(automaton.next_state),
                            token_class=np.asarray(automaton.token_class), initial=automaton.initial)
        tmp.replace(path)
    return automaton


def _build(regex: str, vocabulary: Sequence[bytes | str | None], eos_id: int) -> TokenAutomaton:
    oc = _outlines()
    pieces: dict[bytes, list[int]] = {}
    for token, piece in enumerate(vocabulary):
        if piece is None or token == eos_id:
            continue
        piece = piece.encode("utf-8") if isinstance(piece, str) else bytes(piece)
        if piece:
            pieces.setdefault(piece, []).append(token)
    try:
        index = oc.Index(regex, oc.Vocabulary(eos_id, pieces))
    except Exception as e:          # an invalid regex, or one no token sequence can match
        raise ValueError(f"cannot compile regex {regex!r} over this vocabulary: {e}") from None
    return from_transitions(index.get_transitions(), index.get_initial_state(), index.get_final_states(),
                            len(vocabulary), eos_id)


def _cache_key(regex: str, vocabulary: Sequence[bytes | str | None], eos_id: int) -> str:
    digest = hashlib.sha256()
    digest.update(b"specjax-automaton-v1\0" + regex.encode("utf-8") + b"\0" + str(eos_id).encode())
    for piece in vocabulary:
        digest.update(b"\1" if piece is None else b"\0" + (piece.encode("utf-8") if isinstance(piece, str)
                                                           else bytes(piece)))
    return digest.hexdigest()[:32]


