"""Numpy float64 α* by a full sort (the reference of `transport.optimal.acceptance`, batched `[N, V]`;
transport/THEORY.md §2): the prefix (threshold) theorem for iid and without-replacement drafts, the closed form for
greedy drafts, and the exponential-race quadrature for without replacement with k >= 3.

`alpha_wor` is a one-pair python-loop reference for the race; `transport.optimal.jax_backend` runs the same recursion
as a jax scan and shares the quadrature grid built here.
"""
from __future__ import annotations

import numpy as np

# Tail of the race integral beyond the last node is bounded by P(N_V(T) < k) <= TAIL_EPS (see race_grid).
TAIL_EPS = 1e-17
NODES_PER_DECADE = 20  # 16 gave <= 3e-14 and 24 gave <= 5e-16 vs exact enumeration (V <= 8)


def ratio_order(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Token order `[..., V]` by descending p/q: q == 0 < p first (ratio +inf), p == q == 0 last.

    Ties in any order (quicksort): by the threshold theorem they change the minimising set, never α*.
    """
    r = np.where(q > 0, p / np.where(q > 0, q, 1.0), np.where(p > 0, np.inf, -1.0))
    return np.argsort(-r, axis=-1)


def suffix_sums(x: np.ndarray) -> np.ndarray:
    """s[m] = Σ_{i >= m} x[..., i] for m = 0..V: `[..., V+1]` (complements by direct summation, pitfall 6.1.1)."""
    tail = np.cumsum(x[..., ::-1], axis=-1)[..., ::-1]
    return np.concatenate([tail, np.zeros(x.shape[:-1] + (1,))], axis=-1)


def prefix_sums(x: np.ndarray) -> np.ndarray:
    """s[m] = Σ_{i < m} x[..., i] for m = 0..V: `[..., V+1]`."""
    return np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)


def leave_one_out(x: np.ndarray) -> np.ndarray:
    """Σ_{j != i} x_j for each i (`[..., V]`), as exclusive prefix + exclusive suffix sums (never total - x_i)."""
    return prefix_sums(x)[..., :-1] + suffix_sums(x)[..., 1:]


def best_prefix(vals: np.ndarray, order: np.ndarray, with_set: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Minimum of vals `[N, V+1]` over prefixes m and the prefix masks H_m = order[:m] -> (`[N]`, `[N, V]` bool)."""
    m = np.argmin(vals, axis=-1)
    if not with_set:
        return np.take_along_axis(vals, m[:, None], -1)[:, 0], None
    mask = np.zeros(order.shape, bool)
    np.put_along_axis(mask, order, np.arange(order.shape[-1]) < m[:, None], axis=-1)
    return np.take_along_axis(vals, m[:, None], -1)[:, 0], mask


def _sorted(p: np.ndarray, q: np.ndarray):
    o = ratio_order(p, q)
    return o, np.take_along_axis(p, o, -1), np.take_along_axis(q, o, -1)


def alpha_iid(p: np.ndarray, q: np.ndarray, k: int, with_set: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """α* for k iid drafts, p, q `[N, V]`: min_m p(V∖H_m) + 1 - q(V∖H_m)^k. Returns (α* `[N]`, H `[N, V]`)."""
    o, ps, qs = _sorted(p, q)
    return best_prefix(suffix_sums(ps) + 1.0 - suffix_sums(qs) ** k, o, with_set)


def alpha_wor2(p: np.ndarray, q: np.ndarray, with_set: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """α* for 2 drafts without replacement (rows with |supp q| >= 2): f(H) = q(H)(1 + Σ_{a∉H} q_a / q(V∖a))."""
    o, ps, qs = _sorted(p, q)
    loo = leave_one_out(qs)
    a = suffix_sums(np.where(qs > 0, qs / np.where(loo > 0, loo, 1.0), 0.0))
    return best_prefix(suffix_sums(ps) + np.minimum(prefix_sums(qs) * (1.0 + a), 1.0), o, with_set)


def alpha_greedy(p: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """α* for greedy drafts (top-(k-1) of q, ties to the smaller id, plus one draft from q outside them), `[N, V]`:
    p(G) + Σ_{x∉G} min(p_x, q'_x) with q' = q·1[∉G]/q(V∖G). Returns (α* `[N]`, H `[N, V]`)."""
    g = np.argsort(-q, axis=-1, kind="stable")[:, : k - 1]
    in_g = np.zeros(q.shape, bool)
    np.put_along_axis(in_g, g, True, axis=-1)
    return greedy_given_set(p, q, in_g)


def greedy_given_set(p: np.ndarray, q: np.ndarray, in_g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The greedy closed form once the deterministic drafts G (`in_g [N, V]` bool) are known: (α* `[N]`, H)."""
    q_rest = np.where(in_g, 0.0, q)
    q_cond = q_rest / q_rest.sum(-1, keepdims=True)
    return np.sum(np.where(in_g, p, np.minimum(p, q_cond)), -1), ~in_g & (p > q_cond)


def poisson_binomial_cdf(rates: np.ndarray, t: np.ndarray, a: int) -> np.ndarray:
    """P(N(t) <= a) for N(t) = #{i : E_i <= t}, E_i ~ Exp(rates_i) independent; t: `[G]` -> `[G]` (exact,
    O(len·a·G))."""
    dist = np.zeros((a + 1, len(t)))
    dist[0] = 1.0
    for r in rates:
        hit, stay = -np.expm1(-r * t), np.exp(-r * t)
        dist[1:] = dist[1:] * stay + dist[:-1] * hit
        dist[0] *= stay
    return dist.sum(0)


def race_grid(q_support: np.ndarray, k_eff: int, nodes_per_decade: int = NODES_PER_DECADE,
              tail_eps: float = TAIL_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Gauss–Legendre nodes t `[N]` and weights w `[N]` for ∫_0^T g(t) dt with g smooth on scale 1 near 0.

    All race rates sum to 1, so every integrand is a mix of exponentials with rates in [0, 1]: one linear panel on
    [0, 1], then one log-time panel per decade up to T. T is the smallest grid point with
    P(N_V(T) <= k_eff - 1) <= tail_eps, which bounds the dropped tail for every H at once
    (∫_T^∞ λe^{-λt} P(N_S(t) < k) dt <= P(no H arrival and < k S-arrivals by T) <= P(N_V(T) < k)).
    That probability is bounded by the exact Poisson-binomial cdf of the top 128 tokens and by the Chernoff bound
    e^{-μ}(eμ/a)^a over all tokens (μ = E N_V(T)); a union bound gives a guaranteed upper end.
    """
    qs = np.sort(q_support)[::-1]
    a = k_eff - 1
    top = qs[: min(len(qs), 128)]
    t_max = max(1.0, (np.log(len(qs)) + np.log(1.0 / tail_eps)) / qs[-1])  # Σ_i e^{-q_i T} <= tail_eps
    grid = 10.0 ** np.arange(0.0, np.log10(t_max) + 0.25, 0.25)

    def tail_bound(t: float) -> float:
        bound = float(poisson_binomial_cdf(top, np.array([t]), a)[0])
        mu = float(np.sum(-np.expm1(-qs * t)))
        if mu > a:
            bound = min(bound, float(np.exp(-mu + a + a * np.log(mu / a))) if a > 0 else float(np.exp(-mu)))
        return bound

    lo, hi = 0, len(grid) - 1                     # tail_bound is non-increasing in t: bisect on the grid
    if tail_bound(grid[hi]) > tail_eps:
        hi_t = t_max
    else:
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if tail_bound(grid[mid]) <= tail_eps else (mid + 1, hi)
        hi_t = grid[lo]
    x, wx = np.polynomial.legendre.leggauss(nodes_per_decade)
    ts, ws = [0.5 * (x + 1.0)], [0.5 * wx]       # linear panel [0, 1]
    decades = int(np.ceil(np.log10(hi_t) - 1e-12)) if hi_t > 1 else 0
    for d in range(decades):                     # log-time panels [10^d, 10^(d+1)]: t = 10^s, dt = t ln10 ds
        s = d + 0.5 * (x + 1.0)
        t = 10.0 ** s
        ts.append(t)
        ws.append(0.5 * wx * t * np.log(10.0))
    return np.concatenate(ts), np.concatenate(ws)


def alpha_wor(p: np.ndarray, q: np.ndarray, k: int, nodes_per_decade: int = NODES_PER_DECADE
              ) -> tuple[float, np.ndarray]:
    """α* for k drafts without replacement, any k, by the exponential race (transport/THEORY.md §2.4); python loop
    over V.

    f(H) = ∫ λ e^{-λt} P(N_S(t) <= k_eff - 1) dt, S = V∖H, λ = q(H); k_eff = min(k, |supp q|).
    """
    k_eff = min(k, int(np.count_nonzero(q > 0)))
    if k_eff == 1:
        a, h = alpha_iid(p[None], q[None], 1)
        return float(a[0]), h[0]
    o = ratio_order(p, q)
    qs = q[o]
    t, w = race_grid(q[q > 0], k_eff, nodes_per_decade)
    lam = prefix_sums(qs)
    dist = np.zeros((k_eff, len(t)))
    dist[0] = 1.0
    hit = np.zeros(len(q) + 1)
    hit[-1] = 1.0
    for m in range(len(q) - 1, -1, -1):          # grow S_m = {o_m, ..., o_{V-1}}
        pa, stay = -np.expm1(-qs[m] * t), np.exp(-qs[m] * t)
        dist[1:] = dist[1:] * stay + dist[:-1] * pa
        dist[0] *= stay
        hit[m] = np.sum(w * lam[m] * np.exp(-lam[m] * t) * dist.sum(0))
    a, h = best_prefix((suffix_sums(p[o]) + np.minimum(hit, 1.0))[None], o[None])
    return float(a[0]), h[0]


def run_chunked(p64: np.ndarray, q64: np.ndarray, groups, chunk: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Apply per-group row functions `fn(p, q, rows) -> (α*, H)` over small row chunks (they stay in cache) with x64
    enabled for any jax call inside. groups: [(row ids, fn)]. Returns (α* `[N]`, H `[N, V]`)."""
    import jax                                       # only the jax-backed functions need it
    alpha = np.zeros(len(p64))
    mask = np.zeros(p64.shape, bool)
    with jax.enable_x64(True):
        for rows, fn in groups:
            for part in np.array_split(rows, max(1, -(-len(rows) // chunk))):
                if len(part):
                    alpha[part], h = fn(p64[part], q64[part], part)
                    if h is not None:
                        mask[part] = h
    return alpha, mask
