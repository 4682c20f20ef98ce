"""Pairs per second of `transport.optimal_acceptance` at V = 32k and 128k against the HiGHS LP.

    python experiments/bench_transport.py --out results/bench_transport [--quick]
Every timing is taken after a warm-up call with the same shapes (jit compilation excluded); each ratio (new / old
path, closed form / LP) is measured within one cell. Writes `<out>.json` (config, software versions, one record per
cell; resumable: rerun the same command after an interruption) and `<out>.csv`; the LP/closed-form ratio is printed
last.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np

from specjax.bench.decoding import Results
from specjax.bench.experiment import parse_config, progress, write_csv
from transport import optimal_acceptance
from transport.optimal import lp, reference
from transport.validate import as_float64_rows, check_pair

ERROR_CONTROL = ("iid / wor k=2: exact (bucketed pruning keeps every threshold set within 1e-12 of the best bucket "
                 "boundary; the value is the reference formula on the surviving prefixes, float64, equal to the "
                 "full-sort reference to ~1e-15); wor k>=3: race quadrature, error bounded by the 2x-node column")

# (law, draft counts k, pairs per call): wor k >= 3 runs the race quadrature, slow at this V, on 2 pairs
CASES = (("iid", (2, 4, 8, 16), 64), ("without_replacement", (2,), 64), ("greedy", (2, 4, 8, 16), 64),
         ("without_replacement", (4, 16), 2))


@dataclass(frozen=True)
class BenchTransportConfig:
    vocab_sizes: tuple[int, ...] = (32_000, 128_000)
    """V of the correlated-softmax pairs"""
    quick: bool = False
    """the first vocabulary size only"""
    pairs: int = 64
    """pairs drawn per V (each case times the first `batch` of them)"""
    lp_sizes: tuple[tuple[int, int], ...] = ((8, 4), (12, 4))
    """(V, k) of the LP comparison: the largest it takes in reasonable time (V = 12, k = 4: 793 sets)"""
    lp_repeats: int = 20
    """timed calls of the closed form per LP comparison (one is too short to time)"""
    seed: int = 0


CONFIG = BenchTransportConfig


def _old(p, q, k, law):
    """The previous path (the full per-row sort of `transport.optimal.reference`), for the old-vs-new columns (iid,
    wor k=2)."""
    check_pair(p, q, k)
    p64, q64 = as_float64_rows(p), as_float64_rows(q)
    out = []
    for lo in range(0, len(p64), 8):
        pp, qq = p64[lo:lo + 8], q64[lo:lo + 8]
        out.append(reference.alpha_iid(pp, qq, k, False)[0] if law == "iid" else reference.alpha_wor2(pp, qq, False)[0])
    return np.concatenate(out)


def _pairs(rng, n, v):
    z = rng.normal(0, 3, (n, v))
    zq = 0.8 * z + 0.6 * rng.normal(0, 3, (n, v))
    p, q = np.exp(z - z.max(1, keepdims=True)), np.exp(zq - zq.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), q / q.sum(1, keepdims=True)


def _rate(fn, n, repeats=1):
    fn()                                             # warm-up: compile / caches
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n * repeats / (time.perf_counter() - start)


def law_cells(cfg: BenchTransportConfig) -> list[tuple[int, str, int, int]]:
    """(V, law, k, batch) of every `optimal_acceptance` timing."""
    vocab_sizes = cfg.vocab_sizes[:1] if cfg.quick else cfg.vocab_sizes
    return [(v, law, k, batch) for v in vocab_sizes for law, ks, batch in CASES for k in ks]


def law_row(cfg: BenchTransportConfig, v: int, law: str, k: int, batch: int) -> dict:
    """pairs/s of `optimal_acceptance` on `batch` pairs of vocabulary V; beside it, for iid and wor k = 2, the old
    full-sort path's pairs/s and the largest difference; for wor k >= 3, the change at twice the quadrature nodes."""
    p, q = _pairs(np.random.default_rng([cfg.seed, v]), cfg.pairs, v)
    p, q = p[:batch], q[:batch]
    batch = len(p)                                 # fewer when `pairs` < batch
    rate = _rate(lambda: optimal_acceptance(p, q, k, law), batch)
    old = diff = err = None
    if law == "iid" or (law == "without_replacement" and k == 2):
        old = _rate(lambda: _old(p, q, k, law), batch)
        diff = float(np.abs(_old(p, q, k, law) - optimal_acceptance(p, q, k, law)).max())
    if law == "without_replacement" and k >= 3:    # error control: the same pairs with 2x the nodes
        err = float(np.abs(optimal_acceptance(p, q, k, law, nodes_per_decade=40) - optimal_acceptance(p, q, k, law))
                    .max())
    return {"V": v, "law": law, "k": k, "batch": batch, "pairs_per_s": rate, "old_pairs_per_s": old,
            "max_abs_diff_vs_full_sort": diff, "node_doubling_err": err}


def lp_row(cfg: BenchTransportConfig, v: int, k: int) -> dict:
    """pairs/s of the HiGHS LP and of `optimal_acceptance` (iid drafts) on the same 8 pairs, and their ratio."""
    p, q = _pairs(np.random.default_rng([cfg.seed, v, k]), 8, v)
    lp_rate = _rate(lambda: [lp.lp_optimum(p[i], q[i], k, "iid") for i in range(8)], 8)
    fast_rate = _rate(lambda: optimal_acceptance(p, q, k, "iid"), 8, repeats=cfg.lp_repeats)
    return {"V": v, "k": k, "lp_pairs_per_s": lp_rate, "optimal_pairs_per_s": fast_rate, "ratio": fast_rate / lp_rate}


def run(cfg: BenchTransportConfig, out: Path) -> Results:
    """Every timing not yet in `<out>.json` (each cell's ratio is measured within the cell)."""
    results = Results(out.with_suffix(".json"), asdict(cfg))
    cells = [(f"V={v}/{law}/k={k}", partial(law_row, cfg, v, law, k, batch)) for v, law, k, batch in law_cells(cfg)]
    cells += [(f"lp/V={v}/k={k}", partial(lp_row, cfg, v, k)) for v, k in cfg.lp_sizes]
    for key, measure in progress(cells, len(cells), "bench transport"):
        if not results.done(key):
            results.add(key, measure())
    return results


def print_tables(records: dict) -> None:
    rows = [r for key, r in records.items() if not key.startswith("lp/")]
    print(f"load average {os.getloadavg()[0]:.1f}; {ERROR_CONTROL}")
    print(f"{'V':>7} {'law':<20} {'k':>3} {'batch':>5} {'old pairs/s':>12} {'new pairs/s':>12} {'max|new-old|':>13}"
          f" {'|Δ| 2x nodes':>12}")
    for r in rows:
        old = f"{r['old_pairs_per_s']:12.2f}" if r["old_pairs_per_s"] else f"{'(same)':>12}"
        d = f"{r['max_abs_diff_vs_full_sort']:13.1e}" if r["max_abs_diff_vs_full_sort"] is not None else f"{'':>13}"
        e = f"{r['node_doubling_err']:12.1e}" if r["node_doubling_err"] is not None else ""
        print(f"{r['V']:>7} {r['law']:<20} {r['k']:>3} {r['batch']:>5} {old} {r['pairs_per_s']:12.2f} {d} {e}")
    print(f"{'V':>7} {'k':>3} {'LP pairs/s':>11} {'optimal pairs/s':>16} {'ratio':>8}")
    for key, r in records.items():
        if key.startswith("lp/"):
            print(f"{r['V']:>7} {r['k']:>3} {r['lp_pairs_per_s']:11.2f} {r['optimal_pairs_per_s']:16.1f} "
                  f"{r['ratio']:8.0f}x")


def main(argv=None) -> int:
    cfg, out = parse_config(BenchTransportConfig, argv, __doc__, default_out="results/bench_transport")
    results = run(cfg, out)
    print_tables(results.records)
    write_csv(out.with_suffix(".csv"), [r for key, r in results.records.items() if not key.startswith("lp/")])
    print(f"wrote {out}.json and {out}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
