"""Eager input checks of the multi-draft rules (ValueError, plain Python, before any jax call, so no jax frame is ever
on the stack of the error). Shape and dtype checks always run; value checks run only on concrete arrays (under
jit/vmap the same entry points trust their inputs: `specjax.validation`). Each `live` argument is the concrete valid
drafts `[n]` in slot order returned by `check_rule_inputs`, or None when they are traced.

Axes: V vocabulary, k draft slots, M sets of an LP plan.
"""
from __future__ import annotations

from typing import Any

import numpy as np

import jax
import jax.numpy as jnp

from specjax.validation import check_probs, check_same_shape, check_tokens, default_tolerance, is_concrete
from specjax.verify.draft_laws import greedy_set


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


def check_plan(p: Any, sets: Any, accept_probs: Any, residual: Any, live: np.ndarray | None) -> None:
    """Check LP-plan arrays: sets `[M, V]` bool holding the set of the valid drafts (unless there is none),
    accept_probs `[M, V]` with rows of non-negative finite entries summing to at most 1, residual `[V]` a probability
    vector, or all zero when no row leaves correction mass."""
    v = np.shape(p)[0]
    if np.ndim(sets) != 2 or np.shape(sets)[1] != v or np.shape(sets)[0] < 1 or _dtype(sets) != bool:
        raise ValueError(f"sets must be a bool [M, V] array with M >= 1, V = {v}; got {_dtype(sets)} "
                         f"{np.shape(sets)}")
    if np.shape(accept_probs) != np.shape(sets) or not np.issubdtype(_dtype(accept_probs), np.floating):
        raise ValueError(f"accept_probs must be a float [M, V] = {np.shape(sets)} array, got "
                         f"{_dtype(accept_probs)} {np.shape(accept_probs)}")
    if np.shape(residual) != (v,) or not np.issubdtype(_dtype(residual), np.floating):
        raise ValueError(f"residual must be a float [V] = ({v},) array, got {_dtype(residual)} {np.shape(residual)}")
    if live is not None and len(live) and is_concrete(sets):
        member = np.zeros(v, bool)
        member[live] = True
        if not np.any(np.all(np.asarray(sets) == member, axis=1)):
            raise ValueError(f"the draft set {sorted(set(live.tolist()))} is not a set of the LP plan")
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


def check_kseq_rho(rho: Any, p: Any, q: Any, live: np.ndarray | None) -> None:
    """ρ (None = ρ*) must be a real scalar in [1, max(k, 1)], k = number of valid drafts, with
    1 - (1-β(ρ))^k <= ρβ(ρ) (K-SEQ's lossless condition, up to p's sum-to-one tolerance)."""
    if rho is None:
        return
    if np.ndim(rho) != 0 or isinstance(rho, bool) or _dtype(rho).kind not in "fiu":
        raise ValueError(f"rho must be a real scalar, got {rho!r}")
    if not is_concrete(rho) or live is None:
        return
    r, k = float(rho), len(live)
    if not (np.isfinite(r) and 1.0 <= r <= max(k, 1)):
        raise ValueError(f"rho must be in [1, k] with k = {k} valid drafts, got {r}")
    if is_concrete(p) and is_concrete(q):
        p64, q64 = np.asarray(p, np.float64), np.asarray(q, np.float64)
        not_beta = np.maximum(q64 - p64 / r, 0.0).sum()
        if r * (1.0 - not_beta) - (1.0 - not_beta ** k) < -default_tolerance(p):
            raise ValueError(f"rho = {r} is not lossless for k = {k}: 1 - (1-β)^k > ρβ (use rho=None for ρ*)")


def check_spechub_drafts(q: Any, drafts: Any, valid: Any, live: np.ndarray | None) -> None:
    """SpecHub's slots are positional (slot 0: x1 ~ q, slot 1: x2). Two valid drafts must be distinct, one of them
    the hub argmax q (ties to the smaller id); a lone valid x2 at the hub needs q(V∖hub) > 0 (else its law has no
    mass there: x1 is always the hub and x2 is drawn off it)."""
    if live is None or not is_concrete(q):
        return
    q64 = np.asarray(q, np.float64)
    hub = int(np.argmax(q64))
    if len(live) == 2 and (hub not in live.tolist() or live[0] == live[1]):
        raise ValueError(f"spechub drafts must be two distinct tokens, one of them the hub argmax q = {hub}; "
                         f"got {live.tolist()}")
    ok = np.asarray(valid)
    if len(ok) == 2 and ok.tolist() == [False, True] and int(np.asarray(drafts)[1]) == hub \
            and np.delete(q64, hub).sum() <= 0:
        raise ValueError(f"a lone second spechub draft (slot 1) at the hub {hub} needs q(V\\hub) > 0: with q "
                         f"one-hot at the hub there is no second draft")


def check_greedy_drafts(q: Any, drafts: Any, valid: Any, live: np.ndarray | None) -> None:
    """Greedy slots are positional (`sample_greedy_drafts`'s layout): of k slots, slots 0..k-2 hold G = top-(k-1)
    of q (`greedy_set`, the sampler's own choice: ties to the smaller id; in any order) and slot k-1 the draw outside
    G. A valid G slot must hold a distinct token of G and a valid slot k-1 a token outside G; padded slots are free."""
    if live is None or not is_concrete(q):
        return
    d, ok = np.asarray(drafts), np.asarray(valid)
    k = len(d)
    with jax.ensure_compile_time_eval():            # concrete values inside a caller's trace: evaluate, not trace
        g = sorted(np.asarray(greedy_set(jnp.asarray(q), k - 1)).tolist()) if k > 1 else []
    held = d[:-1][ok[:-1]].tolist()
    if len(set(held)) != len(held) or not set(held) <= set(g) or (ok[-1] and int(d[-1]) in g):
        raise ValueError(f"greedy drafts: slots 0..{k - 2} must hold the top-{k - 1} tokens of q {g} (ties to the "
                         f"smaller id; in any order; a padded slot may hold anything) and slot {k - 1} a token "
                         f"outside them; got drafts {d.tolist()}, valid {ok.tolist()}")
