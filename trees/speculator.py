"""`TreeSpeculator`: one round of tree speculative decoding (build level by level, score in one target call, walk,
commit) under the core's round contract (`specjax.speculators.Speculator`), and `make_speculator`."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from specjax.sampling import warp_logits
from specjax.speculators import Speculator, check_pair
from specjax.state import Caches, RoundOutput
from specjax.verify.multi_draft import point_mass_rule
from trees.builder import TreeBuilder
from trees.builders import make_builder
from trees.verify import RuleSet, default_rules, score_tree, walk_tree


@dataclass(frozen=True)
class TreeSpeculator(Speculator):
    """Tree speculative decoding with `builder`; `rules` None = the core's shared rules (`default_rules()`)."""

    builder: TreeBuilder
    rules: RuleSet | None = None

    @property
    def max_emit(self) -> int:
        return self.builder.max_depth + 1

    @property
    def capacity_margin(self) -> int:
        # the drafter writes prev at position - 1 and the pool from position; the target the tree from position
        return max(self.builder.pool_size, self.builder.num_nodes) + 1

    def check(self, target, drafter, sampling) -> None:
        check_pair(self, target, drafter)
        self.builder.check(target.config.vocab_size)

    def round(self, target, drafter, caches, ctx, key, sampling) -> RoundOutput:
        """One round: returns tokens `[B, depth+1]` and both caches with the accepted path committed."""
        rules = self.rules if self.rules is not None else default_rules()
        depth = self.builder.max_depth
        key_build, key_walk = jax.random.split(key)
        with jax.named_scope("draft"):
            # custom rules for deterministic children (e.g. a negative control reading q) need the stored laws
            keep = self.builder.draws_laws or rules.det is not point_mass_rule
            built = self.builder.build(drafter, caches.drafter, ctx, key_build, sampling, keep_laws=keep)
        tree = built.tree
        with jax.named_scope("score"):
            scored = score_tree(target, caches.target, tree, ctx.position, depth)
        with jax.named_scope("verify"):
            path, n, tokens = walk_tree(key_walk, tree, warp_logits(scored.logits, sampling), rules, depth,
                                        self.builder.laws)
        with jax.named_scope("commit"):
            target_cache = target.runner.commit(scored.cache, ctx.position, path, n)
            draft_path = jnp.where(path >= 0, jnp.take_along_axis(built.source, jnp.clip(path, 0, None), axis=1), -1)
            draft_cache = drafter.runner.commit(built.cache, ctx.position, draft_path, n)
        path_hidden = jnp.take_along_axis(scored.hidden, jnp.clip(path, 0, None)[..., None], axis=1)
        num_drafted = jnp.sum(tree.valid[:, 1:], axis=1).astype(jnp.int32)
        return RoundOutput(Caches(target_cache, draft_cache), tokens, n, num_drafted, path_hidden)


def make_speculator(method: str, *, budget: int = 16, rules: RuleSet | None = None, **shape) -> TreeSpeculator:
    """`TreeSpeculator` for `method` in TREE_METHODS with at most `budget` nodes; shape knobs as in
    `trees.builders.make_builder` (depth, top_k, branching, width, chains, paths). ValueError on an unknown method
    or a bad shape."""
    return TreeSpeculator(make_builder(method, budget=budget, **shape), rules)
