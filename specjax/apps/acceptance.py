"""The acceptance profile of a drafter for a target at temperature 0, measured teacher-forced on the target's own
greedy text: for every start t and depth d, the rank of the target's token z[t+d] in the drafter's depth-d law
along the true path (what the drafter would have drafted, at that depth, in a round starting at t).

Under greedy verification a round starting at t accepts a static tree's path p iff ranks[t, :len(p)] == p, so these
ranks give a chain's or a static tree's τ on the text exactly (`trees.sequoia.empirical_reward`) and the positional
rates Sequoia's dynamic program needs (`AcceptanceProfile.from_ranks`).

One drafter call per depth scores every start at once. The drafter's cache holds depth regions of M slots each:
region 1 is the text with the target's features (the committed prefix); region d holds, at slot (d-1)M + s, the
depth-d query of the chain that starts at t = s - d + 1: token z[s] with the drafter's own depth-(d-1) output at
s - 1 as feature (an EAGLE head's input past the first step), seeing region 1 up to t and its own chain's slots in
regions 2..d. (In a real decode the committed prefix also holds earlier rounds' accepted drafts as the drafter
scored them; here it is re-scored with the target's features, a small difference.)
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from specjax.block import Block
from specjax.runners import Handle


def _rank_of(logits: jax.Array, token: jax.Array) -> jax.Array:
    """Rank of `token [M]` in each row of `logits [M, V]` (top_k order: larger first, ties to the smaller id); V
    when its logit is -inf (a VocabTrim head never drafts it)."""
    x = jnp.take_along_axis(logits, token[:, None], axis=1)
    ids = jnp.arange(logits.shape[1])[None, :]
    rank = jnp.sum((logits > x) | ((logits == x) & (ids < token[:, None])), axis=1)
    return jnp.where(jnp.isfinite(x[:, 0]), rank, logits.shape[1])


def teacher_forced_ranks(target: Handle, drafter: Handle, text: Sequence[int], prompt_len: int, depth: int
                         ) -> np.ndarray:
    """ranks `[starts, depth]` int: rank of z[t+d] under the drafter at depth d (1-based d = column + 1), for every
    start t in [prompt_len, len(text) - depth - 1]. text: the prompt then the target's greedy continuation."""
    z = np.asarray(text, np.int32)
    m = z.size
    if not 1 <= prompt_len < m - depth:
        raise ValueError(f"text of {m} tokens leaves no start after a prompt of {prompt_len} for depth {depth}")
    return np.asarray(_ranks(target, drafter, jnp.asarray(z)[None], depth=depth))[prompt_len:m - depth]


def next_token_logits(target: Handle, drafter: Handle, texts: np.ndarray, rows: np.ndarray, cols: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced next-token logits of the target and of the drafter's first draft, one forward each over the
    whole batch: texts `[B, M]` int (right-padded; padding is never seen by an earlier position), rows, cols `[N]`
    int: the contexts texts[r, :c + 1]. Returns (target logits `[N, V]`, drafter logits `[N, V]`) float32; -inf
    where the drafter never drafts (VocabTrim). EAGLE heads read the target's features along the text, as in the
    first draft of a round (the committed prefix re-scored with the target's features, see the module docstring)."""
    z = jnp.asarray(texts, jnp.int32)
    p_logits, hidden = _target_out(target, z)
    feats = _shifted(hidden) if drafter.runner.reads_features else None
    cache = drafter.init_cache(z.shape[0], z.shape[1])
    q_logits = _forward(drafter, cache, Block.chain(z, jnp.zeros((z.shape[0],), jnp.int32), feats)).logits
    rows, cols = jnp.asarray(rows), jnp.asarray(cols)
    return np.asarray(p_logits[rows, cols]), np.asarray(q_logits[rows, cols])


@jax.jit
def _target_out(target, z):
    b = z.shape[0]
    out = target.forward(target.init_cache(b, z.shape[1]), Block.chain(z, jnp.zeros((b,), jnp.int32)))
    return out.logits, out.hidden


def _shifted(hidden: jax.Array) -> jax.Array:
    """The feature each position reads: the target's hidden state one position earlier (zeros at position 0)."""
    return jnp.concatenate([jnp.zeros_like(hidden[:, :1]), hidden[:, :-1]], axis=1)


def _ranks(target: Handle, drafter: Handle, z: jax.Array, depth: int) -> jax.Array:
    """ranks `[M, depth]`: column d-1 at row t is the depth-d rank of z[t+d] (rows past M - d - 1 are junk)."""
    m = z.shape[1]
    hidden = _target_out(target, z)[1]                                            # [1, M, D]
    reads = drafter.runner.reads_features
    feats = _shifted(hidden) if reads else None
    cache = drafter.init_cache(1, depth * m)
    s = jnp.arange(m)
    cols, prev_hidden = [], None
    for d in range(1, depth + 1):
        if d == 1:
            block = Block.chain(z, jnp.zeros((1,), jnp.int32), feats)
        else:
            t = s - d + 1                                                          # the chain each query belongs to
            slot = jnp.arange(depth * m)[None, :]
            seen = slot <= t[:, None]                                              # region 1 up to t
            for e in range(2, d + 1):
                seen = seen | (slot == (e - 1) * m + t[:, None] + e - 1)           # its chain's depth-e slot
            own = _shifted(prev_hidden)
            block = Block(tokens=z, positions=s[None], slots=((d - 1) * m + s)[None],
                          window=jnp.zeros((1,), jnp.int32), visible=seen[None, :, :d * m],
                          features=own if reads else None)
        out = _forward(drafter, cache, block)
        cache, prev_hidden = out.cache, out.hidden
        rank = _rank_of(out.logits[0], jnp.concatenate([z[0, 1:], z[0, :1]]))    # query s predicts z[s+1]
        cols.append(jnp.concatenate([rank[d - 1:], jnp.zeros((d - 1,), rank.dtype)]))    # row t = s - d + 1
    return jnp.stack(cols, axis=1)


@jax.jit
def _forward(drafter, cache, block):
    return drafter.forward(cache, block)
