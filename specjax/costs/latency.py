"""An interpretable latency model of speculative decoding: predicted tokens/s of AR, chain and tree decoding from a
device's cost profile and an acceptance profile. Pure numpy; no model code.

A round of any method is  draft + verify + overhead:
- draft:    the drafter calls of the round. A chain of K drafts is one drafter step over 2 tokens (`prev` re-scored
            with `pending`) and K - 1 steps over 1 token; a tree is one *tree level* per depth, level d running the
            drafter over its frontier (2 tokens at the root: `prev` and the root; the whole level after).
- verify:   one target call scoring T tokens: T = 1 (AR), K + 1 (chain), N + 1 (a tree of N nodes).
- overhead: a fixed per-round cost (loop bookkeeping, sampling, acceptance rule, commit).
A round emits τ tokens on average (τ = accepted drafts + 1, `specjax.metrics`), so the steady rate is τ / round.
A whole `generate` call adds the prefills (target, and drafter, over the prompt's width W) and a fixed run overhead,
and needs E[R] ≈ (n - 1) / τ + (1 - 1/τ) / 2 rounds for n tokens (the first comes from the prefill; the second
term is the mean overshoot of the last round when each round emits about τ tokens: exact for AR and, averaged over
run lengths, for any fixed integer step).

Axes: T tokens a call scores, S cache slots a query attends over (specjax's forward reads every slot of its cache
under a mask, so a call's cost depends on the capacity S, not on how many slots are filled), B batch rows,
K chain drafts, N tree nodes (root excluded), D depth, k ranks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from specjax.costs.profile import CostCurve, CostProfile
from specjax.validation import check_int


# --- what a round does (its shape), independent of any device ------------------------------------------------


@dataclass(frozen=True)
class RoundPlan:
    """The calls one round makes, per row."""

    name: str
    """A label (e.g. 'ar', 'chain K=4', 'static budget 16')."""
    verify_tokens: int
    """T of the round's target call (1 for AR, K + 1 for a chain, N + 1 for a tree)."""
    drafter_steps: tuple[int, ...] = ()
    """Tokens of each chain drafter step of the round (a chain of K: (2, 1, ..., 1))."""
    tree_levels: tuple[int, ...] = ()
    """Tokens of each tree level of the round (the root level: 2, prev and the root; level d: its frontier)."""

    def __post_init__(self):
        check_int("verify_tokens", self.verify_tokens, low=1)
        for t in self.drafter_steps + self.tree_levels:
            check_int("tokens of a drafter call", t, low=1)

    @property
    def drafts(self) -> bool:
        return bool(self.drafter_steps or self.tree_levels)

    @property
    def drafter_tokens(self) -> int:
        """Tokens the drafter processes per round."""
        return sum(self.drafter_steps) + sum(self.tree_levels)


def ar_plan() -> RoundPlan:
    """Autoregressive decoding: one target call over one token, nothing drafted."""
    return RoundPlan("ar", 1)


def chain_plan(num_draft: int) -> RoundPlan:
    """Chain speculative decoding with K = `num_draft` drafts (`specjax.decode.draft.draft_chain`)."""
    k = check_int("num_draft", num_draft, low=1)
    return RoundPlan(f"chain K={k}", k + 1, drafter_steps=(2,) + (1,) * (k - 1))


def tree_plan(name: str, frontiers: Sequence[int], num_nodes: int) -> RoundPlan:
    """A tree round: `frontiers[d]` nodes expanded at level d (frontiers[0] = 1, the root), N = `num_nodes` scored.
    The root level also re-scores `prev`, so it runs over 2 tokens."""
    frontiers = tuple(check_int("frontier size", f, low=1) for f in frontiers)
    if not frontiers or frontiers[0] != 1:
        raise ValueError(f"a tree's level-0 frontier is its root alone, got frontiers {frontiers}")
    n = check_int("num_nodes", num_nodes, low=1)
    return RoundPlan(name, n + 1, tree_levels=(2,) + frontiers[1:])


# --- acceptance -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AcceptanceProfile:
    """Positional acceptance (Sequoia): `rates[d, j]` = P(the rank-j child of a node at depth d is accepted | that
    node was accepted), taken to depend on the position (depth d, rank j) only. Under point-mass verification at
    most one child is accepted, so each depth's rates sum to <= 1."""

    rates: tuple[tuple[float, ...], ...]
    """`[D, k]`: depth d = 0 is the root's children; rank j = 0 the drafter's most likely token."""

    def __post_init__(self):
        try:
            a = np.asarray(self.rates, np.float64)
        except (TypeError, ValueError):
            raise ValueError("rates must be a rectangular [D, k] table of numbers") from None
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.size == 0:
            raise ValueError(f"rates must be a non-empty [D, k] table, got shape {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
            raise ValueError("acceptance rates must lie in [0, 1]")
        if np.any(a.sum(axis=1) > 1 + 1e-9):
            raise ValueError(f"the rates of one depth sum to more than 1 ({a.sum(axis=1).max():.4f}): at most one "
                             "child of a node is accepted")
        object.__setattr__(self, "rates", tuple(tuple(float(x) for x in row) for row in a))

    @classmethod
    def from_ranks(cls, ranks: Any, num_ranks: int) -> "AcceptanceProfile":
        """Rates from observed ranks `[starts, D]` (ranks[t, d]: the rank of the target's token at depth d + 1 of a
        round starting at t, greedy; `specjax.bench.acceptance`): rates[d, j] = P(rank at depth d = j | every
        earlier rank < `num_ranks`), i.e. conditional on the path lying in a full tree of that width."""
        k = check_int("num_ranks", num_ranks, low=1)
        r = np.asarray(ranks)
        if r.ndim != 2 or r.shape[0] < 1 or r.shape[1] < 1 or not np.issubdtype(r.dtype, np.integer) or r.min() < 0:
            raise ValueError(f"ranks must be non-negative integers [starts, D], got {r.dtype} {r.shape}")
        rows = []
        inside = np.ones(r.shape[0], bool)
        for d in range(r.shape[1]):
            if not inside.any():
                raise ValueError(f"no start reaches depth {d + 1} inside the top-{k} tree: use fewer depths")
            rows.append(tuple(float(np.mean(r[inside, d] == j)) for j in range(k)))
            inside &= r[:, d] < k
        return cls(tuple(rows))

    @property
    def depth(self) -> int:
        return len(self.rates)

    @property
    def ranks(self) -> int:
        return len(self.rates[0])

    def rate(self, depth: int, rank: int) -> float:
        """rates[d, j]; depths past the table reuse its last row (a 1-row table is Sequoia's depth-free vector);
        ranks past it are 0."""
        row = self.rates[min(depth, self.depth - 1)]
        return row[rank] if rank < len(row) else 0.0

    def chain_tau(self, num_draft: int) -> float:
        """τ of a chain of K = `num_draft` drafts: 1 + Σ_{d<K} Π_{e<=d} rates[e, 0]."""
        k = check_int("num_draft", num_draft, low=0)
        reach, total = 1.0, 1.0
        for d in range(k):
            reach *= self.rate(d, 0)
            total += reach
        return total


# --- the prediction --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A whole `generate` call, so that prefill and run overhead count."""

    new_tokens: int
    """n: tokens generated per row (the first comes from the prefill)."""
    prompt_width: int
    """W: the padded prompt width both prefills run over (`specjax.decode.batching.bucket_size`)."""

    def __post_init__(self):
        check_int("new_tokens", self.new_tokens, low=1)
        check_int("prompt_width", self.prompt_width, low=1)


def expected_rounds(new_tokens: int, tau: float) -> float:
    """E[R] ≈ (n - 1)/τ + (1 - 1/τ)/2 rounds to emit n tokens when the prefill emits the first (0 for n = 1)."""
    n = check_int("new_tokens", new_tokens, low=1)
    tau = _check_tau(tau)
    return 0.0 if n == 1 else (n - 1) / tau + 0.5 * (1.0 - 1.0 / tau)


def _check_tau(tau: Any) -> float:
    tau = float(tau)
    if not math.isfinite(tau) or tau < 1:
        raise ValueError(f"τ (tokens per round) must be finite and >= 1, got {tau}")
    return tau


@dataclass(frozen=True)
class Prediction:
    """The model's terms for one method on one device (seconds per round unless said otherwise)."""

    plan: RoundPlan
    """The round's calls."""
    tau: float
    """τ: tokens emitted per round."""
    draft_s: float
    """Drafting: the round's drafter steps and tree levels."""
    verify_s: float
    """The round's target call over `plan.verify_tokens` tokens."""
    overhead_s: float
    """The fixed per-round overhead."""
    workload: Workload | None = None
    """The whole run, if given (then prefill and run overhead count)."""
    prefill_s: float = 0.0
    """Prefill calls of the run (target, plus the drafter's when the method drafts) and the run overhead."""
    rounds: float = math.nan
    """E[R]: rounds of the run."""

    @property
    def round_s(self) -> float:
        return self.draft_s + self.verify_s + self.overhead_s

    @property
    def steady_tokens_per_s(self) -> float:
        """τ / round: the rate far from the start of a run."""
        return self.tau / self.round_s

    @property
    def run_s(self) -> float:
        """Seconds of the whole run (needs a workload)."""
        if self.workload is None:
            raise ValueError("run_s needs a Workload")
        return self.prefill_s + self.rounds * self.round_s

    @property
    def tokens_per_s(self) -> float:
        """Tokens/s of the run when a workload is given, else the steady rate."""
        return self.steady_tokens_per_s if self.workload is None else self.workload.new_tokens / self.run_s

    def terms(self) -> dict[str, Any]:
        """The named terms, for reports (JSON-friendly)."""
        out = {"method": self.plan.name, "tau": self.tau, "draft_s": self.draft_s, "verify_s": self.verify_s,
               "overhead_s": self.overhead_s, "round_s": self.round_s,
               "steady_tokens_per_s": self.steady_tokens_per_s, "tokens_per_s": self.tokens_per_s}
        if self.workload is not None:
            out.update(prefill_s=self.prefill_s, rounds=self.rounds, run_s=self.run_s)
        return out


def _need(curve: CostCurve | None, what: str, plan: RoundPlan) -> CostCurve:
    if curve is None:
        raise ValueError(f"{plan.name} needs the profile's {what} curve, which it lacks")
    return curve


def predict(profile: CostProfile, plan: RoundPlan, tau: float, workload: Workload | None = None) -> Prediction:
    """The model's prediction for one method: `plan` (its calls), τ (its tokens per round: measured, from
    `AcceptanceProfile`, or the exact expected accepted length + 1 of `trees.reward`), on `profile`'s device.
    ValueError when the profile lacks a curve or grid point the plan needs, or τ is not in [1, verify_tokens]."""
    tau = _check_tau(tau)
    if tau > plan.verify_tokens + 1e-9:
        raise ValueError(f"{plan.name} emits at most {plan.verify_tokens} tokens per round, τ = {tau}")
    draft = sum(_need(profile.drafter, "drafter", plan)(t) for t in plan.drafter_steps) if plan.drafter_steps else 0.
    if plan.tree_levels:
        draft += sum(_need(profile.tree_level, "tree_level", plan)(t) for t in plan.tree_levels)
    pred = Prediction(plan, tau, draft, profile.target(plan.verify_tokens), profile.round_overhead)
    if workload is None:
        return pred
    prefill = profile.target(workload.prompt_width) + profile.run_overhead
    if plan.drafts:
        prefill += _need(profile.drafter, "drafter", plan)(workload.prompt_width)
    return Prediction(plan, tau, pred.draft_s, pred.verify_s, pred.overhead_s, workload, prefill,
                      expected_rounds(workload.new_tokens, tau))


def break_even_tau(profile: CostProfile, plan: RoundPlan) -> float:
    """The τ a method needs to match AR on this device (steady state): its round cost over an AR round's."""
    return predict(profile, plan, 1.0).round_s / predict(profile, ar_plan(), 1.0).round_s


def speedup(tau: Any, cost_ratio: Any, draft_ratio: Any = 0.0, overhead_ratio: Any = 0.0) -> np.ndarray:
    """Steady speedup over AR of a method with τ tokens per round whose target call costs `cost_ratio` = c(T)/c(1)
    AR calls, its drafting `draft_ratio` and the round overhead `overhead_ratio` (both in units of c(1)):
    τ (1 + o) / (r + δ + o). Broadcasts over arrays (the scaling surface)."""
    tau, r = np.asarray(tau, np.float64), np.asarray(cost_ratio, np.float64)
    d, o = np.asarray(draft_ratio, np.float64), np.asarray(overhead_ratio, np.float64)
    if np.any(tau < 1) or np.any(r < 1) or np.any(d < 0) or np.any(o < 0):
        raise ValueError("need τ >= 1, cost_ratio >= 1, draft_ratio >= 0, overhead_ratio >= 0")
    return tau * (1 + o) / (r + d + o)
