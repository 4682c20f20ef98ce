"""Eager input checks shared by the transport entry points (ValueError, in plain Python, before any jax call;
the pitfalls of transport/THEORY.md §6)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from specjax.validation import check_int, check_probs, check_same_shape, default_tolerance

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


_CHECK_CHUNK_BYTES = 4 << 20     # rows per block of the one-read check: a block's float64 rows stay in cache


def _sums_min(x: np.ndarray) -> tuple[np.ndarray, float]:
    """float64 row sums `[N]` of float32/float64 rows x `[N, V]` and their minimum (NaN if any is NaN).

    Block by block of rows, so that the minimum reads rows the sum just brought into cache (one read of the rows
    from memory instead of two); float32 blocks are converted into one reused float64 block first, so each row's
    sum is the same pairwise float64 sum as over a float64 copy, without writing that copy.
    """
    step = max(1, _CHECK_CHUNK_BYTES // (8 * x.shape[-1]))
    buf = np.empty((min(step, len(x)), x.shape[-1])) if x.dtype != np.float64 else None
    s = np.empty(len(x))
    lows = []
    for lo in range(0, len(x), step):
        rows = slice(lo, lo + step)
        blk = x[rows]
        if buf is not None:
            blk = buf[:len(blk)]
            np.copyto(blk, x[rows])
        s[rows] = blk.sum(axis=-1)
        lows.append(blk.min())
    return s, float(np.min(lows))


def checked_rows(p, q, k):
    """Validate (same rules and messages as `check_pair`) and return k, (p rows, row sums), (q rows, row sums).

    Rows are `[N, V]` with their float64 row sums; callers renormalise by the sums. Plain float32/float64 ndarrays
    come back as they are (a view, no copy: a float32 row divided by its float64 sum is float64, and
    `transport.optimal.buckets` converts float32 rows chunk by chunk) after a one-read check by blocks of rows (row
    sums, which also catch NaN/Inf, and the minimum, which catches negatives); anything else, or any failure, goes
    through `check_pair`, which raises the canonical error (and comes back as float64 copies).
    """
    out = []
    fast = (isinstance(p, np.ndarray) and isinstance(q, np.ndarray) and p.shape == q.shape and p.ndim in (1, 2)
            and p.shape[-1] >= 1 and p.dtype in (np.float32, np.float64) and q.dtype in (np.float32, np.float64))
    if fast:
        for x in (p, q):
            a = np.atleast_2d(x)
            s, low = _sums_min(a)
            tol = default_tolerance(x)
            if not (np.all(np.isfinite(s)) and low >= 0 and np.all(np.abs(s - 1.0) <= tol)):
                fast = False
                break
            out.append((a, s))
    if not fast:
        k = check_pair(p, q, k)
        return k, *[(np.atleast_2d(np.asarray(x, np.float64)), np.atleast_2d(np.asarray(x, np.float64)).sum(-1))
                    for x in (p, q)]
    return check_int("k", k, low=1), out[0], out[1]


def _take_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x[rows] for sorted unique rows, as a view (no copy of `[N, V]`) when they are one contiguous range."""
    if len(rows) and rows[-1] - rows[0] + 1 == len(rows):
        return x[rows[0]:rows[-1] + 1]
    return x[rows]
