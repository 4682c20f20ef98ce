"""`TreeSpeculator`: one round of tree speculative decoding (build level by level, score in one target call,
verify: `propose_and_verify`; then commit) under the core's round contract (`specjax.decode.speculator.Speculator`),
and `make_speculator`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from specjax.decode.policies import Confidence, DraftPolicy, Fixed, parse_policy
from specjax.sampling import warp_logits
from specjax.decode.speculator import Speculator, check_pair
from specjax.decode.state import Caches, RoundOutput
from specjax.verify.multi_draft import point_mass_rule
from specjax.verify.coupled import round_races
from specjax.verify.names import COUPLED_TREE_VERIFIERS, TREE_VERIFIERS, check_name
from specjax.runners.base import Forward
from trees.level_loop import BuiltTree, TreeBuilder
from trees.sampled_builders import RSDCTree, SpecInferTree
from trees.builders import canonical_method, make_builder
from trees.verify import verify_tree_unchecked
from trees.walk import RuleSet, default_rules, score_tree


@struct.dataclass
class TreeVerdict:
    """What `TreeSpeculator.propose_and_verify` returns. built: the drafted tree, the drafter's cache and each
    node's pool index; scored: the target's forward over the tree (its cache holds the tree at `position + i`);
    target_probs `[B, N+1, V]`: the warped target law at every node; path `[B, D+1]` (node ids, root first, -1
    after), num_accepted `[B]`, tokens `[B, D+1]` (the accepted drafts, then the correction or bonus token, PAD
    after)."""

    built: BuiltTree
    scored: Forward
    target_probs: jax.Array
    path: jax.Array
    num_accepted: jax.Array
    tokens: jax.Array


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
        coupled = isinstance(self.builder, RSDCTree) and self.builder.coupled
        if (self.verifier in COUPLED_TREE_VERIFIERS) != coupled:
            raise ValueError(f"{self.verifier} verifies a coupled RSD-C tree (children the Gumbel-top-k of their "
                             "output position's race): use the rsd-c method" if not coupled else
                             f"a coupled RSD-C tree is verified by {COUPLED_TREE_VERIFIERS}, not {self.verifier!r}")

    @property
    def keys_by_position(self) -> bool:
        return self.verifier in COUPLED_TREE_VERIFIERS

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

    def with_verifier(self, verifier: str, allow_lossy: bool = False) -> "TreeSpeculator":
        # every tree verifier is lossless: allow_lossy has nothing to allow here
        builder = self.builder
        if isinstance(builder, SpecInferTree) and verifier != "token":   # traversal needs the chains apart, gbv
            builder = dataclasses.replace(builder, merge=verifier == "gbv")  # the trie; token takes either
        if isinstance(builder, RSDCTree):                                 # gumbel_list: children from its races
            builder = dataclasses.replace(builder, coupled=verifier in COUPLED_TREE_VERIFIERS)
        return dataclasses.replace(self, builder=builder, verifier=verifier)

    @property
    def node_rules(self) -> RuleSet:
        """The per-law rules of the "token" verifier."""
        return self.rules if self.rules is not None else default_rules()

    def propose(self, *, drafter, drafter_cache, ctx, key, sampling, keep_laws: bool | None = None) -> BuiltTree:
        """The draft half of a round: the tree built level by level from the drafter's cache (one drafter call per
        level). keep_laws: store every drafted node's law in the tree (default: only when a rule reads them)."""
        if keep_laws is None:   # sequence-level verifiers and custom rules for deterministic children read them
            keep_laws = (self.builder.draws_laws or self.verifier != "token"
                         or self.node_rules.det is not point_mass_rule)
        with jax.named_scope("draft"):
            return self.builder.build(drafter, drafter_cache, ctx, key, sampling, keep_laws=keep_laws)

    def verify(self, *, target, target_cache, ctx, built: BuiltTree, key, sampling) -> TreeVerdict:
        """The verify half: the target scores the whole tree in one call and the verifier accepts a path."""
        depth = self.builder.max_depth
        with jax.named_scope("score"):
            scored = score_tree(target, target_cache, built.tree, ctx.position, depth)
        with jax.named_scope("verify"):
            target_probs = warp_logits(scored.logits, sampling)
            path, n, tokens = verify_tree_unchecked(key, built.tree, target_probs, self.verifier, depth,
                                                    self.node_rules, self.builder.laws)
        return TreeVerdict(built, scored, target_probs, path, n, tokens)

    def propose_and_verify(self, *, target, drafter, caches, ctx, key, sampling,
                           keep_laws: bool | None = None) -> TreeVerdict:
        """A round without its commit (`propose`, then `verify`): what a decode round does before committing, and
        what a one-round probe (GTO's rollouts, the tree ablation's exact reward, the benches) measures, so they
        measure the loop that ships."""
        if self.keys_by_position:          # `key` is the run's: the races of this round's output positions
            key_verify = round_races(key, ctx.position, self.builder.max_depth + 1, target.config.vocab_size)
            key_build = key_verify[:, :-1]
        else:
            key_build, key_verify = jax.random.split(key)
        built = self.propose(drafter=drafter, drafter_cache=caches.drafter, ctx=ctx, key=key_build, sampling=sampling,
                             keep_laws=keep_laws)
        return self.verify(target=target, target_cache=caches.target, ctx=ctx, built=built, key=key_verify,
                           sampling=sampling)

    def round(self, *, target, drafter, caches, ctx, key, sampling, memory=None) -> RoundOutput:
        """One round: `propose_and_verify`, then the accepted path committed to both caches; tokens
        `[B, depth+1]`."""
        v = self.propose_and_verify(target=target, drafter=drafter, caches=caches, ctx=ctx, key=key,
                                    sampling=sampling)
        with jax.named_scope("commit"):
            target_cache = target.runner.commit(v.scored.cache, ctx.position, v.path, v.num_accepted)
            source = v.built.source
            draft_path = jnp.where(v.path >= 0, jnp.take_along_axis(source, jnp.clip(v.path, 0, None), axis=1), -1)
            draft_cache = drafter.runner.commit(v.built.cache, ctx.position, draft_path, v.num_accepted)
        path_hidden = jnp.take_along_axis(v.scored.hidden, jnp.clip(v.path, 0, None)[..., None], axis=1)
        num_drafted = jnp.sum(v.built.tree.valid[:, 1:], axis=1).astype(jnp.int32)
        return RoundOutput(Caches(target_cache, draft_cache), v.tokens, v.num_accepted, num_drafted, path_hidden)

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
