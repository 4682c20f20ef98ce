"""The jax backend of `transport.optimal.acceptance` (transport/THEORY.md §2.3–2.4): α* for every row at once in
float64, by the prefix theorem (the minimum cut is a prefix of the tokens sorted by p/q): iid and without replacement
(k_eff <= 2) by prefix / suffix sums, without replacement with k_eff >= 3 by the exponential-race quadrature (a scan),
greedy by its closed form. float64 is enabled locally by the caller (`jax.enable_x64(True)`), never globally.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from transport.optimal import reference

_PYTHON_RACE_MAX_V = 2048


def _ratio_sorted(p: jax.Array, q: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    r = jnp.where(q > 0, p / jnp.where(q > 0, q, 1.0), jnp.where(p > 0, jnp.inf, -1.0))
    order = jnp.argsort(-r, axis=-1, stable=True)
    return order, jnp.take_along_axis(p, order, -1), jnp.take_along_axis(q, order, -1)


def _suffix(x: jax.Array) -> jax.Array:
    tail = jnp.flip(jnp.cumsum(jnp.flip(x, -1), -1), -1)
    return jnp.concatenate([tail, jnp.zeros_like(x[..., :1])], -1)


def _prefix(x: jax.Array) -> jax.Array:
    return jnp.concatenate([jnp.zeros_like(x[..., :1]), jnp.cumsum(x, -1)], -1)


def _best_prefix(vals: jax.Array) -> tuple[jax.Array, jax.Array]:
    m = jnp.argmin(vals, axis=-1)
    return jnp.take_along_axis(vals, m[:, None], -1)[:, 0], m


@partial(jax.jit, static_argnums=2)
def _iid(p, q, k):
    order, ps, qs = _ratio_sorted(p, q)
    return (*_best_prefix(_suffix(ps) + 1.0 - _suffix(qs) ** k), order)


@jax.jit
def _wor2(p, q):
    order, ps, qs = _ratio_sorted(p, q)
    loo = _prefix(qs)[:, :-1] + _suffix(qs)[:, 1:]            # q(V∖a) without 1 - q_a
    a = _suffix(jnp.where(qs > 0, qs / jnp.where(loo > 0, loo, 1.0), 0.0))
    return (*_best_prefix(_suffix(ps) + jnp.minimum(_prefix(qs) * (1.0 + a), 1.0)), order)


@partial(jax.jit, static_argnums=5)
def _race(p, q, t, w, k_eff, k):
    """Exponential-race hit function for every ratio prefix; t, w: `[N, T]` quadrature per row, k_eff: `[N]`."""
    order, ps, qs = _ratio_sorted(p, q)
    lam = _prefix(qs)

    def one(qs, lam, t, w, k_eff):
        keep = (jnp.arange(k) < k_eff)[:, None]

        def step(dist, xs):                                   # add token a to S: truncated Poisson-binomial update
            a, lam_m = xs
            shifted = jnp.concatenate([jnp.zeros_like(t)[None], dist[:-1]], 0)
            dist = dist * jnp.exp(-a * t) + shifted * -jnp.expm1(-a * t)
            survive = jnp.sum(jnp.where(keep, dist, 0.0), 0)  # P(N_S(t) <= k_eff - 1)
            return dist, jnp.sum(w * lam_m * jnp.exp(-lam_m * t) * survive)

        init = jnp.zeros((k, t.shape[0]), t.dtype).at[0].set(1.0)
        _, hits = jax.lax.scan(step, init, (qs[::-1], lam[:-1][::-1]), unroll=4)
        return jnp.concatenate([hits[::-1], jnp.ones((1,), t.dtype)])

    hits = jax.vmap(one)(qs, lam, t, w, k_eff)
    return (*_best_prefix(_suffix(ps) + jnp.minimum(hits, 1.0)), order)


@partial(jax.jit, static_argnums=2)
def _greedy(p, q, k):
    _, g = jax.lax.top_k(q, k - 1)                            # ties -> smaller id
    in_g = jnp.zeros(p.shape, bool).at[jnp.arange(p.shape[0])[:, None], g].set(True)
    q_rest = jnp.where(in_g, 0.0, q)
    q_cond = q_rest / jnp.sum(q_rest, -1, keepdims=True)
    alpha = jnp.sum(jnp.where(in_g, p, jnp.minimum(p, q_cond)), -1)
    return alpha, ~in_g & (p > q_cond)


def _race_grids(q: np.ndarray, k_eff: np.ndarray, nodes_per_decade: int) -> tuple[np.ndarray, np.ndarray]:
    grids = [reference.race_grid(row[row > 0], int(ke), nodes_per_decade) for row, ke in zip(q, k_eff)]
    n = max(len(t) for t, _ in grids)
    n = -(-n // 32) * 32                                     # pad to a multiple of 32: fewer recompilations
    t = np.ones((len(q), n))
    w = np.zeros((len(q), n))                                 # padded nodes carry zero weight
    for i, (ti, wi) in enumerate(grids):
        t[i, : len(ti)], w[i, : len(wi)] = ti, wi
    return t, w


def _prefix_masks(order: np.ndarray, m: np.ndarray) -> np.ndarray:
    mask = np.zeros(order.shape, bool)
    np.put_along_axis(mask, order, np.arange(order.shape[1])[None, :] < m[:, None], axis=1)
    return mask


def _jax_prefix(fn):
    def run(p, q, *args):
        a, m, order = fn(jnp.asarray(p), jnp.asarray(q), *args)
        return np.asarray(a), _prefix_masks(np.asarray(order), np.asarray(m))
    return run


def _jax_greedy(p, q, k):
    a, h = _greedy(jnp.asarray(p), jnp.asarray(q), k)
    return np.asarray(a), np.asarray(h)


def race_rows(p, q, k_eff, nodes_per_decade, use_jax):
    if not use_jax and p.shape[1] <= _PYTHON_RACE_MAX_V:     # small V: a python loop beats a jax compile
        rows = [reference.alpha_wor(pp, qq, int(ke), nodes_per_decade) for pp, qq, ke in zip(p, q, k_eff)]
        return np.array([a for a, _ in rows]), np.stack([h for _, h in rows])
    t, w = _race_grids(q, k_eff, nodes_per_decade)
    return _jax_prefix(_race)(p, q, jnp.asarray(t), jnp.asarray(w), jnp.asarray(k_eff), int(k_eff.max()))



def iid(p64, q64, k, return_set, nodes_per_decade):
    """α*, H for k iid drafts, rows `[N, V]` (normalised float64)."""
    return reference.run_chunked(p64, q64, [(np.arange(len(p64)), lambda pp, qq, rows: _jax_prefix(_iid)(pp, qq, k))])


def greedy(p64, q64, k, return_set, nodes_per_decade):
    """α*, H for greedy drafts (k >= 2), rows `[N, V]`."""
    return reference.run_chunked(p64, q64, [(np.arange(len(p64)), lambda pp, qq, rows: _jax_greedy(pp, qq, k))])


def without_replacement(p64, q64, k, return_set, nodes_per_decade):
    """α*, H for k drafts without replacement (k_eff = min(k, |supp q|) per row), rows `[N, V]`."""
    k_eff = np.minimum(k, np.count_nonzero(q64, axis=1))
    return reference.run_chunked(p64, q64, [
        (np.flatnonzero(k_eff == 1), lambda pp, qq, rows: _jax_prefix(_iid)(pp, qq, 1)),
        (np.flatnonzero(k_eff == 2), lambda pp, qq, rows: _jax_prefix(_wor2)(pp, qq)),
        (np.flatnonzero(k_eff >= 3), lambda pp, qq, rows: race_rows(pp, qq, k_eff[rows], nodes_per_decade, True))])
