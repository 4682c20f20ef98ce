"""α*, the best acceptance of any lossless verifier, exact at full vocabulary size, batched with jax in float64.

Same formulas as the numpy reference `transport.optimal_ref` (THEORY §2.3–2.4): by the prefix theorem the minimum cut
is a prefix of the tokens sorted by p/q, so α* = min_m [p(V∖H_m) + f(H_m)] with f the hit function of the draft law.
float64 is enabled locally (`jax.enable_x64(True)` around the calls), never globally.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from transport import optimal_ref
from specjax.validation import check_int, default_tolerance
from transport.validate import check_draft_law, check_pair

OPTIMAL_LAWS = ("iid", "without_replacement", "greedy")
_CHUNK = 8
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
            dist = dist * jnp.exp(-a * t) + jnp.concatenate([jnp.zeros_like(t)[None], dist[:-1]], 0) * -jnp.expm1(-a * t)
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
    grids = [optimal_ref.race_grid(row[row > 0], int(ke), nodes_per_decade) for row, ke in zip(q, k_eff)]
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


def _race_rows(p, q, k_eff, nodes_per_decade, use_jax):
    if not use_jax and p.shape[1] <= _PYTHON_RACE_MAX_V:     # small V: a python loop beats a jax compile
        rows = [optimal_ref.alpha_wor(pp, qq, int(ke), nodes_per_decade) for pp, qq, ke in zip(p, q, k_eff)]
        return np.array([a for a, _ in rows]), np.stack([h for _, h in rows])
    t, w = _race_grids(q, k_eff, nodes_per_decade)
    return _jax_prefix(_race)(p, q, jnp.asarray(t), jnp.asarray(w), jnp.asarray(k_eff), int(k_eff.max()))


# ---------------------------------------------------------------------------------------------------------------
# Bucketed exact path (CPU, numpy): no full sort (THEORY §2.3 prefix theorem + a monotone lower bound).
#
# Tokens are bucketed by the float64 bit pattern of r = p/q (for r >= 0 the IEEE-754 bits are monotone in r), keeping
# the exponent and _SUB_BITS mantissa bits: 2^_SUB_BITS buckets per octave of r, q = 0 < p (r = +inf) in the first
# bucket, p = q = 0 (0/0) in the last (those tokens carry no mass and never change J). Bucket b holds ratios above
# those of bucket b + 1, so every union H_b of buckets < b is a prefix (threshold) set. With S_b = V∖H_b and f the
# (monotone) hit function, any H with H_b ⊆ H ⊆ H_{b+1} has J(H) = p(V∖H) + f(H) >= p(S_{b+1}) + f(H_b) =: LB_b.
# Buckets with LB_b > min_b J(H_b) + _PRUNE_MARGIN cannot contain the minimum; the others ("survivors") are
# expanded into their tokens, sorted by ratio, and the final α* is the reference formula (direct prefix / suffix
# sums, as in optimal_ref) evaluated on the short sequence [pruned buckets as single lumps, survivors' tokens] in
# ratio order. Every prefix of that sequence is a threshold set, and the sequence contains every threshold set
# that can reach the minimum, so the value is the exact minimum; the margin (1e-12, >> the ~1e-15 rounding of the
# boundary values) only makes the pruning test safe against rounding.
_SUB_BITS = 3
_FINE_BITS = 7
_PRUNE_MARGIN = 1e-12
_INF_KEY = 0x7FF0_0000_0000_0000 >> (52 - _SUB_BITS)
_N_BUCKETS = _INF_KEY + 1
_FAST_CHUNK = 16


def _suffix_np(x):
    """s[..., j] = Σ_{i >= j} x[..., i], j = 0..B (direct sums of non-negative terms)."""
    tail = np.cumsum(x[..., ::-1], axis=-1)[..., ::-1]
    return np.concatenate([tail, np.zeros(x.shape[:-1] + (1,))], axis=-1)


def _prefix_np(x):
    return np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)


def _leave_one_out_terms(q, qsum):
    """c_a = q_a / q(V∖a) for rows of q `[n, V]` (raw scale, row totals qsum; 0 where q_a = 0).

    q(V∖a) = qsum - q_a is cancellation-free for every token but the row's largest one (q_a <= qsum / 2 there);
    for the largest token it is summed directly over the other tokens.
    """
    am = np.argmax(q, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        c = q / (qsum[:, None] - q)
    for i, (row, a) in enumerate(zip(q, am)):
        loo = np.sum(row[:a]) + np.sum(row[a + 1:])
        c[i, a] = row[a] / loo if loo > 0 else 0.0
    return c


def _law_values(law, k, pS, qH, qS, cS):
    """J at each prefix from the direct prefix / suffix sums (optimal_ref formulas)."""
    if law == "iid":
        return pS + 1.0 - qS ** k
    return pS + np.minimum(qH * (1.0 + cS), 1.0)                 # "wor2"


def _bucketed_rows(p, q, psum, qsum, law, k, with_set):
    """α* (and H) for rows p, q `[n, V]` (raw, row totals psum, qsum) and law "iid" (k drafts) or "wor2"."""
    n, v = p.shape
    nb, e = _N_BUCKETS, 1 << _FINE_BITS
    wor2 = law == "wor2"
    # level 1: coarse buckets of every token
    with np.errstate(divide="ignore", invalid="ignore"):
        key = np.divide(p, q).view(np.int64)
    np.right_shift(key, 52 - _SUB_BITS, out=key)
    np.clip(key, 0, _INF_KEY, out=key)                           # -0.0 -> r = 0 bucket; 0/0 (nan) -> first bucket
    flat = np.subtract((_INF_KEY + np.arange(n) * nb)[:, None], key, out=key).ravel()
    pb = np.bincount(flat, weights=p.ravel(), minlength=n * nb).reshape(n, nb) / psum[:, None]
    qb = np.bincount(flat, weights=q.ravel(), minlength=n * nb).reshape(n, nb) / qsum[:, None]
    c = _leave_one_out_terms(q, qsum) if wor2 else None
    cb = np.bincount(flat, weights=c.ravel(), minlength=n * nb).reshape(n, nb) if wor2 else np.zeros_like(pb)
    pS, qH, qS, cS = _suffix_np(pb), _prefix_np(qb), _suffix_np(qb), _suffix_np(cb)
    best = _law_values(law, k, pS, qH, qS, cS).min(axis=1)      # J(H_b) at every boundary
    lower = _law_values(law, k, pS[:, 1:], qH[:, :-1], qS[:, :-1], cS[:, :-1])   # LB_b
    nonempty = (pb > 0) | (qb > 0)
    surv = nonempty & (lower <= best[:, None] + _PRUNE_MARGIN)
    gather = surv.ravel()[flat]
    tflat = flat[gather]
    tr = tflat // nb
    tb = tflat - tr * nb
    pt, qt = p.ravel()[gather], q.ravel()[gather]
    with np.errstate(divide="ignore", invalid="ignore"):
        rt = pt / qt
    rt[np.isnan(rt)] = 0.0
    pt, qt = pt / psum[tr], qt / qsum[tr]
    ct = c.ravel()[gather] if wor2 else np.zeros_like(pt)
    # level 2: the survivors' buckets split into 2^_FINE_BITS sub-buckets (the next mantissa bits of r)
    slot_of = np.cumsum(surv.ravel()) - 1                       # slot of each surviving (row, bucket)
    s_row, s_b = np.nonzero(surv)
    ns = len(s_row)
    fine = (e - 1) - ((rt.view(np.int64) >> (52 - _SUB_BITS - _FINE_BITS)) & (e - 1))
    fine[np.isinf(rt)] = 0
    tflat2 = slot_of[tflat] * e + fine
    sub = [np.bincount(tflat2, weights=x, minlength=ns * e).reshape(ns, e) for x in (pt, qt, ct)]
    pS2 = pS[s_row, s_b + 1][:, None] + _suffix_np(sub[0])
    qH2 = qH[s_row, s_b][:, None] + _prefix_np(sub[1])
    qS2 = qS[s_row, s_b + 1][:, None] + _suffix_np(sub[1])
    cS2 = cS[s_row, s_b + 1][:, None] + _suffix_np(sub[2])
    if ns:
        np.minimum.at(best, s_row, _law_values(law, k, pS2, qH2, qS2, cS2).min(axis=1))
    lower2 = _law_values(law, k, pS2[:, 1:], qH2[:, :-1], qS2[:, :-1], cS2[:, :-1])
    nonempty2 = (sub[0] > 0) | (sub[1] > 0)
    surv2 = nonempty2 & (lower2 <= best[s_row][:, None] + _PRUNE_MARGIN)
    tok = surv2.ravel()[tflat2]
    lr, lb = np.nonzero(nonempty & ~surv)                        # coarse lumps
    l2s, l2f = np.nonzero(nonempty2 & ~surv2)                    # fine lumps
    # the sequence in ratio order: (row, bucket, sub-bucket, -r)
    rows = np.concatenate([lr, s_row[l2s], tr[tok]])
    bucket = np.concatenate([lb, s_b[l2s], tb[tok]])
    subk = np.concatenate([np.zeros(len(lr), np.int64), l2f, fine[tok]])
    within = np.concatenate([np.zeros(len(lr) + len(l2s)), -rt[tok]])
    order = np.lexsort((within, subk, bucket, rows))
    rows, bucket = rows[order], bucket[order]
    counts = np.bincount(rows, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(rows)) - starts[rows]
    length = int(counts.max()) if len(rows) else 0
    seq = np.zeros((3 if wor2 else 2, n, length))
    for s, x, x1, x2 in ((0, pt, pb, sub[0]), (1, qt, qb, sub[1]), (2, ct, cb, sub[2]))[: len(seq)]:
        seq[s, rows, pos] = np.concatenate([x1[lr, lb], x2[l2s, l2f], x[tok]])[order]
    cs = optimal_ref.suffix_sums(seq[2]) if wor2 else None
    vals = _law_values(law, k, optimal_ref.suffix_sums(seq[0]), optimal_ref.prefix_sums(seq[1]),
                       optimal_ref.suffix_sums(seq[1]), cs)
    m = np.argmin(vals, axis=1)
    alpha = vals[np.arange(n), m]
    if not with_set:
        return alpha, None
    # H = every bucket before the bucket of element m, and the elements of that bucket placed before m
    inside = m < counts
    bm = np.full(n, nb)
    bm[inside] = bucket[(starts + m)[inside]]
    mask = (flat.reshape(n, v) < (np.arange(n) * nb + bm)[:, None])
    el = np.empty(len(order), np.int64)
    el[order] = pos                                              # element position of each sequence entry
    n1, n2 = len(lr), len(l2s)
    sub_pos = np.zeros((ns, e), np.int64)
    sub_pos[l2s, l2f] = el[n1:n1 + n2]
    tpos = sub_pos[slot_of[tflat], fine]                         # survivors: position of their fine lump ...
    tpos[tok] = el[n1 + n2:]                                     # ... or their own
    sel = (tb == bm[tr]) & (tpos < m[tr])
    mask.ravel()[np.flatnonzero(gather)[sel]] = True
    return alpha, mask

def _checked_rows(p, q, k):
    """Validate (same rules and messages as `check_pair`) and return k, (p rows, row sums), (q rows, row sums).

    Rows are `[N, V]` float64 (a view when the input already is a float64 ndarray: no copy) with their float64 row
    sums; callers renormalise by the sums. Plain float32/float64 ndarrays take a two-pass check (row sums, which also
    catch NaN/Inf, and the minimum, which catches negatives); anything else, or any failure, goes through
    `check_pair`, which raises the canonical error.
    """
    out = []
    fast = (isinstance(p, np.ndarray) and isinstance(q, np.ndarray) and p.shape == q.shape and p.ndim in (1, 2)
            and p.shape[-1] >= 1 and p.dtype in (np.float32, np.float64) and q.dtype in (np.float32, np.float64))
    if fast:
        for x in (p, q):
            a = np.atleast_2d(np.asarray(x, np.float64))
            s = a.sum(axis=-1)
            tol = default_tolerance(x)
            if not (np.all(np.isfinite(s)) and a.min() >= 0 and np.all(np.abs(s - 1.0) <= tol)):
                fast = False
                break
            out.append((a, s))
    if not fast:
        k = check_pair(p, q, k)
        return k, *[(np.atleast_2d(np.asarray(x, np.float64)), np.atleast_2d(np.asarray(x, np.float64)).sum(-1))
                    for x in (p, q)]
    return check_int("k", k, low=1), out[0], out[1]


def _bucketed(p, q, psum, qsum, law, k, with_set):
    alpha = np.zeros(len(p))
    mask = np.zeros(p.shape, bool) if with_set else None
    for lo in range(0, len(p), _FAST_CHUNK):
        sl = slice(lo, lo + _FAST_CHUNK)
        alpha[sl], h = _bucketed_rows(p[sl], q[sl], psum[sl], qsum[sl], law, k, with_set)
        if with_set:
            mask[sl] = h
    return alpha, mask


def optimal_acceptance(p, q, k: int, drafts: str = "iid", *, return_set: bool = False, backend: str = "auto",
                       nodes_per_decade: int = optimal_ref.NODES_PER_DECADE):
    """α*(p, draft law of q with k drafts): the best membership acceptance P(Y ∈ X) of any lossless verifier.

    p, q: `[V]` or `[N, V]` probability rows (float32: sum within 1e-4; float64: within 1e-9; renormalised in float64).
    drafts: "iid" | "without_replacement" (k_eff = min(k, |supp q|) drafts) | "greedy" (needs |supp q| >= k).
    Returns α* as a float (one pair) or `[N]` float64; with `return_set`, also the minimising token set H
    (`[V]` / `[N, V]` bool) of α* = p(V∖H) + P(X hits H).
    Cost (numpy backend): O(V) for iid and without replacement with k_eff <= 2 (ratio buckets + exact pruning, see
    `_bucketed_rows`: no full sort; the value equals the full-sort reference to rounding, ~1e-15), O(V log V) for
    greedy; O(V·k·nodes) for without replacement
    with k_eff >= 3 (exponential-race quadrature, jax scan; `nodes_per_decade` Gauss–Legendre nodes per decade of
    time, 20 agrees with exact enumeration to ~1e-15; compare with twice as many to bound the error).
    backend: "numpy" (fastest on CPU: XLA's CPU sort is ~10x slower than numpy's; the race still runs as a jax scan
    when V > 2048), "jax", or "auto" (numpy when jax's default backend is the CPU). All float64; x64 is enabled only around the jax calls.
    Raises ValueError on malformed inputs, k < 1, or an unknown draft law.
    """
    k, (p_raw, p_sum), (q_raw, q_sum) = _checked_rows(p, q, k)
    check_draft_law(drafts, OPTIMAL_LAWS)
    check_draft_law(backend, ("auto", "numpy", "jax"), "backend")
    use_jax = backend == "jax" or (backend == "auto" and jax.default_backend() != "cpu")
    single = np.ndim(p) == 1
    if not use_jax and (drafts == "iid" or (drafts == "greedy" and k == 1)):
        alpha, mask = _bucketed(p_raw, q_raw, p_sum, q_sum, "iid", k, return_set)
        if single:
            return (float(alpha[0]), mask[0]) if return_set else float(alpha[0])
        return (alpha, mask) if return_set else alpha
    n_supp = np.count_nonzero(q_raw > 0, axis=1)
    if not use_jax and drafts == "without_replacement":
        k_eff = np.minimum(k, n_supp)
        alpha = np.zeros(len(p_raw))
        mask = np.zeros(p_raw.shape, bool) if return_set else None
        for rows, law, kk in ((np.flatnonzero(k_eff == 1), "iid", 1), (np.flatnonzero(k_eff == 2), "wor2", 2)):
            if len(rows):
                a, h = _bucketed(p_raw[rows], q_raw[rows], p_sum[rows], q_sum[rows], law, kk, return_set)
                alpha[rows] = a
                if return_set:
                    mask[rows] = h
        race = np.flatnonzero(k_eff >= 3)
        if len(race):
            with jax.enable_x64(True):
                for chunk in np.array_split(race, max(1, -(-len(race) // _CHUNK))):
                    pp, qq = p_raw[chunk] / p_sum[chunk, None], q_raw[chunk] / q_sum[chunk, None]
                    alpha[chunk], h = _race_rows(pp, qq, k_eff[chunk], nodes_per_decade, False)
                    if return_set:
                        mask[chunk] = h
        if single:
            return (float(alpha[0]), mask[0]) if return_set else float(alpha[0])
        return (alpha, mask) if return_set else alpha
    p64, q64 = p_raw / p_sum[:, None], q_raw / q_sum[:, None]
    if drafts == "greedy" and np.any(n_supp < k):
        raise ValueError(f"greedy drafts need |supp q| >= k = {k} (got a row with {n_supp.min()})")
    iid = _jax_prefix(_iid) if use_jax else partial(optimal_ref.alpha_iid, with_set=return_set)
    all_rows = np.arange(len(p64))
    if drafts == "iid" or (drafts == "greedy" and k == 1):
        groups = [(all_rows, lambda pp, qq, rows: iid(pp, qq, k))]
    elif drafts == "greedy":
        greedy = _jax_greedy if use_jax else optimal_ref.alpha_greedy
        groups = [(all_rows, lambda pp, qq, rows: greedy(pp, qq, k))]
    else:
        k_eff = np.minimum(k, n_supp)
        wor2 = _jax_prefix(_wor2) if use_jax else partial(optimal_ref.alpha_wor2, with_set=return_set)
        groups = [(np.flatnonzero(k_eff == 1), lambda pp, qq, rows: iid(pp, qq, 1)),
                  (np.flatnonzero(k_eff == 2), lambda pp, qq, rows: wor2(pp, qq)),
                  (np.flatnonzero(k_eff >= 3), lambda pp, qq, rows: _race_rows(pp, qq, k_eff[rows], nodes_per_decade, use_jax))]
    alpha = np.zeros(len(p64))
    mask = np.zeros(p64.shape, bool)
    with jax.enable_x64(True):
        for rows, fn in groups:
            for chunk in np.array_split(rows, max(1, -(-len(rows) // _CHUNK))):   # small row chunks stay in cache
                if len(chunk):
                    alpha[chunk], h = fn(p64[chunk], q64[chunk], chunk)
                    if h is not None:
                        mask[chunk] = h
    if single:
        return (float(alpha[0]), mask[0]) if return_set else float(alpha[0])
    return (alpha, mask) if return_set else alpha
