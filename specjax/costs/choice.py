"""Whether and how to speculate, chosen from a device's cost profile and an acceptance estimate (`--method auto`).

The latency model (`specjax.costs.latency`) predicts a method's steady tokens/s from its round's calls and its τ.
A chain's τ comes from per-position acceptance: with r_i = P(draft i accepted | drafts < i accepted),
τ(K) = 1 + Σ_{i≤K} Π_{j≤i} r_j. The estimate of r_i is a Beta posterior per position, updated from the rounds a
decode actually ran (`AcceptanceEstimate.update`), so a choice made on a prior is revised as acceptance is observed.
The choice speculates only when its predicted rate beats AR's by a margin, since a wrong guess costs more than a
missed gain (a mis-estimated chain on a device where T-token calls are dear loses to AR).

Pure numpy on the profile's curves; no model code.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from specjax.costs.latency import AcceptanceProfile, ar_plan, chain_plan, predict
from specjax.costs.profile import CostProfile
from specjax.validation import check_int


@dataclass(frozen=True)
class AcceptanceEstimate:
    """Per-position acceptance of a chain's drafts as Beta posteriors: position i (1-based) has prior mean
    `prior[i-1]` worth `strength` pseudo-rounds, and `accepted[i-1]` successes in `tried[i-1]` observed tries. Positions
    past the prior's length take its last entry."""

    prior: tuple[float, ...] = (0.5,)
    strength: float = 2.0
    accepted: tuple[int, ...] = field(default=())
    tried: tuple[int, ...] = field(default=())

    def __post_init__(self):
        prior = tuple(float(r) for r in self.prior)
        if not prior or not all(0.0 <= r <= 1.0 for r in prior):
            raise ValueError(f"prior acceptance rates must be a non-empty tuple in [0, 1], got {self.prior}")
        if not np.isfinite(self.strength) or self.strength <= 0:
            raise ValueError(f"the prior's strength (pseudo-rounds) must be > 0, got {self.strength}")
        if len(self.accepted) != len(self.tried) or any(a < 0 or a > t for a, t in zip(self.accepted, self.tried)):
            raise ValueError(f"need 0 <= accepted <= tried per position, got {self.accepted} of {self.tried}")
        object.__setattr__(self, "prior", prior)

    def rates(self, positions: int) -> np.ndarray:
        """`[positions]` posterior mean r_i."""
        check_int("positions", positions, low=1)
        prior = np.array([self.prior[min(i, len(self.prior) - 1)] for i in range(positions)])
        acc, tried = np.zeros(positions), np.zeros(positions)
        n = min(positions, len(self.tried))
        acc[:n], tried[:n] = self.accepted[:n], self.tried[:n]
        return (prior * self.strength + acc) / (self.strength + tried)

    def chain_tau(self, num_draft: int) -> float:
        """τ(K) = 1 + Σ_{i≤K} Π_{j≤i} r_j under the posterior means (the latency model's `chain_tau`)."""
        rates = self.rates(check_int("num_draft", num_draft, low=1))
        return AcceptanceProfile(tuple((float(r),) for r in rates)).chain_tau(num_draft)

    def update(self, accepted: np.ndarray, drafted: np.ndarray) -> "AcceptanceEstimate":
        """The estimate after a chain decode's per-round logs `accepted [..., R]` (-1 where no round ran) and
        `drafted [..., R]`: draft i was tried in a round that drafted at least i tokens and accepted the i - 1 before
        it, and accepted where the round accepted at least i."""
        accepted, drafted = np.asarray(accepted).ravel(), np.asarray(drafted).ravel()
        ran = accepted >= 0
        accepted, drafted = accepted[ran], drafted[ran]
        positions = max(int(drafted.max(initial=0)), len(self.tried))
        acc, tried = np.zeros(positions, np.int64), np.zeros(positions, np.int64)
        acc[:len(self.accepted)], tried[:len(self.tried)] = self.accepted, self.tried
        for i in range(1, positions + 1):
            tried[i - 1] += int(((drafted >= i) & (accepted >= i - 1)).sum())
            acc[i - 1] += int(((drafted >= i) & (accepted >= i)).sum())
        return AcceptanceEstimate(self.prior, self.strength, tuple(acc.tolist()), tuple(tried.tolist()))

    def to_dict(self) -> dict:
        return {"prior": list(self.prior), "strength": self.strength, "accepted": list(self.accepted),
                "tried": list(self.tried)}

    @classmethod
    def from_dict(cls, d: dict) -> "AcceptanceEstimate":
        try:
            return cls(tuple(d["prior"]), float(d["strength"]), tuple(d["accepted"]), tuple(d["tried"]))
        except (KeyError, TypeError) as e:
            raise ValueError(f"an acceptance estimate needs prior, strength, accepted and tried ({e})") from None


@dataclass(frozen=True)
class Choice:
    """What to run: AR (`num_draft` 0) or a chain of `num_draft` drafts, with the predictions behind it."""

    num_draft: int
    tau: float
    """The estimated τ of the choice (1 for AR)."""
    tokens_per_s: float
    """Its predicted steady tokens/s."""
    ar_tokens_per_s: float
    """AR's predicted steady tokens/s on the same profile."""
    candidates: dict[str, float] = field(default_factory=dict, compare=False)
    """Every candidate's predicted speedup over AR, by name."""

    @property
    def method(self) -> str:
        return "ar" if self.num_draft == 0 else "chain"

    @property
    def speedup(self) -> float:
        return self.tokens_per_s / self.ar_tokens_per_s

    def to_dict(self) -> dict:
        return {"method": self.method, "num_draft": self.num_draft, "tau_estimate": self.tau,
                "predicted_speedup": self.speedup, "candidates": self.candidates}


def choose(profile: CostProfile, estimate: AcceptanceEstimate, max_draft: int = 8, margin: float = 0.05) -> Choice:
    """The fastest of AR and chains of K = 1..max_draft drafts by the latency model on `profile` at the estimate's
    τ(K); a chain only if it beats AR's predicted rate by more than `margin` (and never without a drafter curve).
    Chains whose verification or drafting the profile has not measured are skipped."""
    check_int("max_draft", max_draft, low=1)
    if not 0 <= margin < 1:
        raise ValueError(f"the margin must lie in [0, 1), got {margin}")
    ar = predict(profile, ar_plan(), 1.0).steady_tokens_per_s
    best = Choice(0, 1.0, ar, ar)
    speedups = {}
    if profile.drafter is not None:
        for k in range(1, max_draft + 1):
            tau = estimate.chain_tau(k)
            try:
                rate = predict(profile, chain_plan(k), tau).steady_tokens_per_s
            except ValueError:                       # T = K + 1 (or a drafter step) outside the profiled grid
                continue
            speedups[f"chain K={k}"] = rate / ar
            if rate > ar * (1 + margin) and rate > best.tokens_per_s:
                best = Choice(k, tau, rate, ar)
    return Choice(best.num_draft, best.tau, best.tokens_per_s, ar, speedups)
