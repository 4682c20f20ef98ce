"""RSD-S (stochastic beam search) verification audit over tree shapes: exact enumeration where it is feasible,
Monte Carlo (exactly verified sampled trees, with standard errors) beyond (transport/exact/audit.py;
transport/THEORY.md §5.3). A shape is MODE:WIDTHxDEPTHxV, MODE exact or mc.

    python experiments/audit_sbs.py --shapes exact:3x2x4 exact:2x3x4 mc:3x3x4 --models 3 --out results/sbs
Writes `<out>.json` (config, software versions, rows with shape and seed) and `<out>.csv`, prints the table.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from specjax.bench.experiment import parse_config, provenance, write_csv
from transport.exact.audit import random_model, sbs_monte_carlo_rows, sbs_rows


@dataclass(frozen=True)
class SbsAuditConfig:
    shapes: tuple[str, ...] = ("exact:2x2x3", "exact:3x2x4", "exact:2x3x4", "mc:3x3x4")
    """MODE:WIDTHxDEPTHxV: enumerated exactly (exact; 3x3x4 holds ~1.2M trees, minutes per verifier) or audited on
    `samples` sampled trees (mc)"""
    models: int = 3
    """random models (Dirichlet tables) per shape, seeded seed, seed + 1, ..."""
    samples: int = 4000
    """sampled trees per Monte Carlo audit"""
    concentration: float = 0.8
    """Dirichlet concentration of every context's target and draft law"""
    verifiers: tuple[str, ...] = ()
    """the `transport.exact.audit.sbs_verifiers` names to run (empty: all)"""
    seed: int = 0
    """the first model's seed (a Monte Carlo audit samples its trees with its model's seed)"""


CONFIG = SbsAuditConfig


def parse_shape(text: str) -> tuple[str, int, int, int]:
    """'MODE:WIDTHxDEPTHxV' -> (mode, width, depth, V); ValueError otherwise."""
    mode, _, dims = text.lower().partition(":")
    parts = dims.split("x")
    if mode not in ("exact", "mc") or len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"a shape is MODE:WIDTHxDEPTHxV (MODE exact or mc, positive integers), got {text!r}")
    return (mode, *(int(p) for p in parts))


def run(config: SbsAuditConfig, out: Path) -> dict:
    """Every (shape, seed) audit; writes `<out>.json` and `<out>.csv`; returns the result dict."""
    names = config.verifiers or None
    shapes = [parse_shape(s) for s in config.shapes]                # every shape checked before any work
    rows = []
    for text, (mode, width, depth, v) in zip(config.shapes, shapes):
        for seed in range(config.seed, config.seed + config.models):
            start = time.time()
            p, q = random_model(v, depth, seed, config.concentration)
            found = (sbs_rows(p, q, width, depth, names) if mode == "exact"
                     else sbs_monte_carlo_rows(p, q, width, depth, config.samples, seed, names))
            seconds = time.time() - start
            rows += [dict(shape=text, seed=seed, seconds=seconds, **asdict(r)) for r in found]
            print(f"{text} seed {seed}: {seconds:.1f}s", flush=True)
    result = {"config": asdict(config), "provenance": provenance(), "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    write_csv(out.with_suffix(".csv"), rows)
    return result


def format_table(result: dict) -> str:
    lines = [f"{'shape':<13} {'seed':>4} {'verifier':<48} {'source':<15} {'TV':>9} {'TV null':>9} {'max z':>6} "
             f"{'E[acc]':>7} {'se':>7}"]
    for r in result["rows"]:
        mc = not r["exact"]
        lines.append(f"{r['shape']:<13} {r['seed']:>4} {r['verifier']:<48} {r['source']:<15} {r['tv']:9.2e} "
                     f"{r['tv_null'] if mc else float('nan'):9.2e} {r['max_z'] if mc else float('nan'):6.1f} "
                     f"{r['accepted']:7.4f} {r['accepted_se'] if mc else 0.0:7.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    cfg, out = parse_config(SbsAuditConfig, argv, __doc__, default_out="results/audit_sbs")
    print(format_table(run(cfg, out)))
    print(f"wrote {out}.json and {out}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
