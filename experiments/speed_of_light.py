"""Speed of light (transport/THEORY.md §4.4): the most tokens per target call any lossless verifier can reach from a
deterministic draft tree or chain with P slots, on stored real next-token laws (`experiments/real_laws.py collect`).

    python experiments/real_laws.py collect --drafters early-exit:8 --prompt-sets mt_bench --prompts-per-set 8 \\
        --out results/sol_laws
    python experiments/speed_of_light.py --laws results/sol_laws.npz --out results/speed_of_light

Per temperature and P (n = P − 1 draft nodes), in tokens per call (1 + E[accepted drafts]): the tree cap and the chain
cap when every prefix's law is drawn i.i.d. from the file's target laws (the paper's branching-random-walk model,
Monte Carlo; the chain as a bracket [best found, upper bound] of a bounded branch and bound, on the first random trees
of laws, beside the tree cap on those same laws), the renewal bound from the laws' mean entropy μ and second
log-moment μ₂ (a proven bound in that model), the paper's leading term (μ + μ₂) log P / μ² (without its O(1)), and
exactly at the real contexts the one-level tree: the cap p(top-n of p) and each stored drafter's top-n of q. Writes `<out>.json` (config, provenance, rows), `<out>.csv`, `<out>.png`.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from specjax.bench.experiment import parse_config, provenance, write_csv
from transport.studies.law_file import load_laws
from transport.studies.speed_of_light import SpeedOfLightSetting, speed_of_light_rows


@dataclass(frozen=True)
class SpeedOfLightConfig:
    laws: str = "results/real_laws.npz"
    """a stored-laws file (`transport.studies.law_file`)"""
    slots: tuple[int, ...] = (8, 16, 32, 64)
    """verification slots P (the root and P − 1 draft nodes)"""
    temperatures: tuple[float, ...] = ()
    """default: the file's temperatures"""
    samples: int = 200
    """random trees of laws per row (tree cap)"""
    chain_samples: int = 20
    """of those, how many also get the chain search (on the same laws)"""
    chain_expansions: int = 400
    """branch-and-bound expansions per chain search"""
    seed: int = 0
    """draws the trees of laws"""


CONFIG = SpeedOfLightConfig
COLUMNS = (("P", "slots", "{:d}"), ("tree cap", "tree_cap", "{:.3f}"), ("± se", "tree_cap_se", "{:.3f}"),
           ("chain cap", "chain", "{}"), ("± se", "chain_cap_se", "{:.3f}"),
           ("tree, same laws", "tree_cap_paired", "{:.3f}"), ("renewal bound", "renewal_bound", "{:.3f}"),
           ("paper term", "paper_leading_term", "{:.2f}"), ("1-level cap", "one_level_cap", "{:.3f}"))


def format_table(rows: list[dict]) -> str:
    drafters = sorted({k.removeprefix("one_level_") for r in rows for k in r if k.startswith("one_level_")} - {"cap"})
    head = ["T"] + [c[0] for c in COLUMNS] + [f"1-level {d}" for d in drafters]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        chain = f"{r['chain_cap_low']:.3f}–{r['chain_cap_high']:.3f}"
        cells = [f"{r['temperature']:g}"] + [chain if key == "chain" else fmt.format(r[key]) for _, key, fmt in COLUMNS]
        cells += [f"{r['one_level_' + d]:.3f}" for d in drafters]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    temps = sorted({r["temperature"] for r in rows})
    fig, axes = plt.subplots(1, len(temps), figsize=(5.5 * len(temps), 4.2), squeeze=False)
    for ax, t in zip(axes[0], temps):
        rs = [r for r in rows if r["temperature"] == t]
        x = [r["slots"] for r in rs]
        for key, label in (("renewal_bound", "renewal bound"), ("tree_cap", "tree cap (pool model)"),
                           ("chain_cap_high", "chain cap, upper"), ("one_level_cap", "one-level cap (real)")):
            ax.plot(x, [r[key] for r in rs], "o-", label=label)
        ax.set_xscale("log", base=2)
        ax.set_title(f"T = {t:g}")
        ax.set_xlabel("verification slots P")
        ax.set_ylabel("tokens per target call")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    cfg, out = parse_config(SpeedOfLightConfig, sys.argv[1:] if argv is None else argv, __doc__,
                            default_out="results/speed_of_light")
    if min(cfg.slots, default=0) < 2 or cfg.samples < 2 or cfg.chain_samples < 1 or cfg.chain_expansions < 1:
        sys.exit("speed_of_light: slots >= 2, samples >= 2, chain_samples >= 1, chain_expansions >= 1")
    stored = load_laws(cfg.laws)
    temps = cfg.temperatures or stored.temperatures
    setting = SpeedOfLightSetting(cfg.samples, cfg.chain_samples, cfg.chain_expansions)
    rng = np.random.default_rng(cfg.seed)
    rows, start = [], time.perf_counter()
    for t in temps:
        p, _ = stored.laws(stored.drafters[0], t)
        drafts = {d: stored.laws(d, t)[1] for d in stored.drafters}
        for row in speed_of_light_rows(p, tuple(cfg.slots), rng, setting, drafts):
            rows.append({"temperature": t, "contexts": stored.num_contexts, **row})
        print(f"[speed_of_light] T = {t:g} done, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"config": asdict(cfg), "provenance": provenance(), "target": stored.target,
              "seconds": time.perf_counter() - start, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(record, indent=1))
    write_csv(out.with_suffix(".csv"), rows)
    plot(rows, out.with_suffix(".png"))
    print(format_table(rows))
    print(f"wrote {out}.json, .csv, .png")


if __name__ == "__main__":
    main()
