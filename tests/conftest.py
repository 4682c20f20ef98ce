"""Fixtures shared by every test package, and XLA's fast-compiling CPU flags for the whole run."""
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import jax
import numpy as np
import pytest

from specjax.testing.pairs import FAST_COMPILE_XLA_FLAGS, tiny_pair as make_tiny_pair

# read when jax first makes its CPU backend, which no import above does
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE_XLA_FLAGS}".strip()


@pytest.fixture(scope="session")
def tiny_pair():
    """Handles of a random V=16 target and a different random draft (peaked laws, so p and q really differ)."""
    return make_tiny_pair()


@pytest.fixture(scope="session")
def ragged_prompts():
    """Right-padded prompts of lengths 5, 2, 1, 4."""
    tokens = np.array([[1, 2, 3, 4, 5], [5, 6, 0, 0, 0], [7, 0, 0, 0, 0], [3, 3, 3, 9, 0]], np.int32)
    return tokens, np.array([5, 2, 1, 4], np.int32)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_concurrently(calls: Sequence[Callable[[], Any]], workers: int | None = None) -> list:
    """Call each of `calls` (no arguments) in a pool of threads, one per CPU core (at most 4), and return their
    results in order; the first exception is re-raised.

    Compiling, not running, is what a decode loop over a real model costs, and XLA compiles with the GIL released
    (only tracing holds it): one compilation at a time leaves the second core of a 2-core machine mostly idle, two at
    a time use it. The calls must not depend on each other, and no two should compile the same program (both would);
    give the longest first (they start in order). The results are those of the calls made one after another: every
    call is deterministic."""
    workers = min(4, _cores()) if workers is None else workers
    if workers <= 1 or len(calls) < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(min(workers, len(calls))) as pool:
        return list(pool.map(lambda call: call(), calls))


@pytest.fixture(scope="session")
def concurrently():
    """`run_concurrently`: independent calls that each compile a program, in a thread per core."""
    return run_concurrently


@pytest.fixture(scope="module", autouse=True)
def release_compiled_programs():
    """Drop jax's compiled programs after each test module: a full run compiles hundreds, and each keeps its code
    mapped; past ~65k memory maps (vm.max_map_count) the next compilation dies inside XLA."""
    yield
    jax.clear_caches()
