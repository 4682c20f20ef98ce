"""Draft-length policies: how many tokens each row drafts this round, decided inside the jitted loop.

A policy is a frozen dataclass of static hyperparameters with pure functions of per-row state:
- `init(batch) -> memory`: what the policy remembers between rounds (a pytree of `[B, ...]` arrays, or None);
- `start(memory, batch) -> carry`: the per-round carry of the drafting loop;
- `keep(carry, step, stats, accept_prob) -> (keep [B] bool, carry)`: whether each row drafts draft number `step`
  (0-based), given `stats [B, 2]` = `specjax.sampling.law_statistics` (log top probability, entropy) of the
  drafter's law for it (the warped law; at temperature 0, where that is one-hot, the raw softmax) and, for
  policies that read it, a predicted acceptance probability `[B]` of that draft (`specjax.training.acceptance_head`);
- `update(memory, num_drafted [B], num_accepted [B]) -> memory`: learn from the round.
`keep` is asked for draft 0 too: a row that declines it drafts nothing and its round is an AR step (where a
verification call scoring several tokens costs much more than one, as on a CPU, declining a doubtful draft is
what lets a policy beat every fixed K). Whatever a policy decides, the verifier treats undrafted slots as absent,
so every policy is lossless: it can change the speed, never the output law.

Policies: `fixed` (K_max every round), `confidence:h` (Kangaroo: stop when the drafter's top probability falls below
h), `specdec++:h` (SpecDec++: stop once the predicted probability that some draft so far is rejected exceeds h),
`feedback` (DiffuSpec's adaptive draft length: next length from the recent accepted lengths), `del[:h]` (DEL: the
target drafts itself from an early exit chosen per round with the length, by expected tokens per unit of weights
read; a self-drafting policy, run by `specjax.decode.dynamic_exit`).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.validation import check_int


def check_threshold(name: str, value: float) -> float:
    """A threshold in [0, 1] (ValueError otherwise)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} threshold must be a number in [0, 1], got {value!r}")
    return float(value)


class DraftPolicy(abc.ABC):
    """The draft-length policy protocol (see the module docstring): subclasses are frozen dataclasses that define
    `keep`, and `init`, `start`, `update` when they remember anything."""

    name = "fixed"
    reads_acceptance = False        # whether `keep` needs predicted acceptance probabilities
    self_drafting = False           # whether the policy drafts from the target's own early exits (no drafter)

    def init(self, batch: int) -> Any:
        return None

    def start(self, memory: Any, batch: int) -> Any:
        return None

    @abc.abstractmethod
    def keep(self, carry: Any, step: jax.Array, stats: jax.Array, accept_prob: jax.Array | None
             ) -> tuple[jax.Array, Any]:
        """Whether each row drafts draft number `step`: (keep `[B]` bool, the carry for the next step)."""

    def update(self, memory: Any, num_drafted: jax.Array, num_accepted: jax.Array) -> Any:
        return memory


@dataclass(frozen=True)
class Fixed(DraftPolicy):
    """Draft K_max tokens every round."""

    def keep(self, carry, step, stats, accept_prob):
        return jnp.ones(stats.shape[:1], bool), carry


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


@struct.dataclass
class ExitMemory:
    """DEL's per-row memory. acceptance `[B, C]`: running estimate of the probability that a draft from each
    candidate exit is accepted (given its prefix); length `[B]` int32: this round's draft length
    (`DynamicExit.choose`)."""

    acceptance: jax.Array
    length: jax.Array


@dataclass(frozen=True)
class DynamicExit(DraftPolicy):
    """DEL (Context-Aware Dynamic Exit Layer for self-speculative decoding): the target drafts itself from its first
    E layers, E chosen each round among the candidate exits `layers` together with the draft length.

    Each row keeps a running estimate a_E of the acceptance of an exit-E draft, learned for every candidate at once
    from the target's own verification pass (its hidden state after E layers at the verified positions gives what
    exit E would have proposed, DEL's shadow tokens; see `specjax.decode.dynamic_exit`). Each round picks the exit, and per
    row the length g <= K_max, maximising the expected tokens of the round, sum_{i<=g} a_E^i, per unit of cost,
    g * cost(E) + cost(target) (DEL's token-per-layer, costs in weights read); drafting then also stops at the
    first draft whose top probability is below `threshold` (the confidence exit). One exit serves the whole batch
    (each exit is a different computation); lengths are per row.

    layers: increasing candidate exits (None: the quarter points of the target's depth, below its top);
    rate: weight of the newest round in the running estimates; prior: their initial value; probes: verified
    positions (from the front of the accepted path) at which each candidate is scored per round."""

    threshold: float = 0.2
    layers: tuple[int, ...] | None = None
    rate: float = 0.3
    prior: float = 0.5
    probes: int = 2
    name = "del"
    self_drafting = True

    def __post_init__(self):
        check_threshold("del confidence", self.threshold)
        check_threshold("del rate", self.rate)
        check_threshold("del prior", self.prior)
        check_int("del probes", self.probes, low=1)
        if self.layers is not None:
            if not isinstance(self.layers, tuple) or not self.layers:
                raise ValueError(f"del layers must be a non-empty tuple of exit layers, got {self.layers!r}")
            for e in self.layers:
                check_int("del exit layer", e, low=1)
            if list(self.layers) != sorted(set(self.layers)):
                raise ValueError(f"del exit layers must be distinct and increasing, got {self.layers}")

    def exits(self, n_layers: int) -> tuple[int, ...]:
        """The candidate exits for a target of `n_layers` layers (ValueError if one is deeper than the target)."""
        if self.layers is None:                 # the quarter points of the depth, below the top layer
            top = max(n_layers - 1, 1)
            return tuple(sorted({min(max(1, round(n_layers * i / 4)), top) for i in range(1, 4)}))
        if self.layers[-1] > n_layers:
            raise ValueError(f"del exit layer {self.layers[-1]} is deeper than the target ({n_layers} layers)")
        return self.layers

    def init_exits(self, batch: int, num_exits: int) -> ExitMemory:
        return ExitMemory(jnp.full((batch, num_exits), self.prior, jnp.float32), jnp.ones((batch,), jnp.int32))

    def choose(self, memory: ExitMemory, draft_costs: jax.Array, verify_cost: float, k_max: int
               ) -> tuple[jax.Array, ExitMemory]:
        """The exit index (scalar) of this round and the memory with each row's length. draft_costs `[C]`: cost of
        one draft step at each exit; verify_cost: cost of the target's pass (same units)."""
        a = jnp.clip(memory.acceptance, 0.0, 1.0)
        powers = a[..., None] ** jnp.arange(k_max + 1, dtype=jnp.float32)                  # [B, C, K+1]
        tokens = jnp.cumsum(powers, axis=-1)[..., 1:]                                         # g = 1..K
        cost = jnp.arange(1, k_max + 1, dtype=jnp.float32) * draft_costs[:, None] + verify_cost      # [C, K]
        per_cost = tokens / cost
        exit_index = jnp.argmax(jnp.sum(jnp.max(per_cost, axis=-1), axis=0))
        length = jnp.argmax(per_cost[:, exit_index], axis=-1).astype(jnp.int32) + 1
        return exit_index, memory.replace(length=length)

    def start(self, memory, batch):
        return memory.length

    def keep(self, carry, step, stats, accept_prob):
        return (step < carry) & (stats[:, 0] >= jnp.log(self.threshold)), carry

    def learn(self, memory: ExitMemory, observed: jax.Array) -> ExitMemory:
        """Fold this round's observed acceptance per exit `[B, C]` into the running estimates."""
        return memory.replace(acceptance=(1.0 - self.rate) * memory.acceptance + self.rate * observed)


POLICIES = {"fixed": Fixed, "confidence": Confidence, "specdec++": SpecDecPP, "feedback": Feedback,
            "del": DynamicExit}


def parse_policy(spec: str) -> DraftPolicy:
    """`NAME[:VALUE]` -> a policy (`fixed`, `confidence:0.4`, `specdec++:0.7`, `feedback[:rate]`, `del[:threshold]`);
    ValueError on an unknown name or a bad value, before anything is built."""
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
