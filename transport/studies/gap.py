"""The verifier-vs-optimum gap experiment (transport/THEORY.md §2–§5): per k and temperature, α* (iid, without
replacement, greedy) against every verifier's exact acceptance (incl. Khisti et al.'s two-step rule) on synthetic
(p, q) families; and for sequences, the exact expected accepted length of token vs block verification on chains,
token-level vs traversal on small trees, and SpecInfer's RRS vs traversal vs GBV on i.i.d. chains
(`transport.studies.length_gap`). Computation and JSON only: the figure is
`specjax.bench.studies_plots.plot_verifier_gap`."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from specjax.verify.names import OPTIMUM_LAW
from transport.exact.importance import PAIR_LP_MAX_V
from transport.exact.verifiers import MAX_ENUMERATION, verifier_acceptance
from transport.optimal.acceptance import optimal_acceptance
from transport.studies.length_gap import length_rows

OWN_LAW = OPTIMUM_LAW


@dataclass(frozen=True)
class GapConfig:
    """Experiment setting: vocabulary size, draft counts, temperatures, pair families, pairs per setting."""

    vocab_size: int = 4096
    """V of the synthetic pairs"""
    ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    """draft counts k"""
    temperatures: tuple[float, ...] = (0.5, 1.0, 2.0)
    """applied to both laws' logits"""
    families: tuple[str, ...] = ("dirichlet", "zipf", "correlated_softmax")
    """pair families of `synthetic_pairs`"""
    pairs: int = 8
    """(p, q) pairs per (family, temperature)"""
    verifiers: tuple[str, ...] = ("rrs", "rrs_without_replacement", "kseq", "spechub", "greedy", "khisti",
                                  "khisti_lp")
    """verifiers compared with the α* of their own draft law (each where it applies)"""
    length_vocab: int = 4
    """vocabulary of the sequence-level comparisons (every draft enumerated)"""
    length_models: int = 2
    """random table sets averaged per temperature in the sequence-level comparisons"""
    seed: int = 0
    """draws the (p, q) pairs and the sequence-level tables"""

    @staticmethod
    def default() -> "GapConfig":
        return GapConfig()

    @staticmethod
    def small() -> "GapConfig":
        return replace(GapConfig(), vocab_size=12, ks=(1, 2, 3, 4), temperatures=(0.5, 1.0), pairs=4,
                       length_vocab=3, length_models=1)


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits / temperature
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def synthetic_pairs(family: str, n: int, v: int, temperature: float, rng: np.random.Generator):
    """n (p, q) pairs `[n, v]` of a family at a temperature (temperature applied to both logits)."""
    if family == "dirichlet":
        lp, lq = np.log(rng.dirichlet(np.full(v, 0.5), n) + 1e-300), np.log(rng.dirichlet(np.full(v, 0.5), n) + 1e-300)
    elif family == "zipf":                          # Zipf(1.1) over ranks; q's ranking is a noisy copy of p's
        ranks = np.argsort(rng.permutation(v)[None, :].repeat(n, 0), -1)
        noisy = np.argsort(np.argsort(ranks + rng.normal(0, v / 20, (n, v)), -1), -1)
        lp, lq = -1.1 * np.log1p(ranks), -1.1 * np.log1p(noisy)
    elif family == "correlated_softmax":            # logits with correlation 0.8
        z = rng.normal(0, 2, (n, v))
        lp, lq = z, 0.8 * z + 0.6 * rng.normal(0, 2, (n, v))
    else:
        raise ValueError(f"unknown pair family {family!r}")
    return _softmax(lp, temperature), _softmax(lq, temperature)


def applicable(verifier: str, k: int, v: int) -> bool:
    """Whether `verifier_acceptance(verifier)` is defined and exact at k drafts and vocabulary v (at any support)."""
    if verifier == "spechub":
        return k == 2
    if verifier == "khisti_lp":
        return k <= 2 and v <= PAIR_LP_MAX_V
    if verifier == "rrs_without_replacement":
        return k <= 2 or float(v) ** k <= MAX_ENUMERATION
    return True


def gap_cells(config: GapConfig) -> list[str]:
    """Keys of the experiment's independent cells: one per k (`k=2`: α* and every verifier at that k over all
    families and temperatures), then one per temperature of the sequence-level comparisons (`lengths/T=1.0`)."""
    return [f"k={k}" for k in config.ks] + [f"lengths/T={t}" for t in config.temperatures]


@lru_cache(maxsize=1)
def _settings_pairs(config: GapConfig) -> dict:
    """(family, temperature) -> (p, q) `[pairs, V]`, drawn from `config.seed` (the same for every k cell)."""
    rng = np.random.default_rng(config.seed)
    return {(f, t): synthetic_pairs(f, config.pairs, config.vocab_size, t, rng)
            for f in config.families for t in config.temperatures}


def gap_cell(config: GapConfig, key: str) -> dict:
    """The record of one cell of `gap_cells`: {"rows", "alpha_star"} of a k, {"lengths"} of a temperature. Each
    cell draws its inputs from the seed alone, so cells can run in any order and an interrupted run resumes."""
    if key.startswith("lengths/T="):
        t = float(key.removeprefix("lengths/T="))
        rng = np.random.default_rng([config.seed, 1, round(1000 * t)])
        pair_fn = lambda n: synthetic_pairs("correlated_softmax", n, config.length_vocab, t, rng)
        return {"lengths": length_rows(pair_fn, t, config.length_vocab, models=config.length_models)}
    k = int(key.removeprefix("k="))
    data = _settings_pairs(config)
    settings = list(data)
    rows, stars = [], []
    per_law = {law: {s: optimal_acceptance(*data[s], k, law) for s in settings}
               for law in ("iid", "without_replacement", "greedy")}
    for law, vals in per_law.items():
        for t in config.temperatures:
            stars.append({"k": k, "law": law, "temperature": t, "mean_alpha_star": _mean(vals, settings, t)})
    for verifier in config.verifiers:
        if not applicable(verifier, k, config.vocab_size):
            continue
        acc = {s: verifier_acceptance(*data[s], k, verifier) for s in settings}
        star = per_law[OWN_LAW[verifier]]
        for t in config.temperatures:
            mine = [s for s in settings if s[1] == t]
            gaps = {s: star[s] - acc[s] for s in mine}
            worst = max(mine, key=lambda s: gaps[s].max())
            all_gaps = np.concatenate([gaps[s] for s in mine])
            rows.append({"k": k, "temperature": t, "verifier": verifier, "law": OWN_LAW[verifier],
                         "mean_acceptance": _mean(acc, settings, t), "mean_alpha_star": _mean(star, settings, t),
                         "mean_gap": float(all_gaps.mean()), "worst_gap": float(all_gaps.max()),
                         "min_gap": float(all_gaps.min()), "worst_family": worst[0]})
    return {"rows": rows, "alpha_star": stars}


def gap_result(config: GapConfig, records: dict[str, dict]) -> dict:
    """The cells' records (keyed as `gap_cells`) joined into one result: config, rows, alpha_star, lengths."""
    result = {"config": asdict(config), "rows": [], "alpha_star": [], "lengths": []}
    for key in gap_cells(config):
        for name, values in records[key].items():
            result[name] += values
    return result


def run_verifier_gap(config: GapConfig, out_dir: str | Path, *,
                     each: Callable[[list[str]], Iterable[str]] = iter) -> dict:
    """Run every cell (`each` may wrap the list of cell keys in a progress bar); write `verifier_gap.json` under
    out_dir; return the result dict (`specjax.bench.studies_plots.plot_verifier_gap` draws it)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    result = gap_result(config, {key: gap_cell(config, key) for key in each(gap_cells(config))})
    result["seconds"] = time.time() - start
    (out_dir / "verifier_gap.json").write_text(json.dumps(result, indent=2))
    return result


def _mean(values: dict, settings: list, temperature: float) -> float:
    return float(np.mean(np.concatenate([values[s] for s in settings if s[1] == temperature])))


def format_table(result: dict) -> str:
    """Plain-text tables of `run_verifier_gap`: per (k, temperature) acceptance vs α*, then sequence lengths."""
    lines = [f"{'k':>2} {'T':>4} {'verifier':<24} {'law':<20} {'accept':>8} {'alpha*':>8} {'mean gap':>9} "
             f"{'worst gap':>9}"]
    for r in result["rows"]:
        lines.append(f"{r['k']:>2} {r['temperature']:>4} {r['verifier']:<24} {r['law']:<20} "
                     f"{r['mean_acceptance']:8.4f} {r['mean_alpha_star']:8.4f} {r['mean_gap']:9.2e} "
                     f"{r['worst_gap']:9.2e}")
    lines.append("")
    lines.append("exact E[accepted drafts] per round (V = %d)" % result["config"]["length_vocab"])
    for r in result["lengths"]:
        rules = ", ".join(f"{name} {val:.4f}" for name, val in r.items()
                          if name not in ("temperature", "scheme", "setting"))
        lines.append(f"T={r['temperature']:<4} {r['scheme']:<11} {r['setting']:<24} {rules}")
    return "\n".join(lines)
