"""Shared benchmark helpers: decode a list of prompts with one method, timed after compilation, and summarise.

Each prompt is decoded alone (batch 1), as a user would; every prompt-width bucket is compiled by a warm-up call
before the clock starts, so the timings never include compilation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import numpy as np

from specjax.bench.experiment import provenance
from specjax.bench.timing import timed
from specjax.decode.batching import bucket_size, pad_prompts
from specjax.decode.loop import GenerateResult, generate
from specjax.runners.base import Handle


@dataclass
class Run:
    """One prompt decoded by one method: generated ids, wall seconds (compiled; the median of `samples` when the
    prompt was timed more than once), τ, mean drafted tokens/round, every timed run's seconds, and the per-position
    acceptance (`specjax.metrics.acceptance_per_position`)."""

    tokens: list[int]
    seconds: float
    tau: float
    drafted_per_round: float
    samples: list[float] = field(default_factory=list)
    acceptance_per_position: list[float] = field(default_factory=list)


def decode_prompts(target: Handle, prompts: Sequence[Sequence[int]], *, seed: int = 0, repeats: int = 1,
                   **kwargs) -> list[Run]:
    """Decode each prompt (token ids) with `generate(target, ..., **kwargs)`, one at a time, timed after a warm-up
    call per prompt-width bucket. Prompt i uses key `seed + 1 + i`. With `repeats` > 1 every prompt is timed that
    many times (in turns over the prompts, so a burst of load on a shared machine hits one repeat of each rather
    than every repeat of one) and `Run.seconds` is their median."""
    return decode_interleaved(target, prompts, {"": kwargs}, seed=seed, repeats=repeats)[""]


def decode_interleaved(target: Handle, prompts: Sequence[Sequence[int]], configs: dict[str, dict[str, Any]], *,
                       seed: int = 0, repeats: int = 1, between: Callable[[], None] | None = None
                       ) -> dict[str, list[Run]]:
    """`decode_prompts` for several configurations at once ({name: generate kwargs}): every configuration is
    compiled (warmed up) first, then the timed runs go in rounds, each running every configuration on every prompt,
    so a slow spell of the machine touches one repeat of every configuration instead of every repeat of one (their
    ratios are measured under the same conditions). `between`, when given, is called after each round (e.g.
    `specjax.bench.timing.CallTimer.round`, to time other work in the same rounds). Returns {name: [Run per
    prompt]}."""
    batches = [pad_prompts([ids]) for ids in prompts]
    for kwargs in configs.values():
        seen: set[int] = set()
        for ids, (tokens, lengths) in zip(prompts, batches):
            if bucket_size(len(ids)) not in seen:
                seen.add(bucket_size(len(ids)))
                generate(target, tokens, lengths, jax.random.key(seed), **kwargs).tokens.block_until_ready()
    timings = {name: [] for name in configs}
    for _ in range(repeats):
        for name, kwargs in configs.items():
            timings[name].append([timed(generate, target, tokens, lengths, jax.random.key(seed + 1 + i), **kwargs)
                                  for i, (tokens, lengths) in enumerate(batches)])
        if between is not None:
            between()
    out = {}
    for name, rounds in timings.items():
        out[name] = []
        for i in range(len(prompts)):
            samples = [t[i][1] for t in rounds]
            run = run_of(rounds[0][i][0], float(np.median(samples)))
            run.samples = samples
            out[name].append(run)
    return out


def run_of(res: GenerateResult, seconds: float) -> Run:
    """The `Run` of a batch-1 result."""
    n = int(res.lengths[0])
    return Run(np.asarray(res.tokens[0, :n]).tolist(), seconds, res.acceptance_length, res.drafted_per_round,
               acceptance_per_position=res.acceptance_per_position)


def summarize(runs: Sequence[Run]) -> dict[str, float]:
    """Total tokens, seconds, tokens/s, mean τ, mean drafted tokens per round and mean per-position acceptance
    (positions a run never reached count as 0) over runs."""
    toks = sum(len(r.tokens) for r in runs)
    secs = sum(r.seconds for r in runs)
    depth = max((len(r.acceptance_per_position) for r in runs), default=0)
    per_position = np.zeros((len(runs), depth))
    for i, r in enumerate(runs):
        per_position[i, :len(r.acceptance_per_position)] = r.acceptance_per_position
    return {"tokens": toks, "seconds": secs, "tokens_per_s": toks / secs if secs else 0.0,
            "tau": float(np.mean([r.tau for r in runs])),
            "acceptance_per_position": per_position.mean(axis=0).tolist() if runs else [],
            "drafted_per_round": float(np.mean([r.drafted_per_round for r in runs]))}


class Results:
    """Records of an experiment keyed by a string, kept in a JSON file rewritten after every record, so an
    interrupted run resumes where it stopped (`done(key)`). Records of another configuration are not reused: the
    file remembers the configuration it was written for and is started afresh when it differs. Beside them it keeps
    the software versions and device of the run (`specjax.bench.experiment.provenance`; not compared on resume)."""

    def __init__(self, path: Path, config: dict[str, Any]):
        self.path, self.config = Path(path), json.loads(json.dumps(config))     # tuples read back as lists
        self.provenance = provenance()
        saved = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.records: dict[str, Any] = saved.get("records", {}) if saved.get("config") == self.config else {}

    def done(self, key: str) -> bool:
        return key in self.records

    def add(self, key: str, record: Any) -> None:
        self.records[key] = record
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"config": self.config, "provenance": self.provenance, "records": self.records},
                                  indent=1))
        tmp.replace(self.path)                 # atomic: an interruption never leaves half a file
