"""UTF-8 byte tokenizer for the random-weight `byte-*` presets: ids 0-255 are bytes, then BOS, EOS, PAD."""
from __future__ import annotations

BOS, EOS, PAD = 256, 257, 258
VOCAB_SIZE = 259


def encode(text: str, *, add_bos: bool = True) -> list[int]:
    return ([BOS] if add_bos else []) + list(text.encode("utf-8"))


def decode(ids) -> str:
    return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")
