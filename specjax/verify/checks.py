"""Eager input checks shared by the multi-draft rules and the draft samplers (ValueError, plain Python, before any
jax call, so no jax frame is ever on the stack of the error). Shape and dtype checks always run; value checks run only
on concrete arrays (under jit/vmap the same entry points trust their inputs: `specjax.validation`).

Axes: V vocabulary, k draft slots, M sets of an LP plan.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from specjax.validation import (check_int, check_key, check_probs, check_same_shape, check_tokens, default_tolerance,
                                is_concrete)


def _dtype(x: Any) -> np.dtype:
    return np.dtype(x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype)


def check_rule_inputs(p: Any, q: Any, drafts: Any, valid: Any, *, max_slots: int | None = None,
                      drafts_from_q: bool = True) -> np.ndarray | None:
    """Check the common rule inputs (the key has `check_key`): p, q `[V]` probabilities; drafts `[k]` integer ids in
    [0, V) with k >= 1 (<= max_slots); valid `[k]` bool. With `drafts_from_q`, a valid draft must have q(x) > 0 (q
    is the law the drafts were sampled from, pitfall 6.2.1).

    Returns the valid drafts `[n]` in slot order (the prefix-compacted list the rule verifies) when drafts and
    valid are concrete, else None.
    """
    check_probs("p", p, ndim=1)
    check_probs("q", q, ndim=1)
    check_same_shape("p", p, "q", q)
    if np.ndim(drafts) != 1:
        raise ValueError(f"drafts must be [k], got shape {np.shape(drafts)}")
    k = np.shape(drafts)[0]
    if k < 1:
        raise ValueError("drafts must have at least one slot (k >= 1); pad with valid=False for 'no draft'")
    if max_slots is not None and k > max_slots:
        raise ValueError(f"this rule takes at most {max_slots} draft slots, got {k}")
    check_tokens("drafts", drafts, np.shape(p)[0])
    if np.shape(valid) != (k,) or _dtype(valid) != bool:
        raise ValueError(f"valid must be a bool array shaped like drafts ({k},), got {_dtype(valid)} "
                         f"{np.shape(valid)}")
    if not (is_concrete(drafts) and is_concrete(valid)):
        return None
    live = np.asarray(drafts)[np.asarray(valid)]
    if drafts_from_q and is_concrete(q) and np.any(np.asarray(q, np.float64)[live] <= 0):
        raise ValueError("a valid draft has q(x) = 0: q must be the law the drafts were sampled from")
    return live


def check_distinct(live: np.ndarray | None, what: str) -> None:
    """Raise ValueError if the valid drafts `[n]` repeat a token (impossible under `what`)."""
    if live is not None and len(np.unique(live)) != len(live):
        raise ValueError(f"{what} drafts must be distinct, got valid drafts {live.tolist()}")


def check_sampler_inputs(key: Any, q: Any, k: Any, *, max_k_is_vocab: bool = False, min_support: int = 0) -> int:
    """Check a draft sampler's key, q `[V]` and k (an int >= 1; <= V when `max_k_is_vocab`); on concrete q, require
    |supp q| >= min_support. Returns k as int."""
    check_key("key", key)
    check_probs("q", q, ndim=1)
    v = np.shape(q)[0]
    k = check_int("k", k, low=1)
    if max_k_is_vocab and k > v:
        raise ValueError(f"k = {k} drafts exceed the vocabulary size V = {v} for this draft law")
    if min_support and is_concrete(q):
        support = int(np.count_nonzero(np.asarray(q, np.float64) > 0))
        if support < min_support:
            raise ValueError(f"q has {support} token(s) with positive probability; this draft law needs at least "
                             f"{min_support}")
    return k


def check_plan(p: Any, sets: Any, accept_probs: Any, residual: Any) -> None:
    """Check LP-plan arrays: sets `[M, V]` bool, accept_probs `[M, V]` with rows of non-negative finite entries
    summing to at most 1, residual `[V]` a probability vector, or all zero when no row leaves correction mass."""
    v = np.shape(p)[0]
    if np.ndim(sets) != 2 or np.shape(sets)[1] != v or np.shape(sets)[0] < 1 or _dtype(sets) != bool:
        raise ValueError(f"sets must be a bool [M, V] array with M >= 1, V = {v}; got {_dtype(sets)} "
                         f"{np.shape(sets)}")
    if np.shape(accept_probs) != np.shape(sets) or not np.issubdtype(_dtype(accept_probs), np.floating):
        raise ValueError(f"accept_probs must be a float [M, V] = {np.shape(sets)} array, got "
                         f"{_dtype(accept_probs)} {np.shape(accept_probs)}")
    if np.shape(residual) != (v,) or not np.issubdtype(_dtype(residual), np.floating):
        raise ValueError(f"residual must be a float [V] = ({v},) array, got {_dtype(residual)} {np.shape(residual)}")
    if not (is_concrete(accept_probs) and is_concrete(residual)):
        return
    acc, res = np.asarray(accept_probs, np.float64), np.asarray(residual, np.float64)
    tol = max(default_tolerance(accept_probs), default_tolerance(residual))
    for name, a in (("accept_probs", acc), ("residual", res)):
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"{name} must be finite and non-negative")
    if np.any(acc.sum(1) > 1 + tol):
        raise ValueError(f"accept_probs rows must sum to at most 1 (max {acc.sum(1).max():.6g})")
    leftover = np.max(1.0 - acc.sum(1))
    if not (abs(res.sum() - 1.0) <= tol or (res.sum() == 0 and leftover <= tol)):
        raise ValueError(f"residual must sum to 1 (or be all zero when no set leaves correction mass), "
                         f"got sum {res.sum():.6g}")
