"""`TreeSpeculator`: one round of tree speculative decoding (build level by level, score in one target call,
verify, commit) under the core's round contract (`specjax.decode.speculator.Speculator`), and `make_speculator`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from specjax.decode.policies import Confidence, DraftPolicy, Fixed, parse_policy
from specjax.sampling import warp_logits
from specjax.decode.speculator import Speculator, check_pair
from specjax.decode.state import Caches, RoundOutput
from specjax.verify.multi_draft import point_mass_rule
from specjax.verify.names import TREE_VERIFIERS, check_name
from trees.level_loop import TreeBuilder
from trees.builders import SpecInferTree, canonical_method, make_builder
from trees.verify import verify_tree_unchecked
from trees.walk import RuleSet, default_rules, score_tree


@dataclass(frozen=True)
class TreeSpeculator(Speculator):
    """Tree speculative decoding with `builder`, verified by `verifier` (TREE_VERIFIERS); `rules` are the per-law
    rules of the "token" verifier (None = the core's shared rules, `default_rules()`)."""

    builder: TreeBuilder
    rules: RuleSet | None = None
    verifier: str = "token"

    def __post_init__(self):
        check_name(self.verifier, TREE_VERIFIERS, "tree verifier")
        trie = isinstance(self.builder, SpecInferTree) and self.builder.merge
        if self.verifier == "gbv" and not trie:
            raise ValueError("gbv verifies K i.i.d. chains merged into a trie: use the specinfer method")
        if self.verifier == "traversal" and trie:
            raise ValueError("traversal needs distinct child slots, not a merged trie: SpecInferTree(merge=False)")
        if self.rules is not None and self.verifier != "token":
            raise ValueError(f"custom per-node rules apply to the token verifier, not {self.verifier!r}")

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

    def with_verifier(self, verifier: str) -> "TreeSpeculator":
        builder = self.builder
        if isinstance(builder, SpecInferTree) and verifier != "token":   # traversal needs the chains apart, gbv
            builder = dataclasses.replace(builder, merge=verifier == "gbv")  # the trie; token takes either
        return dataclasses.replace(self, builder=builder, verifier=verifier)

    def round(self, target, drafter, caches, ctx, key, sampling, memory=None) -> RoundOutput:
        """One round: returns tokens `[B, depth+1]` and both caches with the accepted path committed."""
        rules = self.rules if self.rules is not None else default_rules()
        depth = self.builder.max_depth
        key_build, key_verify = jax.random.split(key)
        with jax.named_scope("draft"):
            # sequence-level verifiers and custom rules for deterministic children read the stored draft laws
            keep = self.builder.draws_laws or self.verifier != "token" or rules.det is not point_mass_rule
            built = self.builder.build(drafter, caches.drafter, ctx, key_build, sampling, keep_laws=keep)
        tree = built.tree
        with jax.named_scope("score"):
            scored = score_tree(target, caches.target, tree, ctx.position, depth)
        with jax.named_scope("verify"):
            path, n, tokens = verify_tree_unchecked(key_verify, tree, warp_logits(scored.logits, sampling),
                                                    self.verifier, depth, rules, self.builder.laws)
        with jax.named_scope("commit"):
            target_cache = target.runner.commit(scored.cache, ctx.position, path, n)
            draft_path = jnp.where(path >= 0, jnp.take_along_axis(built.source, jnp.clip(path, 0, None), axis=1), -1)
            draft_cache = drafter.runner.commit(built.cache, ctx.position, draft_path, n)
        path_hidden = jnp.take_along_axis(scored.hidden, jnp.clip(path, 0, None)[..., None], axis=1)
        num_drafted = jnp.sum(tree.valid[:, 1:], axis=1).astype(jnp.int32)
        return RoundOutput(Caches(target_cache, draft_cache), tokens, n, num_drafted, path_hidden)


def make_speculator(method: str, *, budget: int = 16, rules: RuleSet | None = None, verifier: str = "token",
                    policy: str | DraftPolicy | None = None, **shape) -> TreeSpeculator:
    """`TreeSpeculator` for `method` in TREE_METHODS with at most `budget` nodes, verified by `verifier`; shape
    knobs as in `trees.builders.make_builder` (depth, top_k, branching, width, chains, paths). policy: the tree's
    size chosen per round (`confidence:H`, EAGLE-2 only: nodes whose cumulative path confidence is below H are not
    drafted, see `Eagle2Tree`). ValueError on an unknown method, a bad shape or policy, or a verifier the tree's
    layout does not allow."""
    method = canonical_method(method)
    if isinstance(policy, str):
        policy = parse_policy(policy)
    if policy is not None and not isinstance(policy, Fixed):
        if method != "eagle2" or not isinstance(policy, Confidence):
            raise ValueError(f"tree draft policies: confidence:H with the eagle2 method, not {policy.name} with "
                             f"{method}")
        shape["threshold"] = policy.threshold
    return TreeSpeculator(make_builder(method, budget=budget, **shape), rules).with_verifier(verifier)
