"""Size buckets and right-padded prompt batches, so that a new prompt length or token budget reuses a compiled
loop instead of compiling another."""
from __future__ import annotations

from typing import Sequence

import numpy as np

MIN_BUCKET = 16
LINEAR_FROM = 256


def bucket_size(n: int) -> int:
    """The bucket of a size n >= 1: the next power of two from 16 up to 256, then the next multiple of 256 (so
    long prompts waste at most 255 slots)."""
    if n <= LINEAR_FROM:
        return max(MIN_BUCKET, 1 << (max(n, 1) - 1).bit_length())
    return -(-n // LINEAR_FROM) * LINEAR_FROM


def pad_prompts(prompts: Sequence[Sequence[int]], width: int | None = None, pad_id: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists into tokens `[B, L]` int32 and lengths `[B]` int32; L = `width` or the bucket of the
    longest prompt."""
    lengths = np.array([len(p) for p in prompts], np.int32)
    if lengths.size == 0 or lengths.min() < 1:
        raise ValueError("every prompt needs at least one token")
    width = bucket_size(int(lengths.max())) if width is None else width
    if width < lengths.max():
        raise ValueError(f"width {width} is shorter than the longest prompt ({lengths.max()} tokens)")
    tokens = np.full((len(prompts), width), pad_id, np.int32)
    for row, ids in enumerate(prompts):
        tokens[row, :len(ids)] = ids
    return tokens, lengths
