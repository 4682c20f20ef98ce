"""A model's next-token laws after many short paths from one context, a level of a tree per call: the context is
scored once into a cache, then every path of a level is one node of a token tree scored on top of it (each node
sees its ancestors, `Block` with a tree visibility). What `transport.studies.string_gap` asks of a real model.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from specjax.decode.batching import bucket_size
from specjax.model.block import Block
from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig, warp_logits


@partial(jax.jit, static_argnames=("runner", "sampling"))
def _laws(runner, params, cache, block: Block, rows: jax.Array, sampling: SamplingConfig):
    """The warped laws `[N, V]` float32 at `rows [N]` of the block, and the cache it wrote."""
    out = runner.forward(params, cache, block)
    return warp_logits(out.logits[0, rows], sampling), out.cache


class PathScorer:
    """`scorer(paths) -> [N, V]`: a model's law at temperature T after context + path, for every path (a tuple of
    ids, () for the context itself). One forward per call: the distinct prefixes of the paths form a tree.

    handle: any model or drafter that reads token ids (no features). context: ids, at least one. capacity: the
    cache's slots per row, at least the padded context plus the padded nodes of the largest call."""

    def __init__(self, handle: Handle, context: Sequence[int], temperature: float, capacity: int = 1024):
        if not context:
            raise ValueError("a path scorer needs a context of at least one token")
        if temperature <= 0:
            raise ValueError(f"laws at temperature {temperature}: T > 0 (at T = 0 every law is a point mass)")
        if getattr(handle.runner, "reads_features", False):
            raise ValueError(f"{handle.runner.name} reads the target's features: score it along a text instead")
        self.handle, self.length = handle, len(context)
        self.capacity, self.sampling = capacity, SamplingConfig(temperature=temperature)
        padded = bucket_size(self.length)
        if padded > capacity:
            raise ValueError(f"a context of {self.length} tokens pads to {padded} > capacity {capacity}")
        tokens = np.zeros((1, padded), np.int32)
        tokens[0, :self.length] = context         # the padding after it is written past the window, never seen
        block = Block.chain(jnp.asarray(tokens), jnp.zeros((1,), jnp.int32))
        root, self.cache = _laws(handle.runner, handle.params, handle.init_cache(1, capacity), block,
                                 jnp.asarray([self.length - 1]), self.sampling)
        self.root = np.asarray(root[0])
        self.calls = 0

    def __call__(self, paths: Sequence[tuple[int, ...]]) -> np.ndarray:
        """`[N, V]` float32: the law after context + paths[i] (the context's own law for an empty path)."""
        prefixes = sorted({tuple(p[:i]) for p in paths for i in range(1, len(p) + 1)}, key=lambda p: (len(p), p))
        if not prefixes:
            return np.broadcast_to(self.root, (len(paths), self.root.size))
        index = {p: i for i, p in enumerate(prefixes)}
        n = bucket_size(len(prefixes))
        if self.length + n > self.capacity:
            raise ValueError(f"{len(prefixes)} nodes after {self.length} tokens exceed the capacity {self.capacity}")
        tokens = np.zeros((1, n), np.int32)
        positions = np.full((1, n), self.length, np.int32)
        visible = np.eye(n, dtype=bool)[None]
        for p, i in index.items():
            tokens[0, i], positions[0, i] = p[-1], self.length + len(p) - 1
            for j in range(1, len(p)):
                visible[0, i, index[p[:j]]] = True
        slots = self.length + np.arange(n, dtype=np.int32)[None]
        block = Block(tokens=jnp.asarray(tokens), positions=jnp.asarray(positions), slots=jnp.asarray(slots),
                      window=jnp.asarray([self.length], jnp.int32), visible=jnp.asarray(visible))
        wanted = [index[tuple(p)] if p else -1 for p in paths]
        rows = np.zeros(bucket_size(len(wanted)), np.int32)          # padded too: one program per pair of buckets
        rows[:len(wanted)] = np.maximum(wanted, 0)
        laws, _ = _laws(self.handle.runner, self.handle.params, self.cache, block, jnp.asarray(rows),
                        self.sampling)
        self.calls += 1
        laws = np.array(laws[:len(wanted)])
        empty = [k for k, i in enumerate(wanted) if i < 0]
        if empty:
            laws[empty] = self.root
        return laws
