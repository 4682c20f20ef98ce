"""Fixtures shared by every test package, and XLA's fast-compiling CPU flags for the whole run."""
import os

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


@pytest.fixture(scope="module", autouse=True)
def release_compiled_programs():
    """Drop jax's compiled programs after each test module: a full run compiles hundreds, and each keeps its code
    mapped; past ~65k memory maps (vm.max_map_count) the next compilation dies inside XLA."""
    yield
    jax.clear_caches()
