"""Khisti et al.'s canonical two-step multi-draft rule (ICLR'25, arXiv 2410.18234; transport/THEORY.md §3.9):
step 1 selects one of the k drafts by an importance-sampling-type rule, step 2 runs single-draft speculative sampling
of the selected token z against p with proposal r = the law of the selected token:
    accept z w.p. min(1, p(z)/r(z)), else emit y ~ norm((p − r)_+).
Lossless for any selection rule whose selection law r is exact. Selections implemented:
* `importance_argmax` (any k): the draft with the largest importance weight p/q (ties to the smaller id), the
  zero-temperature member of the weighted-importance-sampling family; its law is the best of m i.i.d. draws,
  r(y) = upto(y)^m − below(y)^m = q(y) Σ_{l<m} upto(y)^l below(y)^(m−1−l), with m = the number of valid drafts.
* `importance_pair` (k ≤ 2): a selection table from the small LP of the paper's k = 2 analysis
  (`transport.exact.importance.pair_selection_lp`), which reaches α*(iid, k = 2).
Shape contract as `specjax.verify.multi_draft`: rule(key, p[V], q[V], drafts[k], valid[k]) -> (slot, token); a
valid=False slot is skipped exactly as if absent; `slot` is the first valid slot holding the emitted token (-1 if
none: a correction landing on an unselected draft counts, as for the greedy and LP rules).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from specjax.sampling import safe_log, sample_token
from specjax.validation import check_probs, check_same_shape, check_tokens, is_concrete
from specjax.verify.chain import residual_distribution


def mass_below(q: jax.Array, key: jax.Array) -> jax.Array:
    """below(y) `[V]`: q-mass of the tokens ranked after y (key descending, ties to the smaller id), as exclusive
    suffix sums of the ranked masses (direct sums, no complement by subtraction)."""
    order = jnp.argsort(-key, stable=True)                           # best first; ties: smaller id first
    ranked = q[order]
    suffix = jnp.flip(jnp.cumsum(jnp.flip(ranked)))
    return jnp.zeros_like(q).at[order].set(jnp.concatenate([suffix[1:], jnp.zeros_like(q[:1])]))


def xlogy(n, log_x):
    """n · log x with 0 · (−inf) = 0."""
    return jnp.where(n == 0, 0.0, n * log_x)


def log_best_of_law(q: jax.Array, below: jax.Array, log_pi: jax.Array) -> jax.Array:
    """log law `[V]` of the best of M i.i.d. draws from q under a ranking, M ~ exp(log_pi) over 1..len(log_pi):
    log q(y) + log Σ_m π_m e_m(y), e_m = Σ_{l<m} upto^l below^(m−1−l) = upto^m − below^m over q, by the positive
    recurrence e_1 = 1, e_{m+1} = below^m + upto · e_m (log space, O(M V); stable at any M)."""
    log_below, log_upto = safe_log(below), safe_log(below + q)
    log_e = jnp.zeros_like(q)
    total = log_pi[0] + log_e
    for m in range(1, log_pi.shape[0]):
        log_e = jnp.logaddexp(xlogy(m, log_below), log_upto + log_e)
        total = jnp.logaddexp(total, log_pi[m] + log_e)
    return safe_log(q) + total


def importance_keys(p: jax.Array, q: jax.Array) -> jax.Array:
    """Importance weight p/q `[V]` as a ranking key (tokens with q = 0 last: never drafted)."""
    return jnp.where(q > 0, p / jnp.where(q > 0, q, 1.0), -1.0)


def _second_step(key, p, r, drafts, valid, slot, z):
    """Single-draft speculative sampling of the selected token z (slot) against p with proposal r."""
    key_u, key_res = jax.random.split(key)
    accept = (slot >= 0) & (jax.random.uniform(key_u, (), p.dtype) * r[z] < p[z])
    y = jnp.where(accept, z, sample_token(key_res, residual_distribution(p, r))).astype(jnp.int32)
    hit = valid & (drafts == y)
    return jnp.where(jnp.any(hit), jnp.argmax(hit), -1).astype(jnp.int32), y


@jax.jit
def _argmax(key, p, q, drafts, valid):
    key_w = importance_keys(p, q)
    m = jnp.sum(valid)
    k = drafts.shape[0]
    # the best valid draft: largest weight, then smallest id, then first slot
    score = jnp.where(valid, key_w[drafts], -jnp.inf)
    best = jnp.max(score)
    tok = jnp.min(jnp.where(valid & (score == best), drafts, jnp.iinfo(jnp.int32).max))
    slot = jnp.where(m > 0, jnp.argmax(valid & (drafts == tok)), -1)
    log_pi = jnp.where(jnp.arange(1, k + 1) == m, 0.0, -jnp.inf).astype(p.dtype)
    r = jnp.exp(log_best_of_law(q, mass_below(q, key_w), log_pi))
    return _second_step(key, p, r, drafts, valid, slot, drafts[jnp.maximum(slot, 0)])


@jax.jit
def _pair(key, p, q, drafts, valid, pair, marginal):
    key_s, key_v = jax.random.split(key)
    m = jnp.sum(valid)
    first = jnp.argmax(valid)
    last = drafts.shape[0] - 1 - jnp.argmax(valid[::-1])
    a, b = drafts[first], drafts[last]
    pick_first = (m == 1) | (jax.random.uniform(key_s, (), p.dtype) < pair[a, b])
    slot = jnp.where(pick_first, first, last)
    r = jnp.where(m == 1, q, marginal)                               # one draft: plain speculative sampling
    return _second_step(key_v, p, r, drafts, valid, slot, drafts[slot])


def _check(p, q, drafts, valid) -> None:
    check_probs("p", p, ndim=1)
    check_probs("q", q, ndim=1)
    check_same_shape("p", p, "q", q)
    if np.ndim(drafts) != 1 or np.shape(drafts)[0] < 1:
        raise ValueError(f"drafts must be [k] with k >= 1, got shape {np.shape(drafts)}")
    check_tokens("drafts", drafts, np.shape(p)[0])
    dtype = np.dtype(valid.dtype if hasattr(valid, "dtype") else np.asarray(valid).dtype)
    if np.shape(valid) != np.shape(drafts) or dtype != bool:
        raise ValueError(f"valid must be a bool array shaped like drafts {np.shape(drafts)}")
    if is_concrete(valid) and not np.any(np.asarray(valid)):
        raise ValueError("at least one draft must be valid (k = 0 has no selection)")
    if is_concrete(q) and is_concrete(drafts) and is_concrete(valid):
        if np.any(np.asarray(valid) & (np.asarray(q)[np.asarray(drafts)] <= 0)):
            raise ValueError("a valid draft has q(x) = 0: q must be the law the drafts were sampled from")


def importance_argmax(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Two-step rule for i.i.d. drafts: select the valid draft with the largest p/q, then speculative sampling
    against its exact selection law. p, q `[V]`; drafts, valid `[k]`. Returns (slot, token)."""
    _check(p, q, drafts, valid)
    return _argmax(key, p, q, drafts, valid)


def importance_pair(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array, *,
                    pair: jax.Array, marginal: jax.Array):
    """Two-step rule for k <= 2 valid i.i.d. drafts with a selection table: drafts {a, b} select a w.p. pair[a, b]
    (`[V, V]`, pair[a, b] + pair[b, a] = 1, pair[a, a] = 1), whose selection law is `marginal [V]` (both from
    `transport.exact.importance.pair_selection_lp`); one valid draft is plain speculative sampling."""
    _check(p, q, drafts, valid)
    if is_concrete(valid) and int(np.sum(np.asarray(valid))) > 2:
        raise ValueError("importance_pair takes at most 2 valid drafts (its table is the k = 2 selection)")
    v = np.shape(p)[0]
    if np.shape(pair) != (v, v) or np.shape(marginal) != (v,):
        raise ValueError(f"pair must be [V, V] and marginal [V] with V = {v}")
    check_probs("marginal", marginal, ndim=1)
    dtype = jnp.asarray(p).dtype
    return _pair(key, p, q, drafts, valid, jnp.asarray(pair, dtype), jnp.asarray(marginal, dtype))
