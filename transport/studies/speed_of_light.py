"""The speed-of-light table on a pool of real next-token laws (transport/THEORY.md §4.4): for P verification slots
(n = P − 1 draft nodes), the most any lossless verifier accepts from a deterministic tree or chain when every prefix's
law is drawn i.i.d. from the pool (Pankratov & Alistarh's branching-random-walk model, Monte Carlo over random trees of
laws), the renewal bound from the pool's entropy moments, the paper's leading term, and, exactly at the real contexts,
the one-level tree (all n nodes at the root): its cap p(top-n of p) and what a drafter's top-n of q reaches.

Every figure is in tokens per target call: 1 + E[accepted drafts]. Laws `[N, V]` float64 (N contexts).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transport.optimal.speed_of_light import (chain_search, paper_leading_term, pool_law, renewal_bound,
                                              surprisal_moments, tree_cap)


@dataclass(frozen=True)
class SpeedOfLightSetting:
    """How much Monte Carlo per row."""

    samples: int = 200
    """random trees of laws per slot count for the tree cap"""
    chain_samples: int = 20
    """of those, how many also get the chain search (costlier), on the same laws"""
    chain_expansions: int = 400
    """expansions of one chain search before it stops with a bracket [best found, upper bound]"""


def top_mass(p: np.ndarray, by: np.ndarray, n: int) -> np.ndarray:
    """p(the n tokens with the largest `by`) per row `[N]` (p, by `[N, V]`): p's own top-n is the one-level cap."""
    idx = np.argpartition(-by, n - 1, axis=1)[:, :n]
    return np.take_along_axis(p, idx, 1).sum(1)


def _mean_se(x) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def speed_of_light_rows(p: np.ndarray, slots: tuple[int, ...], rng: np.random.Generator,
                        setting: SpeedOfLightSetting = SpeedOfLightSetting(), drafts: dict | None = None) -> list[dict]:
    """One row per slot count P: tree and chain caps of the pool model (mean, standard error; the chain as a bracket),
    the renewal bound, the paper's leading term, and the one-level cap at the real contexts; `drafts` maps a drafter
    name to its laws `[N, V]` at the same contexts (one-level tree of its top-n)."""
    mu, mu2 = surprisal_moments(p)
    mu_bar, mu2_bar = float(mu.mean()), float(mu2.mean())
    rows = []
    for slots_p in slots:
        n = slots_p - 1
        laws = [pool_law(p, rng) for _ in range(setting.samples)]
        trees = [tree_cap(law, n).accepted for law in laws]
        # the chains on the first random trees of laws (paired: a chain never beats the tree on the same laws)
        chains = [chain_search(law, n, setting.chain_expansions) for law in laws[:setting.chain_samples]]
        tree_mean, tree_se = _mean_se(trees)
        lo_mean, lo_se = _mean_se([c.best.accepted for c in chains])
        row = {"slots": slots_p, "draft_nodes": n, "entropy_mean": mu_bar, "log_moment2_mean": mu2_bar,
               "tree_cap": 1 + tree_mean, "tree_cap_se": tree_se,
               "chain_cap_low": 1 + lo_mean, "chain_cap_high": 1 + float(np.mean([c.upper for c in chains])),
               "chain_cap_se": lo_se, "chain_exact_share": float(np.mean([c.exact for c in chains])),
               "tree_cap_paired": 1 + float(np.mean(trees[:len(chains)])),
               "renewal_bound": 1 + renewal_bound(mu_bar, mu2_bar, n),
               "paper_leading_term": float(paper_leading_term(mu_bar, mu2_bar, slots_p)),
               "one_level_cap": 1 + float(top_mass(p, p, n).mean())}
        for name, q in (drafts or {}).items():
            row[f"one_level_{name}"] = 1 + float(top_mass(p, q, n).mean())
        rows.append(row)
    return rows
