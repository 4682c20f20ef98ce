"""Fixtures shared by every test package."""
import numpy as np
import pytest

from specjax.config import named_config
from specjax.model import init_model


@pytest.fixture(scope="session")
def tiny_pair():
    """A random V=16 target and a different random draft (peaked laws, so p and q really differ)."""
    return init_model(named_config("tiny"), 0), init_model(named_config("tiny-draft"), 1)


@pytest.fixture(scope="session")
def ragged_prompts():
    """Right-padded prompts of lengths 5, 2, 1, 4."""
    tokens = np.array([[1, 2, 3, 4, 5], [5, 6, 0, 0, 0], [7, 0, 0, 0, 0], [3, 3, 3, 9, 0]], np.int32)
    return tokens, np.array([5, 2, 1, 4], np.int32)
