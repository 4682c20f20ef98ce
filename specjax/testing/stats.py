"""Goodness-of-fit helpers for losslessness tests: sampled tokens against an exactly enumerated law."""
from __future__ import annotations

import numpy as np
from scipy import stats


def chi_square_pvalue(samples: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """p-value of Pearson's chi-square test that integer `samples[N]` were drawn from `probs[V]`.

    Cells with expected count below `min_expected` are pooled into one cell (so the chi-square approximation holds).
    A sample landing on a zero-probability cell returns 0.0: the law is certainly wrong.
    """
    probs = np.asarray(probs, dtype=np.float64).ravel()
    return chi_square_pvalue_counts(np.bincount(np.asarray(samples).ravel(), minlength=probs.size), probs,
                                    min_expected)


def chi_square_pvalue_counts(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """`chi_square_pvalue` from outcome counts `[V]` instead of samples (`probs` need not be normalised)."""
    probs = np.asarray(probs, dtype=np.float64).ravel()
    probs = probs / probs.sum()
    counts = np.asarray(counts, dtype=np.float64).ravel()
    n = counts.sum()
    if counts.size > probs.size or np.any(counts[probs == 0] > 0):
        return 0.0
    expected = probs * n
    big = expected >= min_expected
    obs = list(counts[big]) + ([counts[~big].sum()] if (~big).any() else [])
    exp = list(expected[big]) + ([expected[~big].sum()] if (~big).any() else [])
    obs, exp = np.array(obs), np.array(exp)
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    if obs.size < 2:
        return 1.0
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


def binomial_z(successes: int, trials: int, prob: float) -> float:
    """z-score of a binomial count against its exact success probability (0 when prob is 0 or 1 and it matches)."""
    sd = np.sqrt(trials * prob * (1 - prob))
    diff = successes - trials * prob
    if sd == 0:
        return 0.0 if diff == 0 else np.inf
    return float(diff / sd)
