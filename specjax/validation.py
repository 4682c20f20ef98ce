"""Eager input checks, raised as ValueError in plain Python before anything is traced.

Value checks (sign, NaN, normalisation) run only on concrete arrays; inside a trace only shapes are checked,
so the same public function can be called eagerly (checked) or from inside a jitted loop (trusted).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import jax
import jax.numpy as jnp


def is_concrete(x: Any) -> bool:
    """True when `x` holds values (not a jax Tracer)."""
    return not isinstance(x, jax.core.Tracer)


def default_tolerance(x: Any) -> float:
    """Sum-to-one tolerance for probability rows `x[..., V]`, from their dtype (and V for half precision).

    float64: 1e-9. float32: 1e-4 (a 128k-way float32 softmax drifts ~1e-5; the float32 normaliser error grows like
    sqrt(V)·eps32). float16 / bfloat16: max(1e-2, 2·eps + sqrt(V)·eps32). Each entry rounded to the half type is off by
    at most eps/2 relative, so the row sum drifts by at most eps/2; the normaliser, accumulated in float32 (jax upcasts
    half-precision sums) drifts ~sqrt(V)·eps32 and is rounded once more to the half type (another eps/2). 2·eps doubles
    that worst case (measured: bfloat16 softmax rows drift up to 4.2e-3 = 0.54·eps at V = 100..128k); the 1e-2 floor
    keeps float16 (eps ~1e-3) rows cast from another framework's softmax path.
    """
    dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if dtype == np.float64:
        return 1e-9
    if dtype.itemsize >= 4:
        return 1e-4
    eps32 = float(np.finfo(np.float32).eps)
    return max(1e-2, 2.0 * float(jnp.finfo(dtype).eps) + float(np.sqrt(np.shape(x)[-1])) * eps32)


def check_probs(name: str, x: Any, *, ndim: int | Sequence[int] | None = None, tol: float | None = None) -> None:
    """Raise ValueError unless `x[..., V]` holds probability vectors along its last axis.

    Checks rank (when `ndim` is given), dtype (floating), and for concrete arrays: no NaN/Inf, no negative entry,
    every row summing to one within `tol` (default: `default_tolerance`).
    """
    shape = tuple(np.shape(x))
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in allowed:
            raise ValueError(f"{name} must have rank {' or '.join(map(str, allowed))}, got shape {shape}")
    if len(shape) == 0 or shape[-1] < 1:
        raise ValueError(f"{name} must have a non-empty last (vocabulary) axis, got shape {shape}")
    dtype = np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)
    if not np.issubdtype(dtype, np.floating) and dtype.name != "bfloat16":
        raise ValueError(f"{name} must be a floating-point array, got dtype {dtype}")
    if not is_concrete(x):
        return
    a = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    if np.any(a < 0):
        raise ValueError(f"{name} has negative entries (min {a.min():.3g})")
    tol = default_tolerance(x) if tol is None else tol
    err = np.abs(a.sum(-1) - 1.0)
    if err.size and err.max() > tol:
        raise ValueError(f"{name} does not sum to 1 along its last axis (max |sum - 1| = {err.max():.3g} > tol {tol:g})")


def check_same_shape(name_a: str, a: Any, name_b: str, b: Any) -> None:
    """Raise ValueError unless `a` and `b` have the same shape."""
    if tuple(np.shape(a)) != tuple(np.shape(b)):
        raise ValueError(f"{name_a} {tuple(np.shape(a))} and {name_b} {tuple(np.shape(b))} must have the same shape")


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Return `value` as int, raising ValueError unless it is an integer in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_tokens(name: str, tokens: Any, vocab_size: int) -> None:
    """Raise ValueError unless `tokens` is an integer array with ids in [0, vocab_size) (value check if concrete)."""
    dtype = np.dtype(tokens.dtype if hasattr(tokens, "dtype") else np.asarray(tokens).dtype)
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {dtype}")
    if is_concrete(tokens):
        a = np.asarray(tokens)
        if a.size and (a.min() < 0 or a.max() >= vocab_size):
            raise ValueError(f"{name} has ids outside [0, {vocab_size}): min {a.min()}, max {a.max()}")


def check_key(name: str, key: Any) -> None:
    """Raise ValueError unless `key` is one jax PRNG key: a typed key `jax.random.key(seed)` of shape `()`, or a raw
    `jax.random.PRNGKey(seed)` (uint32 `[2]`). Checked on shape and dtype only, so it also holds under jit/vmap."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if np.shape(key) != ():
            raise ValueError(f"{name} must be a single PRNG key (shape ()), got shape {np.shape(key)}")
        return
    if dtype is None or np.dtype(dtype) != np.uint32 or np.shape(key) != (2,):
        raise ValueError(f"{name} must be a jax PRNG key (jax.random.key(seed)), got "
                         f"{type(key).__name__} with dtype {dtype} and shape {np.shape(key)}")
