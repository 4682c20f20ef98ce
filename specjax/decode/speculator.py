"""The round contract: what one decode round does (draft, score, verify, commit) behind one narrow interface, and
the checks every method shares.

A speculator is a frozen (hashable) object, the static key of the jitted loop. Its contract:
- `max_emit` (the most tokens a round emits) and `capacity_margin` (cache slots a round may write past the
  committed prefix), both static;
- `check(target, drafter, sampling)`: eager, plain-Python validation of the combination; raises ValueError for a
  combination that cannot work, before anything is traced;
- `init_memory(batch, target)`: per-row state carried between rounds (a draft-length policy's), or None;
- `round(target, drafter, caches, ctx, key, sampling, memory) -> RoundOutput` (`specjax.decode.state`); `key` is
  fresh each round, or the run's own key when `keys_by_position` (coupled verification).

Chain speculators live in `specjax.decode.chain`, tree speculators in `trees.speculator`; `specjax.methods` names
them all.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax

from specjax.decode.state import Caches, DecodeContext, RoundOutput
from specjax.runners.base import Handle, Runner
from specjax.sampling import SamplingConfig


class Speculator(abc.ABC):
    """The round contract (see the module docstring). Subclasses are frozen dataclasses (the static key of the jitted
    loop) that define `max_emit`, `capacity_margin` and `round`."""

    @property
    @abc.abstractmethod
    def max_emit(self) -> int:
        """The most tokens one round emits (accepted drafts + the correction or bonus token)."""

    @property
    @abc.abstractmethod
    def capacity_margin(self) -> int:
        """Cache slots one round may write past the committed prefix."""

    @property
    def needs_drafter(self) -> bool:
        return True

    @property
    def keys_by_position(self) -> bool:
        """Whether `round` takes the run's key itself, the same every round, instead of one folded per round: a
        coupled verifier derives one race per output position from it (`specjax.verify.coupled.output_races`), so
        the output is a function of the key, whatever the drafter and however the rounds fall."""
        return False

    def check(self, target: Runner, drafter: Runner | None, sampling: SamplingConfig) -> None:
        check_pair(self, target, drafter)

    def with_verifier(self, verifier: str, allow_lossy: bool = False) -> "Speculator":
        """This method verified by `verifier` (ValueError if the method cannot use it, or if the rule is lossy and
        `allow_lossy` is not set)."""
        raise ValueError(f"{self!r} takes no verifier")

    def init_memory(self, batch: int, target: Runner) -> Any:
        """What the method remembers per row between rounds (a pytree of `[B, ...]` arrays), or None."""
        return None

    @abc.abstractmethod
    def round(self, *, target: Handle, drafter: Handle | None, caches: Caches, ctx: DecodeContext, key: jax.Array,
              sampling: SamplingConfig, memory: Any = None) -> RoundOutput:
        """One round from `ctx` (draft, score, verify, commit): the emitted tokens and both caches with the accepted
        path committed. Traced inside the loop's jit; every argument is named."""


class ChainShaped(Speculator, abc.ABC):
    """A speculator whose rounds are chains of up to `num_draft` (K) drafts verified by `verifier` (fields of the
    dataclass that subclasses it): a round emits at most K + 1 tokens and writes K + 1 cache slots."""

    num_draft: int
    verifier: str
    allow_lossy: bool             # the verifier may be one of specjax.verify.names.LOSSY_CHAIN_VERIFIERS

    @property
    def max_emit(self) -> int:
        return self.num_draft + 1

    @property
    def capacity_margin(self) -> int:
        return self.num_draft + 1

    def with_verifier(self, verifier: str, allow_lossy: bool = False) -> "ChainShaped":
        return dataclasses.replace(self, verifier=verifier, allow_lossy=allow_lossy)


def check_pair(method: Speculator, target: Runner, drafter: Runner | None) -> None:
    """The checks every method shares: the target is a model (it emits the features EAGLE-style drafters read), a
    drafter iff the method drafts, the same vocabulary, and features of the right width for a drafter that reads
    them. ValueError names what is wrong."""
    if not target.emits_features:
        raise ValueError(f"{target.name} cannot be a target: a target is a model that emits its hidden states")
    if not method.needs_drafter:
        if drafter is not None:
            raise ValueError(f"{method!r} drafts nothing: pass no drafter")
        return
    if drafter is None:
        raise ValueError(f"{method!r} needs a drafter")
    if drafter.config.vocab_size != target.config.vocab_size:
        raise ValueError(f"drafter vocabulary ({drafter.config.vocab_size}) does not match the target's "
                         f"({target.config.vocab_size})")
    if drafter.reads_features and drafter.feature_width != target.feature_width:
        raise ValueError(f"drafter {drafter.name} reads features of width {drafter.feature_width}, the target's "
                         f"are {target.feature_width} (a drafter of fused features decodes with the target handle "
                         f"it was built from: specjax.runners.model.fused_features)")
