"""Verifier-vs-optimum gap on synthetic (p, q) pairs (`transport.studies.gap`): per k and temperature, α* (iid, without
replacement, greedy) against every verifier's exact acceptance, and the sequence-level rules' exact accepted lengths.

    python experiments/verifier_gap.py --seed 0 --out results/verifier_gap
    python experiments/verifier_gap.py --config experiments/configs/verifier_gap_small.toml --out results/gap_small
`--config small` is the same small setting (`GapConfig.small()`). Writes `<out>.json` (config, software versions,
one record per k and per temperature of the sequence-level rules; resumable: rerun the same command after an
interruption), `<out>.csv` (one row per k, temperature and verifier) and `<out>.png`, and prints the tables.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from specjax.bench.decoding import Results
from specjax.bench.experiment import parse_config, progress, write_csv
from specjax.bench.studies_plots import plot_verifier_gap
from transport.studies.gap import GapConfig, format_table, gap_cell, gap_cells, gap_result

CONFIG = GapConfig
PRESETS = {"small": GapConfig.small(), "default": GapConfig()}


def run(cfg: GapConfig, out: Path) -> Results:
    """Every cell of `gap_cells` not yet in `<out>.json`."""
    results = Results(out.with_suffix(".json"), dataclasses.asdict(cfg))
    cells = gap_cells(cfg)
    for key in progress(cells, len(cells), "verifier gap"):
        if not results.done(key):
            results.add(key, gap_cell(cfg, key))
    return results


def main(argv=None) -> int:
    cfg, out = parse_config(GapConfig, argv, __doc__, default_out="results/verifier_gap", presets=PRESETS)
    result = gap_result(cfg, run(cfg, out).records)
    print(format_table(result))
    write_csv(out.with_suffix(".csv"), result["rows"])
    plot_verifier_gap(result, out.with_suffix(".png"))
    print(f"wrote {out}.json, {out}.csv and {out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
