"""Cost profiles of a device: what a target call, a drafter step, a tree level and a round cost, as measured
(`specjax profile`) or derived from a roofline (`specjax.costs.roofline`); read by the latency model (`specjax.costs.latency`).

A `DeviceProfile` is the JSON-level object: cost curves over T (tokens a call scores) at several contexts S (cache
slots a query attends over) and batch sizes B, plus the fixed overheads. `DeviceProfile.at(S, B)` gives the
`CostProfile` of one decode: the entry measured at B, linearly interpolated in S between the two measured contexts
around it. Every check is eager: negative or non-finite costs, a curve that falls as T grows, a grid point, context
or batch that was not profiled raise ValueError.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from specjax.validation import check_int

FORMAT = "specjax-cost-profile/1"


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0 seconds, got {value}")
    return value


@dataclass(frozen=True)
class CostCurve:
    """Seconds of one call as a function of the tokens T it processes, measured on a grid and linearly interpolated
    between grid points (never extrapolated: a T outside the grid is a missing entry)."""

    tokens: tuple[int, ...]
    """T grid `[G]`, strictly ascending, every T >= 1."""
    seconds: tuple[float, ...]
    """Seconds per call `[G]` at each T; finite, >= 0, non-decreasing in T (one more query token never removes
    work; the profiler smooths measured dips, see `specjax.bench.profile`)."""
    name: str = field(default="cost", compare=False)
    """What the curve measures (in error messages)."""

    def __post_init__(self):
        tokens = tuple(check_int(f"{self.name} tokens", t, low=1) for t in self.tokens)
        seconds = tuple(_check_seconds(f"{self.name} seconds", s) for s in self.seconds)
        if not tokens or len(tokens) != len(seconds):
            raise ValueError(f"{self.name}: tokens ({len(tokens)}) and seconds ({len(seconds)}) must be non-empty "
                             "and of the same length")
        if any(b <= a for a, b in zip(tokens, tokens[1:])):
            raise ValueError(f"{self.name}: the T grid must be strictly ascending, got {tokens}")
        dips = [(tokens[i], tokens[i + 1]) for i in range(len(seconds) - 1) if seconds[i + 1] < seconds[i]]
        if dips:
            raise ValueError(f"{self.name}: costs must be non-decreasing in T; they fall between T = {dips}")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "seconds", seconds)

    def __call__(self, t: int) -> float:
        """Seconds of a call over `t` tokens. ValueError when t lies outside the measured grid."""
        t = check_int(f"{self.name} T", t, low=1)
        if t < self.tokens[0] or t > self.tokens[-1]:
            raise ValueError(f"{self.name}: T = {t} lies outside the profiled grid [{self.tokens[0]}, "
                             f"{self.tokens[-1]}]: profile it")
        return float(np.interp(t, self.tokens, self.seconds))

    def ratio(self, t: int) -> float:
        """c(t) / c(smallest T on the grid): how much dearer a call over t tokens is (1 for a flat curve)."""
        base = self.seconds[0]
        if base <= 0:
            raise ValueError(f"{self.name}: the cost at T = {self.tokens[0]} is zero, so ratios are undefined")
        return self(t) / base

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], name: str = "cost") -> "CostCurve":
        try:
            return cls(tuple(d["tokens"]), tuple(d["seconds"]), name)
        except (KeyError, TypeError) as e:
            raise ValueError(f"{name}: a cost curve needs 'tokens' and 'seconds' lists ({e})") from None

    def to_dict(self) -> dict[str, list]:
        return {"tokens": list(self.tokens), "seconds": list(self.seconds)}


@dataclass(frozen=True)
class CostProfile:
    """What one device charges for each piece of a round, at one context (cache capacity S) and batch size B."""

    target: CostCurve
    """A target call scoring T new tokens per row."""
    drafter: CostCurve | None = None
    """A chain drafter step over T tokens per row (forward, warp, sample); None: AR only."""
    tree_level: CostCurve | None = None
    """One tree level over a frontier of T nodes per row (drafter call, warp, top-k children); None: no trees."""
    round_overhead: float = 0.0
    """Fixed seconds per round beyond its model calls (loop bookkeeping, sampling, acceptance rule, commit)."""
    run_overhead: float = 0.0
    """Fixed seconds per `generate` call beyond its prefill calls (host dispatch, buffer set-up)."""
    context: int | None = None
    """S: the cache capacity the curves were measured at (None: unknown / irrelevant)."""
    batch: int = 1
    """B: rows per call."""
    device: str = ""
    """The device, in words (e.g. 'cpu (2 cores)', 'roofline H200')."""

    def __post_init__(self):
        if not isinstance(self.target, CostCurve):
            raise ValueError("target must be a CostCurve")
        for name in ("drafter", "tree_level"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), CostCurve):
                raise ValueError(f"{name} must be a CostCurve or None")
        _check_seconds("round_overhead", self.round_overhead)
        _check_seconds("run_overhead", self.run_overhead)
        check_int("batch", self.batch, low=1)
        if self.context is not None:
            check_int("context", self.context, low=1)


CURVES = ("target", "drafter", "tree_level")


@dataclass(frozen=True)
class ProfileEntry:
    """The curves of one (context, batch)."""

    context: int
    """S: cache slots each query attends over."""
    batch: int
    """B: rows per call."""
    target: CostCurve
    """A target call over T tokens per row."""
    drafter: CostCurve | None = None
    """A chain drafter step over T tokens per row."""
    tree_level: CostCurve | None = None
    """A tree level over a frontier of T nodes per row."""

    def __post_init__(self):
        check_int("context", self.context, low=1)
        check_int("batch", self.batch, low=1)


@dataclass(frozen=True)
class DeviceProfile:
    """Cost curves of one target/drafter pair on one device at several (context, batch), and its overheads."""

    device: str
    """The device in words ('cpu: 2 cores', 'roofline: H200 ...')."""
    kind: str
    """'measured' or 'roofline'."""
    entries: tuple[ProfileEntry, ...]
    """One per (context, batch); no duplicates."""
    round_overhead: float = 0.0
    """Fixed seconds per round beyond its model calls."""
    run_overhead: float = 0.0
    """Fixed seconds per generate call beyond its prefills."""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Free-form provenance (models, grid, load average, figures a roofline used, raw measurements)."""

    def __post_init__(self):
        if self.kind not in ("measured", "roofline"):
            raise ValueError(f"kind must be 'measured' or 'roofline', got {self.kind!r}")
        entries = tuple(self.entries)
        if not entries:
            raise ValueError("a device profile needs at least one (context, batch) entry")
        keys = [(e.context, e.batch) for e in entries]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate (context, batch) entries in {keys}")
        _check_seconds("round_overhead", self.round_overhead)
        _check_seconds("run_overhead", self.run_overhead)
        object.__setattr__(self, "entries", tuple(sorted(entries, key=lambda e: (e.batch, e.context))))

    @property
    def contexts(self) -> tuple[int, ...]:
        return tuple(sorted({e.context for e in self.entries}))

    @property
    def batches(self) -> tuple[int, ...]:
        return tuple(sorted({e.batch for e in self.entries}))

    def at(self, context: int, batch: int = 1) -> CostProfile:
        """The cost profile of a decode at cache capacity S = `context` with B = `batch` rows: the entry at B,
        interpolated linearly in S between the measured contexts around it. ValueError for a batch that was not
        profiled or a context outside the profiled range."""
        context, batch = check_int("context", context, low=1), check_int("batch", batch, low=1)
        rows = [e for e in self.entries if e.batch == batch]
        if not rows:
            raise ValueError(f"batch {batch} was not profiled (profiled: {self.batches})")
        lo = max((e for e in rows if e.context <= context), key=lambda e: e.context, default=None)
        hi = min((e for e in rows if e.context >= context), key=lambda e: e.context, default=None)
        if lo is None or hi is None:
            raise ValueError(f"context {context} lies outside the profiled contexts "
                             f"{[e.context for e in rows]} at batch {batch}")
        w = 0.0 if hi.context == lo.context else (context - lo.context) / (hi.context - lo.context)
        curves = {name: _blend(getattr(lo, name), getattr(hi, name), w, name) for name in CURVES}
        return CostProfile(curves["target"], curves["drafter"], curves["tree_level"], self.round_overhead,
                           self.run_overhead, context, batch, self.device)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "device": self.device, "kind": self.kind, "round_overhead": self.round_overhead,
                "run_overhead": self.run_overhead, "meta": dict(self.meta),
                "entries": [{"context": e.context, "batch": e.batch,
                             **{n: None if getattr(e, n) is None else getattr(e, n).to_dict() for n in CURVES}}
                            for e in self.entries]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DeviceProfile":
        """Parse (and validate) the JSON form written by `to_dict`. ValueError on any missing or bad entry."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            raise ValueError(f"not a cost profile: expected format {FORMAT!r}")
        try:
            entries = tuple(ProfileEntry(
                e["context"], e["batch"], CostCurve.from_dict(e["target"], f"target (S={e['context']})"),
                *(None if e.get(n) is None else CostCurve.from_dict(e[n], f"{n} (S={e['context']})")
                  for n in CURVES[1:])) for e in d["entries"])
            return cls(d["device"], d["kind"], entries, d.get("round_overhead", 0.0), d.get("run_overhead", 0.0),
                       d.get("meta", {}))
        except (KeyError, TypeError) as e:
            raise ValueError(f"cost profile: missing or malformed field {e}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DeviceProfile":
        return cls.from_dict(json.loads(Path(path).read_text()))


def _blend(lo: CostCurve | None, hi: CostCurve | None, w: float, name: str) -> CostCurve | None:
    """(1 - w) lo + w hi on the T grid both share (None if either lacks the curve)."""
    if lo is None or hi is None:
        return None
    if w == 0.0 or lo is hi:
        return lo
    common = sorted(set(lo.tokens) & set(hi.tokens))
    if not common:
        raise ValueError(f"{name}: the neighbouring contexts share no T grid point")
    return CostCurve(tuple(common), tuple((1 - w) * lo(t) + w * hi(t) for t in common), name)
