"""`TreeSpeculator`: one round of tree speculative decoding (build, score in one target call, walk, commit) under
the decode loop's round contract (`specjax.decode.Speculator`), and the `make_speculator` factory for the CLI."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from specjax.decode import RoundOutput
from specjax.validation import check_int
from trees.builders import (Eagle2Tree, RSDCTree, RSDSTree, SpecInferTree, StaticTree, TreeBuilder,
                            default_static_paths)
from trees.verify import RuleSet, check_tree_batch, commit_path, default_rules, score_tree, walk_tree

TREE_METHODS = ("eagle", "rsd-c", "rsd-s", "specinfer", "static")


@dataclass(frozen=True)
class TreeSpeculator:
    """Tree speculative decoding with `builder`; `rules` None = the core's shared rules (`default_rules()`)."""

    builder: TreeBuilder
    rules: RuleSet | None = None

    @property
    def max_emit(self) -> int:
        return self.builder.max_depth + 1

    @property
    def capacity_margin(self) -> int:
        # the drafter writes [prev, pool] from position - 1; the target [root, nodes] from position
        return max(self.builder.pool_size, self.builder.num_nodes) + 1

    def round(self, target, target_params, drafter, drafter_params, target_cache, draft_cache, ctx, key, sampling):
        """One round (see `specjax.decode.Speculator`): returns `RoundOutput` with tokens `[B, depth+1]`."""
        vocab = target.config.vocab_size
        self.builder.check(vocab)                  # static shape errors surface as ValueError at trace time
        rules = self.rules if self.rules is not None else default_rules()
        b = ctx.pending.shape[0]
        key_build, key_walk = jax.random.split(key)
        tree, draft_cache, source = self.builder.build(drafter, drafter_params, draft_cache, ctx, key_build, sampling)
        check_tree_batch(tree, b)
        probs, hidden, target_cache = score_tree(target, target_params, target_cache, tree, ctx.position, sampling,
                                                 self.builder.max_depth)
        path, n, tokens = walk_tree(key_walk, tree, probs, rules, self.builder.max_depth,
                                   self.builder.laws)
        target_cache = commit_path(target_cache, ctx.position, path, n)
        draft_path = jnp.where(path >= 0, jnp.take_along_axis(source, jnp.clip(path, 0, None), axis=1), -1)
        draft_cache = commit_path(draft_cache, ctx.position, draft_path, n)
        path_hidden = jnp.take_along_axis(hidden, jnp.clip(path, 0, None)[..., None], axis=1)
        num_drafted = jnp.sum(tree.valid[:, 1:], axis=1).astype(jnp.int32)
        return RoundOutput(target_cache, draft_cache, tokens, n, num_drafted, path_hidden)


def make_builder(method: str, *, budget: int = 16, depth: int | None = None, top_k: int | None = None,
                 branching: tuple[int, ...] | None = None, width: int | None = None, chains: int | None = None,
                 paths: tuple[tuple[int, ...], ...] | None = None) -> TreeBuilder:
    """The builder for `method` in TREE_METHODS with at most `budget` nodes; unset shape knobs follow from budget.

    eagle: top_k (4) per expansion, depth (5, raised until the pool holds `budget`); rsd-c: branching per depth
    (default (4, 2, 2, ...) then 1s while the total stays within budget); rsd-s: beam width (max(4, budget // 8)),
    depth (budget // width); specinfer: chains (max(4, budget // 8)), depth (budget // chains); static: rank paths
    (default: the `budget` best paths under a position-only acceptance guess).
    """
    if method not in TREE_METHODS:
        raise ValueError(f"unknown tree method {method!r}; known: {TREE_METHODS}")
    check_int("budget", budget, low=1)
    if method == "eagle":
        k = top_k or 4
        d = depth or 5
        while depth is None and k + (d - 1) * k * k < budget:
            d += 1
        return Eagle2Tree(budget=budget, top_k=k, depth=d)
    if method == "rsd-c":
        if branching is None:
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
            if depth is not None:
                branching = branching[:depth]
        return RSDCTree(branching=tuple(branching))
    if method == "rsd-s":
        w = width or min(budget, max(4, budget // 8))           # depth stays <= 8 by default
        return RSDSTree(width=w, depth=depth or max(1, budget // w))
    if method == "specinfer":
        k = chains or min(budget, max(4, budget // 8))
        return SpecInferTree(chains=k, depth=depth or max(1, budget // k))
    return StaticTree(paths=paths if paths is not None else default_static_paths(budget))


def make_speculator(method: str, *, budget: int = 16, rules: RuleSet | None = None, **shape) -> TreeSpeculator:
    """`TreeSpeculator` for the CLI: `make_speculator(method, budget=N, **shape)`; shape knobs as in `make_builder`
    (depth, top_k, branching, width, chains, paths). ValueError on an unknown method or a bad shape."""
    return TreeSpeculator(make_builder(method, budget=budget, **shape), rules)
