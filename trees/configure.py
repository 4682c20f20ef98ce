"""Hardware-aware configuration: the method, K, tree budget and depth with the largest predicted tokens/s on one
device, from its cost profile (`specjax.costs.profile`) and an acceptance profile, by the latency model
(`specjax.costs.latency`). Trees are Sequoia's best static trees (`trees.sequoia`) for each (budget, depth), so the search
trades expected accepted length against what this device charges for a wider verification call and deeper drafting.

    search = best_configuration(profile, acceptance)
    search.best.method, search.best.options        # e.g. "static", {"budget": 12, "paths": (...)}
    speculator = search.best.speculator()          # = specjax.methods.make_method(method, **options)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from specjax.costs.profile import CostProfile
from specjax.costs.latency import (AcceptanceProfile, Prediction, RoundPlan, Workload, ar_plan, chain_plan, predict,
    tree_plan)
from specjax.decode.speculator import Speculator
from specjax.decode.chain import ChainSpeculator
from specjax.validation import check_int
from trees.level_loop import TreeBuilder
from trees.builders import StaticTree
from trees.sequoia import sequoia_trees
from trees.speculator import make_speculator


def tree_round_plan(builder: TreeBuilder, name: str = "tree") -> RoundPlan:
    """The calls of one round of `builder`: one tree level per depth over its frontier, one target call over its
    N + 1 nodes."""
    return tree_plan(name, [builder.frontier_size(d) for d in range(builder.max_depth)], builder.num_nodes)


@dataclass(frozen=True)
class Configuration:
    """One candidate: how to build its speculator, and what the model predicts for it."""

    method: str
    """A registered method name ('ar', 'chain', 'static')."""
    options: Mapping[str, Any] = field(hash=False)
    """Its `make_method` options ({} / {'num_draft': K} / {'budget': N, 'paths': rank paths})."""
    prediction: Prediction = field(hash=False)
    """The latency model's terms for it."""

    @property
    def label(self) -> str:
        return self.prediction.plan.name

    @property
    def tokens_per_s(self) -> float:
        return self.prediction.tokens_per_s

    def speculator(self) -> Speculator:
        """The speculator to decode with: what `specjax.methods.make_method(method, **options)` builds (a
        `ChainSpeculator` for 'ar' and 'chain', a `TreeSpeculator` for 'static')."""
        if self.method in ("ar", "chain"):
            return ChainSpeculator(self.options.get("num_draft", 0))
        return make_speculator(self.method, **self.options)


@dataclass(frozen=True)
class Search:
    """Every candidate the search scored, best first."""

    candidates: tuple[Configuration, ...]
    """Sorted by predicted tokens/s, descending."""

    @property
    def best(self) -> Configuration:
        return self.candidates[0]

    def best_of(self, method: str) -> Configuration:
        """The best candidate of one method ('ar', 'chain', 'static')."""
        for c in self.candidates:
            if c.method == method:
                return c
        raise ValueError(f"no {method!r} candidate was searched")


def best_configuration(profile: CostProfile, acceptance: AcceptanceProfile, *, max_draft: int = 8,
                       budgets: Sequence[int] = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
                       depths: Sequence[int] = tuple(range(1, 9)), workload: Workload | None = None) -> Search:
    """Score AR, chains K = 1..`max_draft` and Sequoia's static tree for every (budget, depth) on `profile`, τ from
    `acceptance`; the best by predicted tokens/s (of `workload` when given, else the steady rate). Budgets and
    depths whose calls the profile does not cover raise ValueError (profile a wider T grid)."""
    check_int("max_draft", max_draft, low=0)
    if not isinstance(acceptance, AcceptanceProfile):
        raise ValueError("acceptance must be an AcceptanceProfile")
    cands = [Configuration("ar", {}, predict(profile, ar_plan(), 1.0, workload))]
    for k in range(1, max_draft + 1):
        cands.append(Configuration("chain", {"num_draft": k},
                                   predict(profile, chain_plan(k), acceptance.chain_tau(k), workload)))
    budgets = sorted({check_int("budget", b, low=1) for b in budgets})
    for depth in sorted({check_int("depth", d, low=1) for d in depths}):
        for tree in sequoia_trees(acceptance, budgets, depth):
            if tree.depth < depth:                   # the same tree as at a smaller depth limit
                continue
            builder = StaticTree(tree.paths)
            plan = tree_round_plan(builder, f"static N={builder.num_nodes} D={builder.max_depth}")
            cands.append(Configuration("static", {"budget": builder.num_nodes, "paths": builder.paths},
                                       predict(profile, plan, tree.tau, workload)))
    return Search(tuple(sorted(cands, key=lambda c: -c.tokens_per_s)))
