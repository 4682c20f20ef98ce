"""Timing for benchmarks: wall seconds of a call with its outputs ready (`timed`), and jitted loops of calls timed
in interleaved rounds (`CallTimer`, `call_samples`) so that a slow spell of a shared machine touches one sample of
many points rather than every sample of one point."""
from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """(result, wall seconds) of `fn(*args, **kwargs)` with every output array ready."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kwargs))
    return out, time.perf_counter() - t0


STATS = {"median": np.median, "min": np.min}
"""How repeats become one cost: the median, or the minimum (on a shared machine other work only ever slows a
call down, so the minimum is the steadier estimate of what the call itself costs)."""


class CallTimer:
    """Jobs (`(loop, args)`: `loop(*args, inner=inner)` is jitted and runs `inner` calls) compiled once, then
    timed in rounds: each `round()` takes one sample (wall seconds per call) of every job. Rounds let a caller
    spread a point's samples over time, and interleave them with other timed work (`latency_model` times profile
    points in the same rounds as the decodes they predict)."""

    def __init__(self, jobs: list[tuple[Callable, tuple]], inner: int):
        for loop, args in jobs:
            jax.block_until_ready(loop(*args, inner=inner))
        self.jobs, self.inner = jobs, inner
        self.samples: list[list[float]] = [[] for _ in jobs]
        """Seconds per call `[jobs][rounds so far]`."""

    def round(self) -> None:
        for out, (loop, args) in zip(self.samples, self.jobs):
            out.append(timed(loop, *args, inner=self.inner)[1] / self.inner)


def call_samples(jobs: list[tuple[Callable, tuple]], inner: int, repeats: int) -> list[list[float]]:
    """Wall seconds per call of each job, `repeats` samples each (`CallTimer`: every loop compiled first, then
    the samples taken in rounds that time every job once, so a slow spell of a shared machine touches one sample of
    many points rather than every sample of one point; back-to-back repeats made neighbouring points of one curve
    differ by 2x on a quiet 2-core VM)."""
    timer = CallTimer(jobs, inner)
    for _ in range(repeats):
        timer.round()
    return timer.samples
