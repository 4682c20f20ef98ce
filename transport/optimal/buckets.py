"""The bucketed exact α* of the numpy backend (transport/THEORY.md §2.3): O(V) per row for iid drafts and for two
drafts without replacement, no full sort, equal to the full-sort reference to rounding (~1e-15).
"""
from __future__ import annotations

import numpy as np

# Bucketed exact path (CPU, numpy): no full sort (transport/THEORY.md §2.3 prefix theorem + a monotone lower bound).
#
# Tokens are bucketed by the float64 bit pattern of r = p/q (for r >= 0 the IEEE-754 bits are monotone in r), keeping
# the exponent and the top `sub` mantissa bits: 2^sub buckets per octave of r. Only the octaves a chunk of rows uses
# get buckets (`_coarse_buckets`): r = 0 (and -0.0, 0/0 on x86) go to the last bucket, r = +inf (q = 0 < p) to the
# first, and `sub` (<= _MAX_SUB_BITS) is the finest resolution that keeps the bucket count within
# V / _TOKENS_PER_BUCKET, so the bucket arrays stay small whatever the spread of r. Bucket b holds ratios above those
# of bucket b + 1, so every union H_b of buckets < b is a prefix (threshold) set. With S_b = V∖H_b and f the
# (monotone) hit function, any H with H_b ⊆ H ⊆ H_{b+1} has J(H) = p(V∖H) + f(H) >= p(S_{b+1}) + f(H_b) =: LB_b.
# Buckets with LB_b > min_b J(H_b) + _PRUNE_MARGIN cannot contain the minimum; the others ("survivors") are
# split into 2^_FINE_BITS sub-buckets by the next mantissa bits of r and pruned the same way; the tokens of the
# surviving sub-buckets are sorted by ratio, and J is evaluated before each of them (the reference formula, from
# prefix / suffix sums that are direct sums of non-negative terms, as in transport.optimal.reference). Every set
# evaluated is a threshold set and every threshold set that can reach the minimum is evaluated, so the least value is
# α*; the margin (1e-12, >> the ~1e-15 rounding of the boundary values) only makes the pruning test safe against
# rounding.
_MAX_SUB_BITS = 10
_FINE_BITS = 5
_PRUNE_MARGIN = 1e-12
_INF_KEY = 0x7FF0_0000_0000_0000 >> (52 - _MAX_SUB_BITS)    # key of r = +inf at the finest resolution
_FAST_CHUNK = 8                 # rows per pass (at most): the rows of a pass share their buckets
_FAST_CHUNK_TOKENS = 1 << 20    # tokens per pass (4 rows at V = 256k): [chunk, V] float64 temporaries (8 MiB) stay
                                # near the caches
_TOKENS_PER_BUCKET = 32         # tuned at V = 128k: finer coarse buckets cost more in per-bucket sums than they save


def _coarse_buckets(p: np.ndarray, q: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Ratio buckets of rows p, q `[n, V]` -> (flat `[n*V]` int64 = row * nb + bucket, nb, sub bits), written into
    out (int64 `[n, V]`, C-contiguous).

    Bucket 0 holds the largest ratios. Keys are r's bits >> (52 - sub); keys <= 0 (r = 0, -0.0, negative NaN) and
    keys >= the +inf key are clipped into one bucket below / above the finite positive keys in use, which merges
    no two distinct finite positive keys, so the map stays monotone in r.
    Four full passes in the common case (divide, min, max, one shift) plus the row offsets: the range is read off
    the unshifted bits (x >> s is monotone, so min(x) >> s = min(x >> s)), both shifts are one, and the clip is
    skipped when every ratio is finite, positive and normal (all keys already inside the range).
    """
    n, v = p.shape
    shift = 52 - _MAX_SUB_BITS
    with np.errstate(divide="ignore", invalid="ignore"):
        bits = np.divide(p, q, out=out.view(np.float64)).view(np.int64)
    lo_bits, hi_bits = int(bits.min()), int(bits.max())
    clip = lo_bits < 1 << shift or hi_bits >= _INF_KEY << shift
    if lo_bits < 1 << shift:                                   # key <= 0: r = 0, -0.0, subnormal, negative NaN
        lo_bits = int(np.min(bits, where=bits >= 1 << shift, initial=_INF_KEY << shift))
    if hi_bits >= _INF_KEY << shift:                           # key >= the +inf key: r = +inf, positive NaN
        hi_bits = int(np.max(bits, where=bits < _INF_KEY << shift, initial=0))
    lo, hi = lo_bits >> shift, hi_bits >> shift
    lo, hi = (1, 1) if lo > hi else (lo, hi)
    drop = 0
    while (hi >> drop) - (lo >> drop) + 3 > max(v // _TOKENS_PER_BUCKET, 64) and drop < _MAX_SUB_BITS:
        drop += 1
    key = np.right_shift(bits, shift + drop, out=bits)        # (x >> a) >> b == x >> (a + b)
    lo, hi = (lo >> drop) - 1, (hi >> drop) + 1
    nb = hi - lo + 1
    if clip:
        np.clip(key, lo, hi, out=key)
    flat = np.subtract((hi + np.arange(n) * nb)[:, None], key, out=key).ravel()
    return flat, nb, _MAX_SUB_BITS - drop


def _suffix_np(x, base):
    """base[i] + Σ_{i' >= j} x[i, i'] for j = 0..B `[m, B+1]` from x `[m, B]`, base `[m]` (direct sums of
    non-negative terms; cumsum written straight into the result, no reversed or concatenated copies)."""
    s = np.zeros((x.shape[0], x.shape[1] + 1))
    np.cumsum(x[:, ::-1], axis=1, out=s[:, -2::-1])
    s += base[:, None]
    return s


def _prefix_np(x, base):
    """base[i] + Σ_{i' < j} x[i, i'] for j = 0..B `[m, B+1]` from x `[m, B]`, base `[m]`."""
    s = np.zeros((x.shape[0], x.shape[1] + 1))
    np.cumsum(x, axis=1, out=s[:, 1:])
    s += base[:, None]
    return s


def _leave_one_out_terms(q, qsum):
    """c_a = q_a / q(V∖a) for rows of q `[n, V]` (raw scale, row totals qsum; 0 where q_a = 0).

    q(V∖a) = qsum - q_a is cancellation-free for every token with q_a <= qsum / 2 (relative error a few ulps); the
    one token per row that may exceed qsum / 2 has it summed directly over the other tokens.
    """
    am = np.argmax(q, axis=1)
    c = np.subtract(qsum[:, None], q)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(q, c, out=c)
    for i in np.flatnonzero(q[np.arange(len(q)), am] > qsum / 2):
        row, a = q[i], am[i]
        loo = np.sum(row[:a]) + np.sum(row[a + 1:])
        c[i, a] = row[a] / loo if loo > 0 else 0.0
    return c


def _law_values(law, k, pS, qH, qS, cS):
    """J at each prefix from the direct prefix / suffix sums (the reference's formulas); cS is unused (None) for iid."""
    return _law_combine(law, pS, _law_hit(law, k, qH, qS, cS))


def _law_hit(law, k, qH, qS, cS):
    """The hit term of J at each boundary: qS^k for iid (J = pS + 1 - qS^k), min(qH (1 + cS), 1) for wor2."""
    if law == "iid":
        return qS ** k
    return np.minimum(qH * (1.0 + cS), 1.0)                       # "wor2"


def _law_combine(law, pS, hit):
    """J = pS + 1 - qS^k (iid) or pS + min(...) (wor2) from `_law_hit`'s term, in the reference's order of ops."""
    return pS + 1.0 - hit if law == "iid" else pS + hit


def _level(law, k, sums, base):
    """Prefix / suffix sums and J at the boundaries of consecutive buckets, for m groups of B buckets each.

    sums: per-bucket (p, q, c) `[m, B]` in ratio order (c is None for iid); base: the group's surroundings
    (p after, q before, q after, c after) `[m]`. Returns (pS, qH, qS, cS) `[m, B+1]`, J at every boundary
    `[m, B+1]` and LB per bucket `[m, B]` (J of the boundary before the bucket with p of the boundary after it).
    The q-dependent term (a pow for iid) is computed once per boundary and shared by J and LB.
    """
    (pb, qb, cb), (pa, qbef, qa, ca) = sums, base
    pS, qH, qS = _suffix_np(pb, pa), _prefix_np(qb, qbef), _suffix_np(qb, qa)
    cS = _suffix_np(cb, ca) if cb is not None else None
    hit = _law_hit(law, k, qH, qS, cS)
    lower = _law_combine(law, pS[:, 1:], hit[:, :-1])
    return (pS, qH, qS, cS), _law_combine(law, pS, hit), lower


def _survivors(sums, lower, best, rows):
    """Buckets `[m, B]` holding mass whose lower bound can reach the row's best value (+ rounding margin)."""
    return ((sums[0] > 0) | (sums[1] > 0)) & (lower <= best[rows][:, None] + _PRUNE_MARGIN)


def _segment_sums(seg: np.ndarray, xs: list, with_prefix: tuple) -> tuple[np.ndarray, list]:
    """Direct sums inside runs of equal seg (sorted) `[m]`: each token's rank in its run, and for each x `[m]` in xs
    (None passes through) its inclusive suffix within the run and, where with_prefix says so, its exclusive prefix
    (else None: J needs it for q only).

    Never a difference of running totals (c_a = q_a / q(V∖a) reaches ~1/q(V∖a), which would swamp the other terms):
    runs are grouped by length class, padded to the class width (a power of two, so at most 2m cells) and summed
    along rows.
    """
    m = len(seg)
    starts = np.flatnonzero(np.concatenate([[True], seg[1:] != seg[:-1]]))
    lengths = np.diff(np.append(starts, m))
    width = 1 << np.ceil(np.log2(np.maximum(lengths, 1))).astype(np.int64)
    rank = np.arange(m) - np.repeat(starts, lengths)
    out = [(np.empty(m) if x is not None and pre else None, np.empty(m) if x is not None else None)
           for x, pre in zip(xs, with_prefix)]
    for w in np.unique(width):
        cls = width == w
        pos = starts[cls][:, None] + np.arange(w)
        valid = np.arange(w) < lengths[cls][:, None]
        at = pos[valid]
        gather = np.minimum(pos, m - 1)
        for x, (pre, suf) in zip(xs, out):
            if x is None:
                continue
            block = np.where(valid, x[gather], 0.0)
            if pre is not None:
                inclusive = np.cumsum(block, axis=1)
                pre[at] = np.concatenate([np.zeros((len(block), 1)), inclusive[:, :-1]], axis=1)[valid]
            suf[at] = np.cumsum(block[:, ::-1], axis=1)[:, ::-1][valid]
    return rank, out


def _bucketed_rows(p, q, psum, qsum, law, k, with_set, buf):
    """α* (and H) for rows p, q `[n, V]` (raw, row totals psum, qsum) and law "iid" (k drafts) or "wor2".

    Three levels, each evaluated only where the previous one could not rule the minimum out: coarse ratio buckets
    of every token, 2^_FINE_BITS sub-buckets of the surviving buckets, and the tokens of the surviving
    sub-buckets in ratio order. α* is the least J over the boundaries of all three levels.
    """
    n, v = p.shape
    e = 1 << _FINE_BITS
    c = _leave_one_out_terms(q, qsum) if law == "wor2" else None
    flat, nb, sub_bits = _coarse_buckets(p, q, buf)
    # level 1: every token into its coarse bucket
    sums1 = [np.bincount(flat, weights=x.ravel(), minlength=n * nb).reshape(n, nb) if x is not None else None
             for x in (p, q, c)]
    sums1[0] /= psum[:, None]
    sums1[1] /= qsum[:, None]
    zero = np.zeros(n)
    acc1, vals1, lower1 = _level(law, k, sums1, (zero, zero, zero, zero))
    best = vals1.min(axis=1)
    surv = _survivors(sums1, lower1, best, np.arange(n))
    # the surviving buckets' tokens: one index pass over all tokens, then short gathers
    idx = np.flatnonzero(surv.ravel()[flat])
    tflat = flat[idx]
    tr = tflat // nb
    tb = tflat - tr * nb
    pt, qt = p.ravel()[idx], q.ravel()[idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        rt = pt / qt
    rt[np.isnan(rt)] = 0.0
    pt /= psum[tr]
    qt /= qsum[tr]
    ct = c.ravel()[idx] if c is not None else None
    # level 2: each surviving bucket split into 2^_FINE_BITS sub-buckets (the next mantissa bits of r)
    slot_of = np.cumsum(surv.ravel()) - 1                       # slot of each surviving (row, bucket)
    s_row, s_b = np.nonzero(surv)
    ns = len(s_row)
    fine = (e - 1) - ((rt.view(np.int64) >> (52 - sub_bits - _FINE_BITS)) & (e - 1))
    fine[np.isinf(rt)] = 0
    tslot = slot_of[tflat] * e + fine
    sums2 = [np.bincount(tslot, weights=x, minlength=ns * e).reshape(ns, e) if x is not None else None
             for x in (pt, qt, ct)]
    base2 = tuple(a[s_row, s_b + shift] if a is not None else None for a, shift in zip(acc1, (1, 0, 1, 1)))
    acc2, vals2, lower2 = _level(law, k, sums2, base2)
    np.minimum.at(best, s_row, vals2.min(axis=1))
    surv2 = _survivors(sums2, lower2, best, s_row)
    # level 3: the surviving sub-buckets' tokens in ratio order; J before each token
    tok = np.flatnonzero(surv2.ravel()[tslot])
    o = tok[np.lexsort((-rt[tok], tslot[tok]))]
    seg = tslot[o]
    s3, f3 = seg // e, seg % e
    j3, within = _segment_sums(seg, [x[o] if x is not None else None for x in (pt, qt, ct)],
                               with_prefix=(False, True, False))
    cS3 = acc2[3][s3, f3 + 1] + within[2][1] if c is not None else None
    vals3 = _law_values(law, k, acc2[0][s3, f3 + 1] + within[0][1], acc2[1][s3, f3] + within[1][0],
                        acc2[2][s3, f3 + 1] + within[1][1], cS3)
    np.minimum.at(best, s_row[s3], vals3)
    if not with_set:
        return best, None
    return best, _minimizing_set(flat.reshape(n, v), nb, idx, tr, tb, fine, o, j3,
                                 (vals1, vals2, vals3), (s_row, s_b, s3, f3))


def _minimizing_set(flat, nb, idx, tr, tb, fine, o, j3, vals, slots):
    """H of the least J over the three levels: every token in buckets < b, in bucket b's sub-buckets < f, and the
    first j tokens of sub-bucket (b, f) -> `[n, V]` bool.

    flat: row * nb + bucket `[n, V]`; idx, tr, tb, fine: the surviving buckets' tokens (flat index, row, bucket,
    sub-bucket); o, j3: level-3 tokens (index into idx, rank in their sub-bucket); vals: J at level 1 `[n, nb+1]`,
    level 2 `[ns, e+1]`, level 3 `[len(o)]`; slots: (row, bucket) of each level-2 group, (group, sub-bucket) of
    each level-3 token.
    """
    n = len(flat)
    vals1, vals2, vals3 = vals
    s_row, s_b, s3, f3 = slots
    m1, m2 = np.argmin(vals1, axis=1), np.argmin(vals2, axis=1)
    zeros = np.zeros(n + len(m2), np.int64)
    value = np.concatenate([vals1[np.arange(n), m1], vals2[np.arange(len(m2)), m2], vals3])
    row = np.concatenate([np.arange(n), s_row, s_row[s3]])
    b = np.concatenate([m1, s_b, s_b[s3]])
    f = np.concatenate([np.zeros(n, np.int64), m2, f3])
    j = np.concatenate([zeros, j3])
    order = np.lexsort((value, row))
    pick = order[np.searchsorted(row[order], np.arange(n))]     # each row's least J (every row has a level-1 entry)
    b, f, j = b[pick], f[pick], j[pick]
    mask = flat < (np.arange(n) * nb + b)[:, None]
    rank = np.full(len(idx), np.iinfo(np.int64).max)
    rank[o] = j3
    sel = (tb == b[tr]) & ((fine < f[tr]) | ((fine == f[tr]) & (rank < j[tr])))
    mask.ravel()[idx[sel]] = True
    return mask



def _float64_rows(x: np.ndarray, buf: np.ndarray | None) -> np.ndarray:
    """Rows x `[m, V]` as float64: x itself (float64), or its exact copy in buf[:m] (float32)."""
    if buf is None:
        return x
    np.copyto(buf[:len(x)], x)
    return buf[:len(x)]


def bucketed(p, q, psum, qsum, law, k, with_set):
    """α* `[N]` (and H `[N, V]` bool or None) for raw float32/float64 rows p, q `[N, V]` with float64 row sums, by
    chunks of min(_FAST_CHUNK, _FAST_CHUNK_TOKENS // V) rows (float32 chunks converted to float64 on the way:
    exact, and no `[N, V]` copy).

    The chunk-sized arrays (bucket keys, float64 copies of float32 rows) are allocated once and reused by every
    chunk rather than allocated per chunk (a new large array can come back as fresh pages from the OS).
    """
    n, v = p.shape
    step = max(1, min(_FAST_CHUNK, _FAST_CHUNK_TOKENS // v))
    m = min(step, n)
    key = np.empty((m, v), np.int64)
    as64 = [np.empty((m, v)) if x.dtype != np.float64 else None for x in (p, q)]
    alpha = np.zeros(n)
    mask = np.zeros(p.shape, bool) if with_set else None
    for lo in range(0, n, step):
        sl = slice(lo, lo + step)
        pc, qc = (_float64_rows(x[sl], b) for x, b in zip((p, q), as64))
        alpha[sl], h = _bucketed_rows(pc, qc, psum[sl], qsum[sl], law, k, with_set, key[:len(pc)])
        if with_set:
            mask[sl] = h
    return alpha, mask
