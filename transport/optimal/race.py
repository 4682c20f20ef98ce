"""α* for k >= 3 drafts without replacement on the CPU in ~V·(moments) work instead of V·(nodes) transcendentals
(transport/THEORY.md §2.4): the same exponential-race integral and Gauss–Legendre grid as `reference.alpha_wor`,
with the per-token factors aggregated.

At node t the suffix S has the truncated generating polynomial G_S(z) = Π_{i∈S} (e^{-q_i t} + (1 − e^{-q_i t}) z)
mod z^k, and P(N_S(t) <= k − 1) = Σ_{j<k} [z^j] G_S. Tokens are split once per row by x_i = q_i·t_max (t_max = the
last node):
* heavy (x_i > X0): few (at most t_max / X0, in practice tens to hundreds); their factors are multiplied explicitly
  (a suffix scan over the heavy tokens, exactly the reference's recursion);
* light (x_i <= X0): G = e^{-t q(S)} Π (1 + y_i z), y_i = e^{q_i t} − 1 <= e^{X0} − 1, whose elementary symmetric
  polynomials follow from the power sums P_j = Σ y_i^j (Newton: n e_n = Σ_j (−1)^{j−1} P_j e_{n−j}); P_j is a
  series in the moments M_n = Σ q_i^n: y^j = Σ_{n>=j} j! S(n, j) (q t)^n / n! (Stirling numbers of the second kind).
  Moments are suffix sums of non-negative terms, so no per-(token, node) exponential is evaluated.
Error control: the series is cut at the smallest N with j^{N+1} x^{N+1−j} e^{jx} / (N+1)! <= SERIES_EPS for every
j < k (x = the largest light x_i; j! S(n, j) <= j^n bounds the dropped terms relative to y_i^j), and Newton's
alternating terms are damped by y_max^{j−1} <= 0.134^{j−1}, so they cannot cancel the leading positive term. The
quadrature is the reference's (tail <= TAIL_EPS; node doubling bounds its error).

Only the ratio prefixes that can hold the minimum are evaluated (LEVELS): J at coarse boundaries, a lower bound
p(S_b) + f(H_a) + min(g, r_{b−1}) q([a, b)) on every prefix between boundaries a < b (`_lower_bounds`: p/q descends,
and by submodularity of f each token of [a, b) adds at least q_i·g to f), then finer boundaries inside the
intervals whose bound is within PRUNE_MARGIN of the best J found, down to single tokens. So the least value found is
the reference's minimum over all prefixes.
"""
from __future__ import annotations

from functools import lru_cache
from math import factorial, lgamma, log
from typing import NamedTuple

import numpy as np

from transport.optimal import reference

X_TINY = 2.0 ** -10     # most light tokens: their series converges in about half the terms
X0 = 0.125              # light tokens: q_i t <= X0 at every node, so y_i = e^{q_i t} − 1 <= 0.134
SERIES_EPS = 1e-17      # relative truncation of each power sum P_j
PRUNE_MARGIN = 1e-12    # >> the rounding of J (~1e-15): pruning never drops a prefix that could be the minimum
HEAVY_GROUP = 16        # heavy tokens per step of the python loop of the heavy scan
LEVELS = (1024, 64, 4, 1)  # prefix spacing of the successive refinement levels
_MAX_N = 512          # series terms at most (k = 64 needs ~110 for x <= X0)


class RaceRow(NamedTuple):
    """One row in ratio order, with everything J needs at any prefix m (m = 0..V). Sums over prefixes and suffixes
    are not stored: each level sums the blocks it evaluates (`_level_sums`)."""

    order: np.ndarray      # [V] token ids by descending p/q
    r: np.ndarray          # [V] p/q by token id (+inf where q = 0 < p, -1 where p = q = 0): r[order] descends
    p_sorted: np.ndarray   # [V+1] p in ratio order, then 0 (a sentinel for reduceat)
    q_sorted: np.ndarray   # [V+1] q in ratio order, then 0
    t: np.ndarray          # [T] quadrature nodes
    w: np.ndarray          # [T] weights
    heavy_pos: np.ndarray  # [nh] positions (in ratio order) of the heavy tokens, ascending
    heavy_partial: np.ndarray  # [ng+1, G+1, k, T] Π over the heavy tokens of group g from offset o to its end
    heavy_bounds: np.ndarray   # [ng+2, k, T] Π over the heavy tokens of groups >= g
    x: np.ndarray          # [V] light x_i = q_i t_max in ratio order (0 for heavy tokens)
    power_weights: np.ndarray  # [N, (k-1)·T] P_j(t) = Σ_n M_n · power_weights[n, (j-1, t)] (Stirling coefficients)
    n_tiny: int            # series terms enough for the light tokens with x <= X_TINY
    k: int

    @property
    def n_terms(self) -> int:
        """N, the series terms of the light power sums."""
        return self.power_weights.shape[0]

    @property
    def t_top(self) -> float:
        """t_max, the last node (x_i = q_i t_max)."""
        return float(self.t[-1])


class Prefixes(NamedTuple):
    """Sums over the suffixes S_m and prefixes H_m at prefix lengths pos, any leading shape `[...]`."""

    pos: np.ndarray        # [...] prefix lengths m
    moments: np.ndarray    # [..., N] light moments Σ_{i ∈ S_m light} x_i^n, n = 1..N
    p_suffix: np.ndarray   # [...] p(S_m)
    q_prefix: np.ndarray   # [...] λ_m = q(H_m) (summed directly, never as 1 − q(S_m))


def series_terms(x_max: float, k: int, eps: float = SERIES_EPS) -> int:
    """Smallest N >= k − 1 such that the dropped terms n > N of every P_j (j < k) are below eps relative to P_j, for
    light x_i <= x_max (bound j^{N+1} x^{N+1−j} e^{jx} / (N+1)!)."""
    if x_max <= 0 or k <= 1:
        return max(k - 1, 1)
    n1, j, log_j, log_fact = _series_tables(k)                  # every candidate N at once, the same float64 ops
    worst = np.max(n1 * log_j + (n1 - j) * log(x_max) + j * x_max - log_fact, axis=1)
    ok = np.flatnonzero(worst <= log(eps))
    if not len(ok):
        raise ValueError(f"light tokens with x up to {x_max} need more than {_MAX_N} series terms")
    return int(n1[ok[0], 0]) - 1


@lru_cache(maxsize=64)
def _series_tables(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`series_terms`' constants for N = max(k−1, 1)..._MAX_N−1 (rows) and j = 1..k−1 (columns): N + 1 `[M, 1]`,
    j `[1, k−1]`, log j `[1, k−1]` and log (N+1)! `[M, 1]`."""
    n1 = np.arange(max(k - 1, 1), _MAX_N, dtype=np.float64)[:, None] + 1.0
    j = np.arange(1, k, dtype=np.float64)[None, :]
    log_j = np.array([[log(i) for i in range(1, k)]])
    log_fact = np.array([[lgamma(n + 1)] for n in n1[:, 0]])
    return n1, j, log_j, log_fact


@lru_cache(maxsize=256)
def stirling_coefficients(k: int, n_terms: int) -> np.ndarray:
    """c[j-1, n-1] = coefficient of x^n in (e^x − 1)^j = j! S(n, j) / n!, j = 1..k−1, n = 1..N: `[k-1, N]`."""
    base = np.array([0.0] + [1.0 / factorial(n) for n in range(1, n_terms + 1)])
    out, power = np.zeros((max(k - 1, 0), n_terms)), np.zeros(n_terms + 1)
    power[0] = 1.0
    for j in range(1, k):
        power = np.convolve(power, base)[: n_terms + 1]           # all terms non-negative
        out[j - 1] = power[1:]
    out.flags.writeable = False                                   # cached: shared by every row
    return out


def race_grid(q_support: np.ndarray, k_eff: int, nodes_per_decade: int = reference.NODES_PER_DECADE,
              tail_eps: float = reference.TAIL_EPS) -> tuple[np.ndarray, np.ndarray]:
    """`reference.race_grid`'s nodes t `[T]` and weights w `[T]`, with its upper end T found without V·grid
    exponentials: the tail P(N_V(T) <= k_eff − 1) is bounded by the exact Poisson-binomial cdf of the top 128 tokens
    and by the Chernoff bound with a lower bound on μ = E N_V(T) (exact over the top 1024 tokens, 1 − e^{-x} >=
    x − x²/2 for the rest); both are valid upper bounds, so T (possibly a grid step later than the reference's)
    still bounds the dropped tail by tail_eps."""
    a = k_eff - 1
    v = len(q_support)
    top = -np.partition(-q_support, min(v, 1024) - 1)[: min(v, 1024)] if v > 1024 else q_support
    top = np.sort(top)[::-1]
    rest = q_support if v <= 1024 else None
    q1 = q2 = 0.0
    if rest is None:
        mask = q_support < top[-1]
        tail = q_support[mask]
        q1, q2 = float(tail.sum()), float(np.dot(tail, tail))
        n_eq = v - len(tail) - len(top)                           # ties with the 1024th value left out of `top`
        q1 += n_eq * top[-1]
        q2 += n_eq * top[-1] ** 2
    t_max = max(1.0, (np.log(v) + np.log(1.0 / tail_eps)) / float(q_support.min()))
    full = 10.0 ** np.arange(0.0, np.log10(t_max) + 0.25, 0.25)
    hi_t = t_max
    for grid in (full[full <= 1e6], full):                        # the usual range first, then all of it
        ok = _first_ok(top, q1, q2, grid, a, tail_eps)
        if ok is not None:
            hi_t = grid[ok]
            break
    x, wx = _leggauss(nodes_per_decade)
    ts, ws = [0.5 * (x + 1.0)], [0.5 * wx]
    decades = int(np.ceil(np.log10(hi_t) - 1e-12)) if hi_t > 1 else 0
    for d in range(decades):
        t = 10.0 ** (d + 0.5 * (x + 1.0))
        ts.append(t)
        ws.append(0.5 * wx * t * np.log(10.0))
    return np.concatenate(ts), np.concatenate(ws)


@lru_cache(maxsize=8)
def _leggauss(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(n)


def _first_ok(top: np.ndarray, q1: float, q2: float, grid: np.ndarray, a: int, tail_eps: float) -> int | None:
    """The first index of grid `[G]` where the smaller of the two tail bounds (Poisson-binomial cdf of top[:128],
    Chernoff) is <= tail_eps, or None. Both are non-increasing in t, so that is the earlier of their first crossings:
    the Chernoff one (cheap) is found first, and the Poisson-binomial cdf P_pb (log2(128) rounds of polynomial
    products) only where it can come earlier, i.e. unless its lower bound P(no arrival of top[:128] by t) =
    e^{-t q(top[:128])} already exceeds tail_eps at the grid point just before the Chernoff crossing."""
    n_c = _first_chernoff_ok(top, q1, q2, grid, a, tail_eps)
    if n_c > 0 and np.exp(-grid[n_c - 1] * float(np.sum(top[:128]))) <= tail_eps:
        ok = np.flatnonzero(_poisson_binomial_cdf(top, grid[:n_c], a) <= tail_eps)
        n_c = ok[0] if len(ok) else n_c
    return int(n_c) if n_c < len(grid) else None


def _first_chernoff_ok(top: np.ndarray, q1: float, q2: float, grid: np.ndarray, a: int, tail_eps: float,
                       chunk: int = 4) -> int:
    """The first index of grid `[G]` where `_chernoff_bound` <= tail_eps (G if none), evaluated on a few points at a
    time (μ costs len(top) exponentials per point) from the first point where it can hold: μ <= t·(q(top) + q1)
    and e^{-μ}(eμ/a)^a decreases in μ > a, so the bound at that larger μ is a lower bound."""
    start = np.flatnonzero(_chernoff(grid * (float(np.sum(top)) + q1), a) <= tail_eps)
    for lo in range(int(start[0]) if len(start) else len(grid), len(grid), chunk):
        ok = np.flatnonzero(_chernoff_bound(top, q1, q2, grid[lo: lo + chunk], a) <= tail_eps)
        if len(ok):
            return lo + int(ok[0])
    return len(grid)


def _chernoff_bound(top: np.ndarray, q1: float, q2: float, grid: np.ndarray, a: int) -> np.ndarray:
    """An upper bound on P(N_V(t) <= a) at each t of grid `[G]`: the Chernoff bound e^{-μ}(eμ/a)^a (1 where μ <= a)
    with μ >= the exact mean over the largest rates top `[n]` plus t·q1 − t²·q2/2 for the other rates (mass q1, squared
    mass q2)."""
    mu = np.sum(-np.expm1(-np.outer(top, grid)), axis=0) + np.maximum(grid * q1 - 0.5 * grid ** 2 * q2, 0.0)
    return _chernoff(mu, a)


def _chernoff(mu: np.ndarray, a: int) -> np.ndarray:
    """e^{-μ}(eμ/a)^a where μ > a, else 1: P(N <= a) <= that for N a sum of independent Bernoullis of mean μ."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return np.where(mu > a, np.exp(-mu + a + a * np.log(mu / a)) if a > 0 else np.exp(-mu), 1.0)


def _poisson_binomial_cdf(top: np.ndarray, grid: np.ndarray, a: int) -> np.ndarray:
    """P(N(t) <= a) `[G]` for N(t) the arrivals by t of the largest rates top[:128] (`[n]`, descending): an upper
    bound on P(N_V(t) <= a), by pairwise products of the factors (e^{-q t} + (1 − e^{-q t}) z) mod z^{a+1}."""
    rates = top[:128]
    n = 1 << int(np.ceil(np.log2(len(rates))))
    factors = np.zeros((n, a + 1, len(grid)))                     # (stay + hit·z) per rate, identities as padding
    factors[:, 0] = 1.0
    qt = np.multiply.outer(rates, grid)
    factors[: len(rates), 0] = np.exp(-qt)
    if a > 0:
        factors[: len(rates), 1] = -np.expm1(-qt)
    while len(factors) > 1:                                       # pairwise products: log2(n) vectorised rounds
        factors = _polymul(factors[0::2], factors[1::2])
    return factors[0].sum(axis=0)


def _polymul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Truncated product of polynomials in z with coefficients a, b `[..., k, T]` (all terms non-negative):
    c_i = Σ_{j<=i} a_{i−j} b_j. Small arrays (the heavy scan's per-group step) by one einsum over windows of a
    zero-padded a; batches by k(k+1)/2 vectorised products, which are several times faster there."""
    k = a.shape[-2]
    if a.size <= 4096:
        padded = np.concatenate([np.zeros(a.shape[:-2] + (k - 1, a.shape[-1])), a], axis=-2)   # [k−1+d] = a_d
        windows = np.lib.stride_tricks.sliding_window_view(padded, k, axis=-2)            # [..., k, T, k]
        return np.einsum("...itm,...mt->...it", windows, b[..., ::-1, :])
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    for i in range(k):
        acc = a[..., i, :] * b[..., 0, :]
        for j in range(1, i + 1):
            acc += a[..., i - j, :] * b[..., j, :]
        out[..., i, :] = acc
    return out


def _heavy_scan(stay: np.ndarray, hit: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Suffix products of the heavy factors (stay + hit·z), stay, hit `[nh, T]`, in groups of HEAVY_GROUP tokens.

    Returns partial `[ng+1, G+1, k, T]` (group g's tokens from offset o on; a last all-identity group) and bounds
    `[ng+2, k, T]` (every group from g on): the suffix product from heavy token i is
    partial[i // G, i % G] · bounds[i // G + 1]. The same update as the reference's recursion, grouped so that the
    python loop runs over groups, not tokens.
    """
    nh, n_t = stay.shape
    g = HEAVY_GROUP
    ng = -(-nh // g)
    pad = (ng + 1) * g - nh                                       # identity factors: stay 1, hit 0
    stay = np.concatenate([stay, np.ones((pad, n_t))]).reshape(ng + 1, g, n_t)
    hit = np.concatenate([hit, np.zeros((pad, n_t))]).reshape(ng + 1, g, n_t)
    partial = np.zeros((ng + 1, g + 1, k, n_t))
    partial[:, g, 0] = 1.0
    for o in range(g - 1, -1, -1):
        np.multiply(partial[:, o + 1], stay[:, o, None, :], out=partial[:, o])
        partial[:, o, 1:] += partial[:, o + 1, :-1] * hit[:, o, None, :]
    # group products as lower-triangular Toeplitz matrices [ng+1, T, k, k]: one matmul per group in the loop
    lag = np.subtract.outer(np.arange(k), np.arange(k))
    toe = np.where((lag >= 0)[None, :, :, None], partial[:, 0][:, np.maximum(lag, 0), :], 0.0).transpose(0, 3, 1, 2)
    bounds = np.zeros((ng + 2, n_t, k, 1))
    bounds[ng + 1, :, 0] = 1.0
    for i in range(ng, -1, -1):
        np.matmul(toe[i], bounds[i + 1], out=bounds[i])
    return partial, np.ascontiguousarray(bounds[..., 0].transpose(0, 2, 1))


def _bernoulli_factors(q: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(e^{-q t}, 1 − e^{-q t}) `[n, T]` for rates q `[n]`."""
    qt = np.multiply.outer(q, t)
    return np.exp(-qt), -np.expm1(-qt)


def _descending(r: np.ndarray) -> np.ndarray:
    """Positions `[n]` of r `[n]` (finite, >= 0) by descending value, ties in any order.

    One sort of int64 keys instead of an argsort (numpy's sort of 8-byte keys is vectorised, its argsort is not; ~2x
    here): the bits of a non-negative float64 order like the float, so the key is those bits with the lowest
    log2(n) replaced by the position. Two values that differ only in those bits may come out of order; that is checked
    (one pass) and then repaired by a stable argsort of the nearly sorted values, so the order is always exact."""
    n = len(r)
    bits = max(int(n - 1).bit_length(), 1)
    key = ((r + 0.0).view(np.int64) >> bits << bits) | np.arange(n)     # + 0.0: -0.0 -> +0.0
    key.sort()
    order = key[::-1] & ((1 << bits) - 1)
    r_sorted = r[order]
    if np.any(r_sorted[1:] > r_sorted[:-1]):                             # rare: values within 2^-(52-bits) relative
        order = order[np.argsort(-r_sorted, kind="stable")]
    return order


def prepare_row(p: np.ndarray, q: np.ndarray, k: int, nodes_per_decade: int) -> RaceRow:
    """Sort one row `[V]` by ratio, build its grid, split heavy / light tokens and scan the heavy factors."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = p / q
    # reference.ratio_order's order (ties in any order), sorting only the support of q: q = 0 < p first, p = q = 0 last
    if np.all(q):
        order, q_support = _descending(r), q
    else:
        r = np.where(q > 0, r, np.where(p > 0, np.inf, -1.0))
        support = np.flatnonzero(q > 0)
        order = np.concatenate([np.flatnonzero(r == np.inf), support[_descending(r[support])], np.flatnonzero(r < 0)])
        q_support = q[support]
    t, w = race_grid(q_support, k, nodes_per_decade)
    t_top = float(t[-1])
    p_sorted, q_sorted = np.append(p[order], 0.0), np.append(q[order], 0.0)
    x = q_sorted[:-1] * t_top
    heavy_pos = np.flatnonzero(x > X0)
    stay, hit = _bernoulli_factors(q_sorted[heavy_pos], t)
    partial, bounds = _heavy_scan(stay, hit, k)
    x[heavy_pos] = 0.0
    n_terms = series_terms(float(x.max()), k)
    return RaceRow(order, r, p_sorted, q_sorted, t, w, heavy_pos, partial, bounds, x,
                   _power_weights(stirling_coefficients(k, n_terms), t), min(_tiny_terms(k), n_terms), k)


@lru_cache(maxsize=64)
def _tiny_terms(k: int) -> int:
    return series_terms(X_TINY, k)


def _power_weights(coef: np.ndarray, t: np.ndarray) -> np.ndarray:
    """`[N, (k-1)·T]`: P_j(t) = Σ_n c[j-1, n-1] (t/t_max)^n M_n for moments M_n of x = q t_max, as one matmul."""
    n_terms = coef.shape[1]
    tpow = (t / t[-1])[None, :] ** np.arange(1, n_terms + 1)[:, None]              # [N, T], entries <= 1
    return (coef[:, :, None] * tpow[None]).transpose(1, 0, 2).reshape(n_terms, -1)


def _light_coefficients(moments: np.ndarray, q_mass: np.ndarray, row: RaceRow) -> np.ndarray:
    """Coefficients e^{-t q(S)} e_j(y), j = 0..k−1, `[k, B, T]`, of the light tokens of B suffixes, from their
    moments Σ x_i^n `[B, N]` and light mass q(S) `[B]`."""
    n_b, n_t = len(q_mass), len(row.t)
    power_sums = (moments @ row.power_weights).reshape(n_b, row.k - 1, n_t).transpose(1, 0, 2)   # P_j, j = 1..k−1
    power_sums[1::2] *= -1.0                                      # (−1)^{j−1} P_j
    e = np.empty((row.k, n_b, n_t))
    e[0] = 1.0
    for n in range(1, row.k):                                    # Newton: n e_n = Σ_j (−1)^{j−1} P_j e_{n−j}
        e[n] = np.einsum("jbt,jbt->bt", power_sums[:n], e[n - 1::-1]) / n
    e *= np.exp(-np.multiply.outer(q_mass, row.t))
    return e


def _j_values(pre: Prefixes, row: RaceRow) -> tuple[np.ndarray, np.ndarray]:
    """J(H_m) = p(S_m) + min(f(H_m), 1) `[B]` at the prefixes pre (flat, `[B]`) and P(N_{S_m}(t) <= k − 1) `[B, T]`
    at the nodes."""
    light = _light_coefficients(pre.moments, pre.moments[:, 0] / row.t_top, row)   # M_1 = t_max · light q(S_m)
    idx, inverse = np.unique(np.searchsorted(row.heavy_pos, pre.pos), return_inverse=True)   # first heavy >= m
    heavy = _polymul(row.heavy_partial[idx // HEAVY_GROUP, idx % HEAVY_GROUP], row.heavy_bounds[idx // HEAVY_GROUP + 1])
    heavy = heavy[inverse].transpose(1, 0, 2)                    # [k, B, T]
    light_cdf = np.cumsum(light, axis=0)                         # [m] = Σ_{l <= m} L_l
    survive = np.einsum("ibt,ibt->bt", heavy, light_cdf[::-1])   # Σ_{i + l < k} H_i L_l
    lam = pre.q_prefix
    hit = np.sum(row.w * lam[:, None] * np.exp(-np.multiply.outer(lam, row.t)) * survive, axis=1)
    return pre.p_suffix + np.minimum(hit, 1.0), survive


def _lower_bounds(pre: Prefixes, vals: np.ndarray, survive: np.ndarray, row: RaceRow) -> np.ndarray:
    """A lower bound on J over the prefixes between consecutive boundaries a < b of pre `[I, B]` (J there: vals
    `[I, B]`; P(N_S(t) <= k − 1) there: survive `[I, B, T]`) -> `[I, B-1]`.

    For H_a ⊆ H_m ⊆ H_b: every token in [m, b) has p >= r_{b−1} q (descending ratios), so
    p(S_m) >= p(S_b) + r_{b−1} q([m, b)). f(H) = P(X hits H) is submodular, so adding i ∈ H_b to any H ⊆ H_b∖i
    gains at least f(H_b) − f(H_b∖i) = P(the first k draws lie in S_b + i and include i)
    >= E[(1 − e^{-q_i T}) e^{-λ_b T}], T = the k-th arrival time of S_b (i before it, and every token of H_b∖i after
    it); with c = max q over [a, b) and (1 − e^{-xT})/x decreasing in x this is >= q_i g,
    g = E[φ(T)] / c = (1/c) ∫ φ'(t) P(N_{S_b}(t) <= k − 1) dt, φ(t) = e^{-λ_b t}(1 − e^{-ct}) (the race's grid).
    So f(H_m) >= f(H_a) + g q([a, m)) and J(H_m) >= p(S_b) + f(H_a) + min(g, r_{b−1}) q([a, b)).
    g is shrunk by 1e-9 relative and 1e-13 absolute for the quadrature and its dropped tail.
    """
    a, b = pre.pos[:, :-1], pre.pos[:, 1:]
    f_a = vals[:, :-1] - pre.p_suffix[:, :-1]
    lam = pre.q_prefix[:, 1:, None]
    c = _interval_max(row.q_sorted, a, b)
    cc = np.where(c > 0, c, 1.0)[..., None]
    dphi = cc * np.exp(-(lam + cc) * row.t) - lam * np.exp(-lam * row.t) * -np.expm1(-cc * row.t)
    g = np.sum(row.w * dphi * survive[:, 1:], axis=-1) / cc[..., 0]
    g = np.maximum(g * (1.0 - 1e-9) - 1e-13, 0.0)
    r = np.maximum(row.r[row.order[np.maximum(b - 1, 0)]], 0.0)
    mass = pre.q_prefix[:, 1:] - pre.q_prefix[:, :-1]
    with np.errstate(invalid="ignore"):
        gain = np.where((mass > 0) & (c > 0), np.minimum(g, r) * mass, 0.0)
    return pre.p_suffix[:, 1:] + f_a + gain


def _interval_max(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """max x[a:b] per interval (0 where a == b) for interval ends a, b of any shape (one reduceat over [a, b) pairs);
    x `[V+1]` ends with a 0 sentinel (so that a = V is a valid index)."""
    top = np.maximum.reduceat(x, _pairs_flat(a, b))[0::2].reshape(a.shape)
    return np.where(b > a, top, 0.0)


def _pairs_flat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[a_0, b_0, a_1, b_1, ...] for reduceat over the ranges [a, b) (entry 2i of its result)."""
    return np.stack([a.ravel(), b.ravel()], axis=1).ravel()


def _level_sums(row: RaceRow, starts: np.ndarray, ends: np.ndarray, step: int, outer: Prefixes) -> Prefixes:
    """The prefixes start, start + step, ..., end (clipped to end) of I intervals [start, end) `[I]` and their sums
    -> Prefixes `[I, B]`: block sums of non-negative terms, then cumulative sums over blocks, starting from the
    interval's outer sums (outer `[I]`: the suffix sums at its end, moments and p(S_end), and the prefix sum
    λ_start). The light powers n > N_tiny are summed over the tokens with x > X_TINY only (the series of the others
    has converged at N_tiny terms)."""
    n_all, n_tiny, x = row.n_terms, row.n_tiny, row.x
    n_int = len(starts)
    nb = -(-int(np.max(ends - starts)) // step)
    block_lo = starts[:, None] + step * np.arange(nb)                       # [I, nb]
    block_hi = np.minimum(block_lo + step, ends[:, None])
    block_lo = np.minimum(block_lo, block_hi)
    flat_pairs = _pairs_flat(block_lo, block_hi)
    empty = (block_hi == block_lo).ravel()
    p_sums = np.where(empty, 0.0, np.add.reduceat(row.p_sorted, flat_pairs)[0::2]).reshape(n_int, nb)
    q_sums = np.where(empty, 0.0, np.add.reduceat(row.q_sorted, flat_pairs)[0::2]).reshape(n_int, nb)
    if n_int == 1 and starts[0] == 0 and ends[0] == len(x):       # the whole row: no gather
        flat = np.zeros((nb, step))
        flat.ravel()[: len(x)] = x
    else:
        idx = starts[:, None] + np.arange(nb * step)
        flat = np.where(idx < ends[:, None], x[np.minimum(idx, len(x) - 1)], 0.0).reshape(n_int * nb, step)
    used = np.flatnonzero(flat.any(axis=1))                      # blocks with light mass (zeros cluster by ratio)
    blocks = flat[used]
    sums = np.zeros((n_int * nb, n_all))
    power = blocks.copy()
    for n in range(n_tiny):
        sums[used, n] = power.sum(axis=-1)
        if n + 1 < n_tiny:
            power *= blocks
    big_block, big_at = np.nonzero(blocks > X_TINY) if n_all > n_tiny else (np.zeros(0, np.int64),) * 2
    if len(big_block):
        xs = blocks[big_block, big_at]
        power = xs ** (n_tiny + 1)
        for n in range(n_tiny, n_all):
            sums[used, n] = np.bincount(big_block, weights=power, minlength=len(used))
            power *= xs
    sums = sums.reshape(n_int, nb, n_all)
    moments = np.empty((n_int, nb + 1, n_all))
    moments[:, -1] = outer.moments
    moments[:, :-1] = np.cumsum(sums[:, ::-1], axis=1)[:, ::-1] + outer.moments[:, None]
    p_suffix = np.empty((n_int, nb + 1))
    p_suffix[:, -1] = outer.p_suffix
    p_suffix[:, :-1] = np.cumsum(p_sums[:, ::-1], axis=1)[:, ::-1] + outer.p_suffix[:, None]
    q_prefix = np.empty((n_int, nb + 1))
    q_prefix[:, 0] = outer.q_prefix
    q_prefix[:, 1:] = np.cumsum(q_sums, axis=1) + outer.q_prefix[:, None]
    pos = np.minimum(starts[:, None] + step * np.arange(nb + 1), ends[:, None])
    return Prefixes(pos, moments, p_suffix, q_prefix)


def race_row(p: np.ndarray, q: np.ndarray, k: int, nodes_per_decade: int = reference.NODES_PER_DECADE,
             with_set: bool = True) -> tuple[float, np.ndarray | None]:
    """α* (and H `[V]` bool) for one pair p, q `[V]` (float64, normalised) and k = k_eff >= 3 drafts without
    replacement (k_eff <= |supp q|)."""
    row = prepare_row(p, q, k, nodes_per_decade)
    v = len(p)
    starts, ends = np.array([0]), np.array([v])                  # intervals still open, and their outer sums
    outer = Prefixes(None, np.zeros((1, row.n_terms)), np.zeros(1), np.zeros(1))
    best_val, best_pos = np.inf, 0
    for step in LEVELS:
        pre = _level_sums(row, starts, ends, step, outer)
        n_int, n_b = pre.pos.shape
        vals, survive = _j_values(Prefixes(*(x.reshape(n_int * n_b, *x.shape[2:]) for x in pre)), row)
        i = int(np.argmin(vals))
        if vals[i] < best_val:
            best_val, best_pos = float(vals[i]), int(pre.pos.ravel()[i])
        if step == 1:
            break
        lower = _lower_bounds(pre, vals.reshape(n_int, n_b), survive.reshape(n_int, n_b, -1), row)
        keep = (lower <= best_val + PRUNE_MARGIN) & (pre.pos[:, 1:] > pre.pos[:, :-1])
        at, j = np.nonzero(keep)
        if not len(at):
            break
        starts, ends = pre.pos[at, j], pre.pos[at, j + 1]
        outer = Prefixes(None, pre.moments[at, j + 1], pre.p_suffix[at, j + 1], pre.q_prefix[at, j])
    if not with_set:
        return best_val, None
    mask = np.zeros(v, bool)
    mask[row.order[:best_pos]] = True
    return best_val, mask
