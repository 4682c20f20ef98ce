"""Eager input checks shared by the transport entry points (ValueError, in plain Python, before any jax call)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from specjax.validation import check_int, check_probs, check_same_shape

# Sum-to-one tolerance (stated in every public docstring): 1e-9 for float64 inputs, 1e-4 for float32 inputs
# (specjax.validation.default_tolerance). Inputs within tolerance are renormalised in float64.


def check_pair(p: Any, q: Any, k: Any, *, batch: bool = True) -> int:
    """Validate a target/draft pair (`[V]`, or `[N, V]` when `batch`) and k >= 1; return k as int."""
    for name, x in (("p", p), ("q", q)):
        dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
        if dtype.itemsize < 4 and np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16":
            raise ValueError(f"{name} is half precision ({dtype}); exact α* needs float32 or float64 inputs")
        check_probs(name, x, ndim=(1, 2) if batch else 1)
    check_same_shape("p", p, "q", q)
    return check_int("k", k, low=1)


def check_draft_law(name: Any, allowed: Sequence[str], what: str = "draft law") -> str:
    """Raise ValueError unless `name` is one of `allowed`."""
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"unknown {what} {name!r}; expected one of {tuple(allowed)}")
    return name


def check_table(p: np.ndarray, tuples: Any, probs: Any) -> None:
    """Validate an arbitrary tuple law: tuples `[T, k]` ids in [0, V), probs `[T]` >= 0 summing to 1 (tol 1e-9)."""
    tuples, probs = np.asarray(tuples), np.asarray(probs, np.float64)
    if tuples.ndim != 2 or probs.shape != (len(tuples),):
        raise ValueError(f"tuple law needs tuples [T, k] and probs [T], got {tuples.shape} and {probs.shape}")
    if not np.issubdtype(tuples.dtype, np.integer) or (tuples.size and (tuples.min() < 0 or tuples.max() >= len(p))):
        raise ValueError(f"tuple law ids must be integers in [0, {len(p)})")
    check_probs("tuple law probs", probs, ndim=1)


def as_float64_rows(x: Any) -> np.ndarray:
    """float64 copy of validated probability rows, renormalised (removes the input-tolerance drift)."""
    a = np.asarray(x, np.float64)
    return a / a.sum(axis=-1, keepdims=True)
