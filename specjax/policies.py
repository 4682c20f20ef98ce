"""Draft-length policies: how many tokens each row drafts this round, decided inside the jitted loop.

A policy is a frozen dataclass of static hyperparameters with pure functions of per-row state:
- `init(batch) -> memory`: what the policy remembers between rounds (a pytree of `[B, ...]` arrays, or None);
- `start(memory, batch) -> carry`: the per-round carry of the drafting loop;
- `keep(carry, step, stats, accept_prob) -> (keep [B] bool, carry)`: whether each row drafts draft number `step`
  (0-based), given `stats [B, 2]` = `specjax.sampling.law_statistics` (log top probability, entropy) of the
  drafter's law for it (the warped law; at temperature 0, where that is one-hot, the raw softmax) and, for
  policies that read it, a predicted acceptance probability `[B]` of that draft (`specjax.acceptance_head`);
- `update(memory, num_drafted [B], num_accepted [B]) -> memory`: learn from the round.
Draft 0 is always drafted (a round without drafts is an AR step). Whatever a policy decides, the verifier treats
undrafted slots as absent, so every policy is lossless: it can change the speed, never the output law.

Policies: `fixed` (K_max every round), `confidence:h` (Kangaroo: stop when the drafter's top probability falls below
h), `specdec++:h` (SpecDec++: stop once the predicted probability that some draft so far is rejected exceeds h),
`feedback` (DiffuSpec's adaptive draft length: next length from the recent accepted lengths).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from specjax.validation import check_int


def check_threshold(name: str, value: float) -> float:
    """A threshold in [0, 1] (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} threshold must be a number in [0, 1], got {value!r}")
    return float(value)


class DraftPolicy:
    """Base class: drafts every step (`fixed`)."""

    name = "fixed"
    reads_acceptance = False        # whether `keep` needs predicted acceptance probabilities

    def init(self, batch: int) -> Any:
        return None

    def start(self, memory: Any, batch: int) -> Any:
        return None

    def keep(self, carry: Any, step: jax.Array, stats: jax.Array, accept_prob: jax.Array | None
             ) -> tuple[jax.Array, Any]:
        return jnp.ones(stats.shape[:1], bool), carry

    def update(self, memory: Any, num_drafted: jax.Array, num_accepted: jax.Array) -> Any:
        return memory


@dataclass(frozen=True)
class Fixed(DraftPolicy):
    """Draft K_max tokens every round."""


@dataclass(frozen=True)
class Confidence(DraftPolicy):
    """Kangaroo's stop rule: draft the next token only while the drafter's top probability is at least
    `threshold` (its confidence in the token it would propose)."""

    threshold: float = 0.4
    name = "confidence"

    def __post_init__(self):
        check_threshold("confidence", self.threshold)

    def keep(self, carry, step, stats, accept_prob):
        return stats[:, 0] >= jnp.log(self.threshold), carry                 # top probability >= threshold


@dataclass(frozen=True)
class SpecDecPP(DraftPolicy):
    """SpecDec++: with a head predicting each draft's acceptance probability a_t (given its prefix accepted), stop
    as soon as P(some draft so far is rejected) = 1 - Π_{i<=t} a_i exceeds `threshold` (the threshold policy, optimal
    for its MDP). The carry is the running product of the predicted acceptances."""

    threshold: float = 0.7
    name = "specdec++"
    reads_acceptance = True

    def __post_init__(self):
        check_threshold("specdec++", self.threshold)

    def start(self, memory, batch):
        return jnp.ones((batch,), jnp.float32)

    def keep(self, carry, step, stats, accept_prob):
        survive = carry * accept_prob
        return 1.0 - survive <= self.threshold, survive


@dataclass(frozen=True)
class Feedback(DraftPolicy):
    """DiffuSpec's adaptive draft length: each row drafts `round(ema) + 1` tokens (capped by K_max by the loop),
    where ema is an exponential moving average (weight `rate`) of its accepted drafts per round: a row whose drafts
    keep being accepted drafts more, one whose drafts are rejected drafts fewer."""

    rate: float = 0.5
    initial: float = 2.0
    name = "feedback"

    def __post_init__(self):
        check_threshold("feedback rate", self.rate)

    def init(self, batch):
        return jnp.full((batch,), self.initial, jnp.float32)

    def start(self, memory, batch):
        return jnp.round(memory).astype(jnp.int32) + 1          # this round's length per row

    def keep(self, carry, step, stats, accept_prob):
        return step < carry, carry

    def update(self, memory, num_drafted, num_accepted):
        # a row that accepted everything it drafted may deserve more than it drafted: count one extra token
        signal = num_accepted + (num_accepted >= num_drafted)
        return (1.0 - self.rate) * memory + self.rate * signal.astype(jnp.float32)


POLICIES = {"fixed": Fixed, "confidence": Confidence, "specdec++": SpecDecPP, "feedback": Feedback}


def parse_policy(spec: str) -> DraftPolicy:
    """`NAME[:VALUE]` -> a policy (`fixed`, `confidence:0.4`, `specdec++:0.7`, `feedback[:rate]`); ValueError on an
    unknown name or a bad value, before anything is built."""
    name, _, value = spec.partition(":")
    if name not in POLICIES:
        raise ValueError(f"unknown draft policy {name!r}; known: {sorted(POLICIES)}")
    if not value:
        return POLICIES[name]()
    if name == "fixed":
        raise ValueError("the fixed policy takes no value: set the length with -K")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"draft policy {spec!r}: {value!r} is not a number") from None
    return Feedback(rate=number) if name == "feedback" else POLICIES[name](number)


def check_k_max(k_max: int) -> int:
    return check_int("num_draft (K_max)", k_max, low=1)
