"""The builders whose children are sampled, so their draft laws are stored and verified by the rule of that law:
- `RSDCTree` (RSD-C): each node's children are drawn without replacement (Gumbel-top-k), in sampling order.
- `RSDSTree` (RSD-S): stochastic beam search; every node's surviving children, in rank order, are verified as a
  without-replacement sample.
- `SpecInferTree` (SpecInfer): k i.i.d. chains merged into a trie (or kept apart for traversal verification).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from specjax.sampling import safe_log, sample_token
from specjax.validation import check_int
from trees.level_loop import TreeBuilder, tree_from_pool
from trees.pool import Pool
from trees.tree import LAW_IID, LAW_WOR, DraftTree


def _rsd_c_branching(budget: int) -> tuple[int, ...]:
    """(4, 2, 2, ...) while the total stays within budget, then 1s (chains) to use the rest."""
    branching, size, total = [], 1, 0
    for b in [4] + [2] * 16:
        if total + size * b > budget:
            break
        branching.append(b)
        size *= b
        total += size
    if not branching:
        branching, size, total = [min(budget, 4)], min(budget, 4), min(budget, 4)
    while total + size <= budget and len(branching) < 32:
        branching.append(1)
        total += size
    return tuple(branching)


@dataclass(frozen=True)
class RSDCTree(TreeBuilder):
    """RSD-C: every node at depth d-1 gets `branching[d-1]` children drawn without replacement from its draft law
    by Gumbel-top-k, in sampling order (descending perturbed score). Children beyond the support are invalid.
    coupled: the Gumbel noise of level d is the race of its output position (`specjax.verify.coupled`), one per
    row, shared by every node of the level: the children a Gumbel list verdict on the same race needs (the
    `gumbel_list` tree verifier; `build` then takes the race times `[B, D, V]` as its key)."""

    branching: tuple[int, ...]
    coupled: bool = False
    laws = (LAW_WOR,)

    def __post_init__(self):
        object.__setattr__(self, "branching", tuple(self.branching))
        if not self.branching:
            raise ValueError("RSD-C needs at least one level of branching")
        for b in self.branching:
            check_int("branching factor", b, low=1)

    @classmethod
    def from_budget(cls, budget: int, branching=None, depth: int | None = None) -> "RSDCTree":
        branching = tuple(branching) if branching is not None else _rsd_c_branching(budget)
        return cls(branching=branching[:depth] if depth is not None else branching)

    @property
    def level_sizes(self):
        return tuple(int(np.prod(self.branching[:d + 1])) for d in range(len(self.branching)))

    @property
    def num_nodes(self):
        return self.pool_size

    @property
    def max_children(self):
        return max(self.branching)

    def check(self, vocab_size):
        if max(self.branching) > vocab_size:
            raise ValueError(f"RSD-C branching {max(self.branching)} exceeds the vocabulary ({vocab_size}): "
                             "draws without replacement cannot return more distinct tokens than exist")

    def level_keys(self, key):
        # coupled: `key` is the races `[B, D, V]` (`round_races`), drawn once a round and shared with the walk
        return [key[:, d] for d in range(self.max_depth)] if self.coupled else super().level_keys(key)

    def expand(self, d, pool, idx, logits, q, key, sampling):
        b, l, _ = q.shape
        m = self.branching[d]
        if self.coupled:                    # the level's race times `[B, V]`, shared by the level's nodes
            score, tok = jax.lax.top_k(q / key[:, None, :], m)          # the order of log q + g
            score = jnp.where(score > 0, 0.0, -jnp.inf)                   # q = 0: beyond the support
        else:
            score, tok = jax.lax.top_k(safe_log(q) + jax.random.gumbel(key, q.shape), m)  # sampling order
        return pool.put(self.offsets[d + 1], tok.reshape(b, l * m), jnp.repeat(idx, m, axis=1),
                        jnp.isfinite(score).reshape(b, l * m))


@dataclass(frozen=True)
class RSDSTree(TreeBuilder):
    """RSD-S: stochastic beam search (Kool et al. 2019) of width `width` for `depth` levels.

    Draft law. Level d holds the top-`width` length-d prefixes by perturbed value; a node's children are the
    children that survive its level's beam, in rank order (descending perturbed score, its sampling order). The
    root's are exactly `wor(q, width)`. Below the root the number of survivors `m_v` depends on the other beams,
    but given the earlier children the next one's existence depends on its perturbed value only, never on its token
    (a Gumbel argmax is independent of its max), so every node is verified with RRS without replacement, the RSD
    paper's rule. Lossless by exact enumeration and Monte Carlo (transport/THEORY.md §5.3), and it accepts more
    than the point-mass rule below the root that it replaces.
    """

    width: int
    depth: int
    laws = (LAW_WOR,)

    def __post_init__(self):
        check_int("width", self.width, low=1)
        check_int("depth", self.depth, low=1)

    @classmethod
    def from_budget(cls, budget: int, width: int | None = None, depth: int | None = None) -> "RSDSTree":
        w = width or min(budget, max(4, budget // 8))            # depth stays <= 8 by default
        return cls(width=w, depth=depth or max(1, budget // w))

    @property
    def level_sizes(self):
        return (self.width,) * self.depth

    @property
    def num_nodes(self):
        return self.pool_size

    @property
    def max_children(self):
        return self.width

    def check(self, vocab_size):
        if self.width > vocab_size:
            raise ValueError(f"RSD-S beam width {self.width} exceeds the vocabulary ({vocab_size}): the root draws "
                             "its children without replacement")

    def expand(self, d, pool, idx, logits, q, key, sampling):
        b, l, v = q.shape
        rows = jnp.arange(b)[:, None]
        phi = jnp.where(idx == 0, 0.0, pool.value[rows, idx])          # log q of each beam's path (root: 0)
        gbeam = jnp.where(idx == 0, 0.0, pool.score[rows, idx])        # its perturbed score (the root's: a shift)
        phi_c = phi[..., None] + safe_log(q)                            # [B, L, V]
        g = phi_c + jax.random.gumbel(key, phi_c.shape)
        z = jnp.max(g, axis=-1, keepdims=True)
        z = jnp.where(jnp.isfinite(z), z, 0.0)
        # children's Gumbels conditioned on their max equal to the parent's score (Kool et al., stable form)
        t = gbeam[..., None]
        vv = t - g + jnp.log1p(-jnp.exp(jnp.minimum(g - z, 0.0)))
        gc = t - jax.nn.relu(vv) - jnp.log1p(jnp.exp(-jnp.abs(vv)))
        gc = jnp.where(pool.valid[rows, idx][..., None] & jnp.isfinite(g), gc, -jnp.inf)
        score, flat = jax.lax.top_k(gc.reshape(b, l * v), self.width)
        valid = jnp.isfinite(score)
        return pool.put(self.offsets[d + 1], flat % v, jnp.take_along_axis(idx, flat // v, axis=1), valid,
                        value=jnp.take_along_axis(phi_c.reshape(b, l * v), flat, axis=1),
                        score=jnp.where(valid, score, -jnp.inf))


@dataclass(frozen=True)
class SpecInferTree(TreeBuilder):
    """SpecInfer: `chains` independent chains of `depth` tokens, each sampled from q along its own prefix, merged
    into a trie (`merge`). A trie node's child slots are the next tokens of every chain through it (duplicates kept
    as separate slots): given the prefix they are i.i.d. from q(.|node), so RRS with i.i.d. drafts applies, and so
    does greedy multi-path block verification. Unmerged (`merge=False`), the chains stay separate branches of the
    root, the layout traversal verification needs (a merged node's child count would reveal its siblings' tokens)."""

    chains: int
    depth: int
    merge: bool = True
    laws = (LAW_IID,)

    def __post_init__(self):
        check_int("chains", self.chains, low=1)
        check_int("depth", self.depth, low=1)

    @classmethod
    def from_budget(cls, budget: int, chains: int | None = None, depth: int | None = None,
                    merge: bool = True) -> "SpecInferTree":
        k = chains or min(budget, max(4, budget // 8))
        return cls(chains=k, depth=depth or max(1, budget // k), merge=merge)

    @property
    def level_sizes(self):
        return (self.chains,) * self.depth

    @property
    def num_nodes(self):
        return self.pool_size

    @property
    def max_children(self):
        return self.chains

    def expand(self, d, pool, idx, logits, q, key, sampling):
        b, k = idx.shape[0], self.chains
        if d == 0:                                   # every chain starts from the root's law
            q, idx = jnp.broadcast_to(q, (b, k, q.shape[-1])), jnp.zeros((b, k), jnp.int32)
        return pool.put(self.offsets[d + 1], sample_token(key, q), idx, jnp.ones((b, k), bool))

    def finish(self, pool: Pool, source) -> DraftTree:
        """Merge the chains: the canonical node of (chain i, depth d) is the first chain with the same prefix."""
        if not self.merge:
            return tree_from_pool(pool, source, LAW_IID, self.chains)
        b, k, dmax, off = pool.token.shape[0], self.chains, self.depth, self.offsets
        levels = [pool.token[:, off[d + 1]:off[d + 2]] for d in range(dmax)]
        same = jnp.ones((b, k, k), bool)
        canon, same_by_depth = [], [same]
        for d in range(dmax):
            same = same & (levels[d][:, :, None] == levels[d][:, None, :])
            canon.append(off[d + 1] + jnp.argmax(same, axis=-1).astype(jnp.int32))          # [B, k]
            same_by_depth.append(same)
        chain = jnp.arange(k)
        valid = [jnp.ones((b, 1), bool)] + [c == off[d + 1] + chain for d, c in enumerate(canon)]
        parent = [jnp.full((b, 1), -1, jnp.int32), jnp.zeros((b, k), jnp.int32)] + canon[:-1]
        children = []
        for d in range(dmax):
            nxt = jnp.broadcast_to(canon[d][:, None, :], (b, 1 if d == 0 else k, k))
            share = same_by_depth[d][:, :1] if d == 0 else same_by_depth[d]               # [B, rows, k]
            children.append(jnp.where(share & valid[d][..., None], nxt, -1))
        children.append(jnp.full((b, k, k), -1, jnp.int32))
        return DraftTree(token=pool.token, parent=jnp.concatenate(parent, 1), depth=pool.depth,
                         valid=jnp.concatenate(valid, 1), children=jnp.concatenate(children, 1),
                         law=jnp.full(source.shape, LAW_IID, jnp.int32), probs=pool.probs)
