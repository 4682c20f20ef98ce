"""A drafter unrolled on its own outputs along a text, every chain start at once: what EAGLE-3 calls the
training-time test, and what the training-time τ estimate (`specjax.bench.acceptance`) reads.

Along texts z `[B, M]` with the target's hidden states over them, depth d's query s belongs to the chain that
starts at t = s - d + 1 (its pending token z[t] is the target's) and predicts z[s + 1]: at depth 1 the drafter reads
the text with the target's features (what the first draft of a round sees); at depth d > 1 it reads z[s] with its
own depth-(d-1) output at s - 1 as the feature, as `specjax.decode.draft.draft_chain` feeds an EAGLE-style head past its
first step. One drafter call per depth scores every start. The drafter's cache holds depth regions of M slots:
region 1 is the text; region d holds, at slot (d-1)M + s, the depth-d query of the chain starting at t = s - d + 1,
which sees region 1 up to t and its own chain's slots in regions 2..d. (In a real decode the committed prefix also
holds earlier rounds' accepted drafts as the drafter scored them; here it is the target's text with the target's
features, a small difference.)

Everything is differentiable in the drafter's parameters, so a trainer can put its loss on every depth.
"""
from __future__ import annotations

from typing import Callable, Iterator

import jax
import jax.numpy as jnp

from specjax.model.block import Block
from specjax.runners.base import Forward, Handle, shifted_features


def unrolled_drafts(drafter: Handle, z: jax.Array, hidden: jax.Array, depth: int,
                    forward: Callable[[object, Block], Forward] | None = None) -> Iterator[Forward]:
    """Yield, for d = 1..depth, the drafter's depth-d `Forward` along texts z `[B, M]` (logits `[B, M, V]`, hidden
    `[B, M, D]` at query s: the chain starting at t = s - d + 1, predicting z[s + 1]; queries with t < 0 are junk,
    never NaN); hidden `[B, M, D]`: the target's hidden states over z (an EAGLE-style head's features).
    `forward(cache, block)` defaults to `drafter.forward` (pass a jitted one to run outside a trace)."""
    forward = forward or drafter.forward
    b, m = z.shape
    reads = drafter.runner.reads_features
    cache = drafter.init_cache(b, depth * m)
    s = jnp.arange(m)
    prev_hidden = None
    for d in range(1, depth + 1):
        if d == 1:
            block = Block.chain(z, jnp.zeros((b,), jnp.int32), shifted_features(hidden) if reads else None)
        else:
            t = s - d + 1                                                          # the chain each query belongs to
            slot = jnp.arange(depth * m)[None, :]
            seen = slot <= t[:, None]                                              # region 1 up to t
            for e in range(2, d + 1):                                              # its chain's depth-e slot (its
                seen = seen | (slot == (e - 1) * m + t[:, None] + e - 1)           # own at e = d: never empty)
            block = Block(tokens=z, positions=jnp.broadcast_to(s, (b, m)),
                          slots=jnp.broadcast_to((d - 1) * m + s, (b, m)), window=jnp.zeros((b,), jnp.int32),
                          visible=jnp.broadcast_to(seen[:, :d * m], (b, m, d * m)),
                          features=shifted_features(prev_hidden) if reads else None)
        out = forward(cache, block)
        cache, prev_hidden = out.cache, out.hidden
        yield out
