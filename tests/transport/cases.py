"""Random small (p, q) cases with the edge cases the issue lists: ties, zeros, disjoint supports, p = q, one-hot q."""
from __future__ import annotations

import numpy as np


def random_pair(rng: np.random.Generator, v: int, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """One (p, q) pair `[v]` float64; `kind` cycles through the edge-case families."""
    conc = rng.choice([0.1, 0.5, 1.0, 5.0])
    p, q = rng.dirichlet(np.full(v, conc)), rng.dirichlet(np.full(v, rng.choice([0.1, 0.5, 1.0, 5.0])))
    kind %= 8
    if kind == 1:                                   # exact ties in p and q (and in the ratio p/q)
        p, q = rng.integers(1, 4, v).astype(float), rng.integers(1, 4, v).astype(float)
    elif kind == 2:                                 # zeros in p and in q
        p[rng.random(v) < 0.4] = 0.0
        q[rng.random(v) < 0.4] = 0.0
    elif kind == 3 and v >= 2:                      # disjoint supports
        cut = int(rng.integers(1, v))
        p[:cut], q[cut:] = 0.0, 0.0
    elif kind == 4:                                 # p = q
        p = q.copy()
    elif kind == 5:                                 # one-hot q
        q = np.eye(v)[int(rng.integers(v))]
    elif kind == 6:                                 # masses over many orders of magnitude
        q = np.exp(rng.normal(0, 8, v))
    if p.sum() == 0:
        p[int(rng.integers(v))] = 1.0
    if q.sum() == 0:
        q[int(rng.integers(v))] = 1.0
    return p / p.sum(), q / q.sum()


def correlated_softmax_pair(rng: np.random.Generator, rows: int, v: int, scale: float, mix: float,
                            noise: float) -> tuple[np.ndarray, np.ndarray]:
    """`[rows, v]` target/draft softmaxes whose logits are correlated: z ~ N(0, scale), z' = mix z + N(0, noise)."""
    z = rng.normal(0, scale, (rows, v))
    z2 = mix * z + rng.normal(0, noise, z.shape)
    return np.exp(z) / np.exp(z).sum(1, keepdims=True), np.exp(z2) / np.exp(z2).sum(1, keepdims=True)
