"""A hybrid drafter: a model drafter (or any drafter) and a proposal drafter (prompt lookup, a retrieval datastore,
online n-gram statistics: `specjax.runners.lookup.ProposalRunner`) merged into one runner, so one tree (and one
verification) holds both kinds of candidates. Hybrids nest: the first member may itself be a hybrid.

At every query the proposal drafter's best `lookup_children` proposals are ranked above every token of the model's
law (their logits are raised past the model's maximum, best proposal highest); all other tokens keep the model's
logits. A deterministic tree builder (static, EAGLE-2) therefore gives each node the n-gram proposals first and
then the model's most likely other tokens as children: the union of both candidate sets, deduplicated because it is
one ranking over one vocabulary. Its children are verified as point masses, which is lossless for any child set; a
sampled builder draws from the merged law, which is exact (the law the drafts are drawn from is the one verified).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from specjax.model.block import Block
from specjax.runners.lookup import ProposalRunner
from specjax.runners.base import Forward, Handle, WrappingRunner
from specjax.validation import check_int


@dataclass(frozen=True)
class HybridRunner(WrappingRunner):
    """The drafter `inner` with the proposals of `lookup` promoted: params `(inner params, proposal drafter
    params)`, cache `(inner cache, proposal drafter cache)`. Everything else (vocabulary, the features it reads
    and their width, how it fuses them) is the inner drafter's, so a hybrid over any drafter, an EAGLE-3 head
    included, drafts as that drafter does."""

    lookup: ProposalRunner
    lookup_children: int = 1

    @property
    def name(self) -> str:
        return f"hybrid({self.inner.name}+{self.lookup.name})"

    def inner_params(self, params):
        return params[0]

    def init_cache(self, params, batch_size, capacity):
        return (self.inner.init_cache(params[0], batch_size, capacity),
                self.lookup.init_cache(params[1], batch_size, capacity))

    def forward(self, params, cache, block: Block) -> Forward:
        model = self.inner.forward(params[0], cache[0], block)
        lookup = self.lookup.propose(params[1], cache[1], block)
        c = self.lookup_children
        top = jnp.max(model.logits, axis=-1, keepdims=True)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        # promote the best c valid proposals past the model's maximum, best highest (rank 0 gets top + 1 + c)
        promoted = top + 1.0 + (c - jnp.arange(c, dtype=jnp.float32))                     # [B, T, c]
        b, t, v = model.logits.shape
        rows, queries = jnp.arange(b)[:, None, None], jnp.arange(t)[None, :, None]
        where = jnp.where(lookup.valid[..., :c], lookup.tokens[..., :c], v)                # invalid: dropped
        logits = model.logits.at[rows, queries, where].set(promoted, mode="drop")
        return Forward(logits, model.hidden, (model.cache, lookup.cache))

    def commit(self, cache, position, path_slots, num_accepted):
        return (self.inner.commit(cache[0], position, path_slots, num_accepted),
                self.lookup.commit(cache[1], position, path_slots, num_accepted))


def hybrid_handle(model: Handle, lookup: Handle, lookup_children: int = 1) -> Handle:
    """Merge a drafter's handle with a proposal drafter's (`specjax.runners.lookup.lookup_handle`,
    `specjax.runners.retrieval.datastore_handle`, `specjax.runners.aded.aded_handle`)."""
    if not isinstance(lookup.runner, ProposalRunner):
        raise ValueError(f"the second drafter of a hybrid must be an n-gram / retrieval drafter, got "
                         f"{lookup.runner.name}")
    if lookup.config.vocab_size != model.config.vocab_size:
        raise ValueError(f"n-gram drafter vocabulary {lookup.config.vocab_size} != the model drafter's "
                         f"{model.config.vocab_size}")
    check_int("lookup_children", lookup_children, low=1, high=lookup.runner.num_proposals)
    return Handle(HybridRunner(model.runner, lookup.runner, lookup_children), (model.params, lookup.params))
