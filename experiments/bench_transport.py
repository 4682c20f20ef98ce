"""Pairs per second of `transport.optimal_acceptance` at V = 32k and 128k against the HiGHS LP.

`python experiments/bench_transport.py --out results/bench_transport [--quick]`. Every timing is taken in this one
run, after a warm-up call with the same shapes (jit compilation excluded); the LP/closed-form ratio is printed last.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from transport import lp, optimal_acceptance, optimal_ref
from transport.validate import as_float64_rows, check_pair

ERROR_CONTROL = ("iid / wor k=2: exact (bucketed pruning keeps every threshold set within 1e-12 of the best bucket "
                 "boundary; the value is the reference formula on the surviving prefixes, float64, equal to the "
                 "full-sort reference to ~1e-15); wor k>=3: race quadrature, error bounded by the 2x-node column")


def _old(p, q, k, law):
    """The previous path (full per-row sort, optimal_ref), for the old-vs-new columns (iid, wor k=2)."""
    check_pair(p, q, k)
    p64, q64 = as_float64_rows(p), as_float64_rows(q)
    out = []
    for lo in range(0, len(p64), 8):
        pp, qq = p64[lo:lo + 8], q64[lo:lo + 8]
        out.append(optimal_ref.alpha_iid(pp, qq, k, False)[0] if law == "iid" else optimal_ref.alpha_wor2(pp, qq, False)[0])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="results/bench_transport")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="V = 32k only")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows = []
    for v in ((32_000,) if args.quick else (32_000, 128_000)):
        p, q = _pairs(rng, 64, v)
        for law, ks, batch in (("iid", (2, 4, 8, 16), 64), ("without_replacement", (2,), 64),
                               ("greedy", (2, 4, 8, 16), 64), ("without_replacement", (4, 16), 2)):
            for k in ks:
                rate = _rate(lambda: optimal_acceptance(p[:batch], q[:batch], k, law), batch)
                old = None
                if law == "iid" or (law == "without_replacement" and k == 2):
                    old = _rate(lambda: _old(p[:batch], q[:batch], k, law), batch)
                    diff = float(np.abs(_old(p[:batch], q[:batch], k, law) - optimal_acceptance(p[:batch], q[:batch], k, law)).max())
                err = None
                if law == "without_replacement" and k >= 3:    # error control: the same pairs with 2x the nodes
                    err = float(np.abs(optimal_acceptance(p[:batch], q[:batch], k, law, nodes_per_decade=40)
                                       - optimal_acceptance(p[:batch], q[:batch], k, law)).max())
                rows.append({"V": v, "law": law, "k": k, "batch": batch, "pairs_per_s": rate, "old_pairs_per_s": old,
                             "max_abs_diff_vs_full_sort": diff if old is not None else None, "node_doubling_err": err})
                print(f"V={v:>6} {law:<20} k={k:>2} batch={batch:>2}: {rate:9.2f} pairs/s"
                      + (f"  (|Δ| at 2x nodes {err:.1e})" if err is not None else ""), file=sys.stderr, flush=True)
    # the LP at the largest sizes it takes in reasonable time: iid drafts, V = 12, k = 4 (793 sets)
    lp_rows = []
    for v, k in ((8, 4), (12, 4)):
        p, q = _pairs(rng, 8, v)
        lp_rate = _rate(lambda: [lp.lp_optimum(p[i], q[i], k, "iid") for i in range(8)], 8)
        fast_rate = _rate(lambda: optimal_acceptance(p, q, k, "iid"), 8, repeats=20)
        lp_rows.append({"V": v, "k": k, "lp_pairs_per_s": lp_rate, "optimal_pairs_per_s": fast_rate,
                        "ratio": fast_rate / lp_rate})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_transport.json").write_text(json.dumps({"rows": rows, "lp": lp_rows, "error_control": ERROR_CONTROL,
                                                            "loadavg": Path("/proc/loadavg").read_text().split()[:3]}, indent=2))
    print(f"load average {Path('/proc/loadavg').read_text().split()[:3]}; {ERROR_CONTROL}")
    print(f"{'V':>7} {'law':<20} {'k':>3} {'batch':>5} {'old pairs/s':>12} {'new pairs/s':>12} {'max|new-old|':>13}")
    for r in rows:
        old = f"{r['old_pairs_per_s']:12.2f}" if r["old_pairs_per_s"] else f"{'(same)':>12}"
        d = f"{r['max_abs_diff_vs_full_sort']:13.1e}" if r["max_abs_diff_vs_full_sort"] is not None else ""
        print(f"{r['V']:>7} {r['law']:<20} {r['k']:>3} {r['batch']:>5} {old} {r['pairs_per_s']:12.2f} {d}")
    print(f"{'V':>7} {'k':>3} {'LP pairs/s':>11} {'optimal pairs/s':>16} {'ratio':>8}")
    for r in lp_rows:
        print(f"{r['V']:>7} {r['k']:>3} {r['lp_pairs_per_s']:11.2f} {r['optimal_pairs_per_s']:16.1f} {r['ratio']:8.0f}x")


if __name__ == "__main__":
    main()
