"""Figures of the gap studies, drawn from their JSON results (the theory package computes, it never plots):
`plot_verifier_gap` for `transport.studies.gap.run_verifier_gap` / `gap_result`, `plot_law_gap` for the real-law study's
summary (`transport.studies.law_gap.summarize`). They read plain dicts, so nothing here imports transport."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from specjax.verify.names import OPTIMUM_LAW


def plot_verifier_gap(result: dict, path: Path) -> None:
    """α* and every verifier's acceptance against k per temperature; the sequence-level rules beside them."""
    # imported here, as in the experiments: only plotting needs matplotlib, and it must select Agg before pyplot
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    temps = result["config"]["temperatures"]
    fig, axes = plt.subplots(1, len(temps) + 1, figsize=(5 * (len(temps) + 1), 4.5))
    for ax, t in zip(axes, temps):
        for law in ("iid", "without_replacement", "greedy"):
            pts = [(s["k"], s["mean_alpha_star"]) for s in result["alpha_star"] if s["law"] == law
                   and s["temperature"] == t]
            ax.plot(*zip(*pts), "-", lw=2.5, alpha=0.5, label=f"α* {law}")
        for verifier in result["config"]["verifiers"]:
            pts = [(r["k"], r["mean_acceptance"]) for r in result["rows"] if r["verifier"] == verifier
                   and r["temperature"] == t]
            if pts:
                ax.plot(*zip(*pts), "o--", ms=4, label=verifier)
        ax.set_xlabel("number of drafts k")
        ax.set_ylabel("mean acceptance P(Y ∈ X)")
        ax.set_title(f"T = {t} (V={result['config']['vocab_size']}, seed {result['config']['seed']})", fontsize=9)
    axes[0].legend(fontsize=7)
    ax = axes[-1]
    labels, pairs = [], []
    for r in result["lengths"]:
        vals = [(name, val) for name, val in r.items() if name not in ("temperature", "scheme", "setting")]
        labels.append(f"T={r['temperature']} {r['setting']}")
        pairs.append(vals)
    y = np.arange(len(labels))
    for j in range(3):
        pts = [(vals[j][1], i) for i, vals in enumerate(pairs) if j < len(vals)]
        if pts:
            ax.plot(*zip(*pts), "os^"[j], ms=4, label=["token-level", "block / traversal", "GBV"][j])
    ax.set_yticks(y, labels, fontsize=6)
    ax.set_xlabel("exact E[accepted drafts]")
    ax.set_title("sequence-level rules", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_law_gap(summary: dict, path: Path, title: str) -> None:
    """Mean gap vs k per verifier (solid: first prompt set, dashed: the others), one panel per drafter and
    temperature, symlog scale (optimal rules sit at 0)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = sorted({(r["drafter"], r["temperature"]) for r in summary["rows"]})
    sets = list(dict.fromkeys(r["prompt_set"] for r in summary["rows"]))
    curves: dict[tuple, dict[int, dict]] = {}          # (drafter, T, prompt set, verifier) -> {k: row}
    for r in summary["rows"]:
        curves.setdefault((r["drafter"], r["temperature"], r["prompt_set"], r["verifier"]), {})[r["k"]] = r
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (drafter, t) in zip(axes[0], panels):
        for (d, tt, pset, ver), cells_ in curves.items():
            if (d, tt) != (drafter, t):
                continue
            ks = sorted(cells_)
            ax.plot(ks, [cells_[k]["mean_gap"] for k in ks], "o-" if pset == sets[0] else "s--", ms=3,
                    label=f"{ver} ({pset})", color=f"C{sorted(OPTIMUM_LAW).index(ver)}")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_xlabel("number of drafts k")
        ax.set_ylabel("mean gap α* − acceptance")
        ax.set_title(f"{drafter}, T = {t:g}", fontsize=9)
    axes[0][0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
