"""The verifier-vs-optimum gap experiment: α* (iid, without replacement, greedy) against every verifier's exact
acceptance, for k = 1..8, several temperatures and synthetic (p, q) families. Writes JSON and a PNG."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from transport.optimal import optimal_acceptance
from transport.verifiers import MAX_ENUMERATION, verifier_acceptance

OWN_LAW = {"rrs": "iid", "kseq": "iid", "rrs_without_replacement": "without_replacement", "spechub": "greedy",
           "greedy": "greedy"}


@dataclass(frozen=True)
class GapConfig:
    """Experiment setting: vocabulary size, draft counts, temperatures, pair families, pairs per setting."""

    vocab_size: int = 4096
    ks: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8)
    temperatures: tuple[float, ...] = (0.5, 1.0, 2.0)
    families: tuple[str, ...] = ("dirichlet", "zipf", "correlated_softmax")
    pairs: int = 8
    verifiers: tuple[str, ...] = ("rrs", "rrs_without_replacement", "kseq", "spechub", "greedy")

    @staticmethod
    def default() -> "GapConfig":
        return GapConfig()

    @staticmethod
    def small() -> "GapConfig":
        return replace(GapConfig(), vocab_size=12, ks=(1, 2, 3, 4), temperatures=(0.5, 1.0), pairs=4)


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


def _applicable(verifier: str, k: int, v: int) -> bool:
    if verifier == "spechub":
        return k == 2
    if verifier == "rrs_without_replacement":
        return k <= 2 or float(v) ** k <= MAX_ENUMERATION
    return True


def run_verifier_gap(config: GapConfig, seed: int, out_dir: str | Path) -> dict:
    """Run the experiment; write `verifier_gap.json` and `verifier_gap.png` under out_dir; return the result dict."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = [(f, t) for f in config.families for t in config.temperatures]
    data = {s: synthetic_pairs(s[0], config.pairs, config.vocab_size, s[1], rng) for s in settings}
    rows, stars = [], []
    start = time.time()
    for k in config.ks:
        per_law = {law: {s: optimal_acceptance(*data[s], k, law) for s in settings}
                   for law in ("iid", "without_replacement", "greedy")}
        for law, vals in per_law.items():
            stars.append({"k": k, "law": law, "mean_alpha_star": float(np.mean(np.concatenate(list(vals.values()))))})
        for verifier in config.verifiers:
            if not _applicable(verifier, k, config.vocab_size):
                continue
            acc = {s: verifier_acceptance(*data[s], k, verifier) for s in settings}
            gaps = {s: per_law[OWN_LAW[verifier]][s] - acc[s] for s in settings}
            worst = max(settings, key=lambda s: gaps[s].max())
            all_gaps = np.concatenate(list(gaps.values()))
            rows.append({"k": k, "verifier": verifier, "law": OWN_LAW[verifier],
                         "mean_acceptance": float(np.mean(np.concatenate(list(acc.values())))),
                         "mean_alpha_star": float(np.mean(np.concatenate(list(per_law[OWN_LAW[verifier]].values())))),
                         "mean_gap": float(all_gaps.mean()), "worst_gap": float(all_gaps.max()),
                         "min_gap": float(all_gaps.min()),
                         "worst_setting": {"family": worst[0], "temperature": worst[1]}})
        print(f"[verifier_gap] k={k} done ({time.time() - start:.1f}s)", file=sys.stderr, flush=True)
    result = {"config": asdict(config), "seed": seed, "rows": rows, "alpha_star": stars,
              "seconds": time.time() - start}
    (out_dir / "verifier_gap.json").write_text(json.dumps(result, indent=2))
    _plot(result, out_dir / "verifier_gap.png")
    return result


def format_table(result: dict) -> str:
    """Plain-text table of the rows of `run_verifier_gap`."""
    lines = [f"{'k':>2} {'verifier':<24} {'law':<20} {'accept':>8} {'alpha*':>8} {'mean gap':>9} {'worst gap':>9}"]
    for r in result["rows"]:
        lines.append(f"{r['k']:>2} {r['verifier']:<24} {r['law']:<20} {r['mean_acceptance']:8.4f} "
                     f"{r['mean_alpha_star']:8.4f} {r['mean_gap']:9.2e} {r['worst_gap']:9.2e}")
    return "\n".join(lines)


def _plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for law in ("iid", "without_replacement", "greedy"):
        pts = [(s["k"], s["mean_alpha_star"]) for s in result["alpha_star"] if s["law"] == law]
        ax.plot(*zip(*pts), "-", lw=2.5, alpha=0.5, label=f"α* {law}")
    for verifier in result["config"]["verifiers"]:
        pts = [(r["k"], r["mean_acceptance"]) for r in result["rows"] if r["verifier"] == verifier]
        if pts:
            ax.plot(*zip(*pts), "o--", ms=4, label=verifier)
    ax.set_xlabel("number of drafts k")
    ax.set_ylabel("mean acceptance P(Y ∈ X)")
    ax.set_title(f"verifiers vs optimum (V={result['config']['vocab_size']}, seed {result['seed']})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
