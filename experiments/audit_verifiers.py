"""Exactness audit of verification rules on a tiny enumerable model: TV to the target law and E[accepted drafts] per
(scheme, verifier), exactly, and KL(emitted ‖ target) for chains (transport/exact/audit.py; transport/THEORY.md §7).

    python experiments/audit_verifiers.py --seed 1 --out results/audit_verifiers
Writes `<out>.json` (config, software versions, rows), `<out>.csv` and `<out>.png` and prints the table.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from specjax.bench.experiment import parse_config, provenance, write_csv
from transport.exact.audit import LOSSLESS_SOURCES, run_audit


@dataclass(frozen=True)
class AuditConfig:
    vocab_size: int = 3
    """tokens of the random model (the enumeration grows like V^(tree size))"""
    concentration: float = 0.8
    """Dirichlet concentration of every context's target and draft law"""
    chain_depth: int = 3
    """drafts in the chain schemes"""
    drafts: int = 2
    """k of the single-step multi-draft rules and of the i.i.d.-chain schemes"""
    seed: int = 1
    """draws the random model's laws"""


CONFIG = AuditConfig


def run(config: AuditConfig, out: Path) -> dict:
    """Run the audit (seconds: one exact enumeration, nothing to resume), write `<out>.json`, `.csv` and `.png`,
    return the result dict."""
    start = time.time()
    rows = run_audit(config.vocab_size, config.seed, config.concentration, config.chain_depth, config.drafts)
    result = {"config": asdict(config), "provenance": provenance(), "rows": [asdict(r) for r in rows],
              "seconds": time.time() - start,
              "method": "exact enumeration of every draft (no Monte Carlo); TV of the completed emitted law"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    write_csv(out.with_suffix(".csv"), result["rows"])
    _plot(result, out.with_suffix(".png"))
    return result


def format_table(result: dict) -> str:
    lines = [f"{'scheme':<44} {'verifier':<48} {'source':<16} {'TV':>9} {'KL':>9} {'E[acc]':>7}"]
    for r in result["rows"]:
        kl = "" if r["kl"] is None else f"{r['kl']:9.2e}"               # None: not computed for this scheme
        lines.append(f"{r['scheme']:<44} {r['verifier']:<48} {r['source']:<16} {r['tv']:9.2e} {kl:>9} "
                     f"{r['accepted']:7.4f}")
    return "\n".join(lines)


def _plot(result: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = result["rows"]
    labels = [f"{r['scheme']} | {r['verifier']}" for r in rows]
    lossless = [r["source"] in LOSSLESS_SOURCES for r in rows]
    colors = ["tab:green" if ok else "tab:red" for ok in lossless]
    fig, (ax_tv, ax_len) = plt.subplots(1, 2, figsize=(15, 0.28 * len(rows) + 1.5), sharey=True)
    y = range(len(rows))
    ax_tv.barh(y, [max(r["tv"], 1e-17) for r in rows], color=colors)
    ax_tv.set_xscale("log")
    ax_tv.axvline(1e-12, color="k", lw=0.8, ls="--")
    ax_tv.set_xlabel("TV to the target law (exact; dashed: 1e-12)")
    ax_tv.set_yticks(list(y), labels, fontsize=6)
    ax_tv.invert_yaxis()
    ax_len.barh(y, [r["accepted"] for r in rows], color=colors)
    ax_len.set_xlabel("E[accepted drafts] per round")
    fig.suptitle(f"verifier exactness audit (V={result['config']['vocab_size']}, seed {result['config']['seed']}; "
                 "green: shipped, paper and former rules, red: ports, misuses, sensitivity)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    cfg, out = parse_config(AuditConfig, argv, __doc__, default_out="results/audit_verifiers")
    print(format_table(run(cfg, out)))
    print(f"wrote {out}.json, {out}.csv and {out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
