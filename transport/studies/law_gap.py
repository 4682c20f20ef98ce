"""The verifier-vs-optimum gap on stored real next-token laws (`transport.studies.law_file`; transport/THEORY.md §2–§3):
per drafter, temperature, prompt set and k, α* for i.i.d., without-replacement and greedy drafts and the exact
acceptance of every verifier, context by context; then the mean gap, how often a verifier is within `within` of its
optimum, and the worst contexts. The loop that runs the cells resumably is `specjax.bench.law_study`.

A cell's record holds per-context values (float64 as JSON floats): {"alpha_star": {law: [n] or None},
"acceptance": {verifier: [n]}} — None where a law's optimum was not computed (see `LawStudyConfig.wor_ks`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from specjax.verify.names import OPTIMAL_LAWS, OPTIMUM_LAW
from transport.exact.verifiers import verifier_acceptance
from transport.optimal.acceptance import optimal_acceptance
from transport.studies.gap import applicable
from transport.studies.law_file import StoredLaws

TOLERANCE = 1e-9        # α* >= every verifier's acceptance and α*_wor >= α*_iid, up to this (float64 rounding)


@dataclass(frozen=True)
class LawStudyConfig:
    """What the study computes on a stored-laws file."""

    ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    temperatures: tuple[float, ...] = ()
    """temperatures (> 0) of the laws; empty = the file's own"""
    verifiers: tuple[str, ...] = ("rrs", "rrs_without_replacement", "kseq", "spechub", "greedy", "khisti",
                                  "khisti_lp")
    """each runs where it is exact at the file's vocabulary (`transport.studies.gap.applicable`): at V = 49k that drops
    rrs_without_replacement for k >= 3 (enumeration only) and khisti_lp (a V <= 256 LP)"""
    wor_ks: tuple[int, ...] | None = None
    """the k >= 3 at which α* without replacement is computed (the aggregated race, `transport.optimal.race`; its
    cost per context is in experiments/RESULTS.md); None = every k. k <= 2 is always computed."""
    within: float = 1e-3
    """a verifier counts as optimal on a context when α* − acceptance <= within"""
    worst: int = 3
    """worst contexts listed per (cell, verifier)"""

    def __post_init__(self) -> None:
        if not self.ks or any(k < 1 for k in self.ks):
            raise ValueError(f"ks must be positive draft counts, got {self.ks}")
        if any(not t > 0 for t in self.temperatures):
            raise ValueError(f"temperatures must be > 0 (T = 0 laws are one-hot), got {self.temperatures}")
        if self.within <= 0 or self.worst < 0:
            raise ValueError("within must be > 0 and worst >= 0")


def cells(stored: StoredLaws, config: LawStudyConfig) -> list[tuple[str, float, str, int]]:
    """Every (drafter, temperature, prompt set, k) the study computes, in the order it runs them."""
    temps = config.temperatures or stored.temperatures
    return [(d, t, s, k) for d in stored.drafters for t in temps for s in stored.prompt_sets for k in config.ks]


def cell_key(drafter: str, temperature: float, prompt_set: str, k: int) -> str:
    return f"{drafter}|T={temperature:g}|{prompt_set}|k={k}"


def compute_cell(p: np.ndarray, q: np.ndarray, k: int, config: LawStudyConfig) -> dict:
    """The record of one cell: α* per draft law and every applicable verifier's acceptance, per context of the
    laws p, q `[n, V]` (float64)."""
    v = p.shape[1]
    stars = {}
    for law in OPTIMAL_LAWS:
        skip = law == "without_replacement" and k >= 3 and config.wor_ks is not None and k not in config.wor_ks
        stars[law] = None if skip else optimal_acceptance(p, q, k, law).tolist()
    acc = {ver: verifier_acceptance(p, q, k, ver).tolist() for ver in config.verifiers if applicable(ver, k, v)}
    return {"alpha_star": stars, "acceptance": acc}


def summarize(stored: StoredLaws, records: dict[str, dict], config: LawStudyConfig) -> dict:
    """Rows of the gap table (one per cell and verifier), α* rows (one per cell and draft law) and the checks:
    every verifier <= its α* and α*_wor >= α*_iid, within TOLERANCE, on every context."""
    rows, stars, violations = [], [], []
    for drafter, t, pset, k in cells(stored, config):
        rec = records[cell_key(drafter, t, pset, k)]
        ctx = np.flatnonzero(stored.prompt_set == pset)
        base = {"drafter": drafter, "temperature": t, "prompt_set": pset, "k": k, "contexts": len(ctx)}
        for law, vals in rec["alpha_star"].items():
            if vals is not None:
                stars.append({**base, "law": law, "mean_alpha_star": float(np.mean(vals))})
        iid, wor = rec["alpha_star"]["iid"], rec["alpha_star"]["without_replacement"]
        if wor is not None:
            bad = np.flatnonzero(np.asarray(wor) < np.asarray(iid) - TOLERANCE)
            violations += [{**base, "check": "alpha*_wor >= alpha*_iid", "context": int(ctx[i])} for i in bad]
        for ver, vals in rec["acceptance"].items():
            star = rec["alpha_star"][OPTIMUM_LAW[ver]]
            gap = np.asarray(star) - np.asarray(vals)
            violations += [{**base, "check": f"{ver} <= alpha*", "context": int(ctx[i])}
                           for i in np.flatnonzero(gap < -TOLERANCE)]
            order = np.argsort(-gap, kind="stable")[:config.worst]
            rows.append({**base, "verifier": ver, "law": OPTIMUM_LAW[ver], "mean_acceptance": float(np.mean(vals)),
                         "mean_alpha_star": float(np.mean(star)), "mean_gap": float(gap.mean()),
                         "frac_within": float(np.mean(gap <= config.within)), "worst_gap": float(gap.max()),
                         "min_gap": float(gap.min()),
                         "worst_contexts": [_context(stored, int(ctx[i]), float(gap[i])) for i in order]})
    return {"rows": rows, "alpha_star": stars, "violations": violations}


def _context(stored: StoredLaws, i: int, gap: float) -> dict:
    return {"context": i, "prompt_index": int(stored.prompt_index[i]), "position": int(stored.position[i]),
            "token": int(stored.token[i]), "gap": gap}


def format_markdown(summary: dict, config: LawStudyConfig) -> str:
    """Two markdown tables: mean gap α* − acceptance (and the % of contexts within `within`) per verifier and k;
    mean α* per draft law and k."""
    ks = sorted({r["k"] for r in summary["rows"]} | {s["k"] for s in summary["alpha_star"]})
    head = "| drafter | T | prompts | {} | " + " | ".join(f"k={k}" for k in ks) + " |"
    rule = "|---|---|---|---|" + "---|" * len(ks)
    out = [f"Mean gap α* − acceptance (% of contexts within {config.within:g} of α*)", "",
           head.format("verifier"), rule]
    for key, cells_ in _group(summary["rows"], "verifier").items():
        out.append("| " + " | ".join(map(str, key)) + " | " + " | ".join(
            f"{cells_[k]['mean_gap']:.2e} ({100 * cells_[k]['frac_within']:.0f}%)" if k in cells_ else "–"
            for k in ks) + " |")
    out += ["", "Mean α* (membership acceptance of the best lossless verifier)", "", head.format("draft law"), rule]
    for key, cells_ in _group(summary["alpha_star"], "law").items():
        out.append("| " + " | ".join(map(str, key)) + " | " + " | ".join(
            f"{cells_[k]['mean_alpha_star']:.4f}" if k in cells_ else "–" for k in ks) + " |")
    return "\n".join(out)


def _group(rows: list[dict], name: str) -> dict[tuple, dict[int, dict]]:
    groups: dict[tuple, dict[int, dict]] = {}
    for r in rows:
        groups.setdefault((r["drafter"], r["temperature"], r["prompt_set"], r[name]), {})[r["k"]] = r
    return groups
