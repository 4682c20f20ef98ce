"""A hybrid drafter: a model drafter and the n-gram drafter merged into one runner, so one tree (and one
verification) holds both kinds of candidates.

At every query the n-gram drafter's best `lookup_children` proposals are ranked above every token of the model's
law (their logits are raised past the model's maximum, best proposal highest); all other tokens keep the model's
logits. A deterministic tree builder (static, EAGLE-2) therefore gives each node the n-gram proposals first and
then the model's most likely other tokens as children: the union of both candidate sets, deduplicated because it is
one ranking over one vocabulary. Its children are verified as point masses, which is lossless for any child set; a
sampled builder draws from the merged law, which is exact (the law the drafts are drawn from is the one verified).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from specjax.block import Block
from specjax.lookup import PROPOSAL_GAP, LookupRunner
from specjax.runners import Forward, Handle, Runner
from specjax.validation import check_int


@dataclass(frozen=True)
class HybridRunner(Runner):
    """params `(model params, {})`, cache `(model cache, token history)`."""

    model: Runner
    lookup: LookupRunner
    lookup_children: int = 1

    @property
    def config(self):
        return self.model.config

    @property
    def reads_features(self):
        return self.model.reads_features

    @property
    def name(self) -> str:
        return f"hybrid({self.model.name}+{self.lookup.name})"

    def init_cache(self, params, batch_size, capacity):
        return (self.model.init_cache(params[0], batch_size, capacity),
                self.lookup.init_cache(params[1], batch_size, capacity))

    def forward(self, params, cache, block: Block) -> Forward:
        model = self.model.forward(params[0], cache[0], block)
        lookup = self.lookup.forward(params[1], cache[1], block)
        rank = jnp.round(-lookup.logits / PROPOSAL_GAP)                 # 0 = best proposal, inf = none
        promoted = rank < self.lookup_children
        top = jnp.max(model.logits, axis=-1, keepdims=True)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        logits = jnp.where(promoted, top + 1.0 + (self.lookup_children - rank), model.logits)
        return Forward(logits, model.hidden, (model.cache, lookup.cache))

    def commit(self, cache, position, path_slots, num_accepted):
        return (self.model.commit(cache[0], position, path_slots, num_accepted),
                self.lookup.commit(cache[1], position, path_slots, num_accepted))


def hybrid_handle(model: Handle, lookup: Handle, lookup_children: int = 1) -> Handle:
    """Merge a model drafter's handle with an n-gram drafter's (`specjax.lookup.lookup_handle`)."""
    if not isinstance(lookup.runner, LookupRunner):
        raise ValueError(f"the second drafter of a hybrid must be an n-gram drafter, got {lookup.runner.name}")
    if lookup.config.vocab_size != model.config.vocab_size:
        raise ValueError(f"n-gram drafter vocabulary {lookup.config.vocab_size} != the model drafter's "
                         f"{model.config.vocab_size}")
    check_int("lookup_children", lookup_children, low=1, high=lookup.runner.num_proposals)
    return Handle(HybridRunner(model.runner, lookup.runner, lookup_children), (model.params, lookup.params))
