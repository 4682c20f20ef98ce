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

from transport import lp, optimal_acceptance


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
                err = None
                if law == "without_replacement" and k >= 3:    # error control: the same pairs with 2x the nodes
                    err = float(np.abs(optimal_acceptance(p[:batch], q[:batch], k, law, nodes_per_decade=40)
                                       - optimal_acceptance(p[:batch], q[:batch], k, law)).max())
                rows.append({"V": v, "law": law, "k": k, "batch": batch, "pairs_per_s": rate, "node_doubling_err": err})
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
    (out / "bench_transport.json").write_text(json.dumps({"rows": rows, "lp": lp_rows}, indent=2))
    print(f"{'V':>7} {'law':<20} {'k':>3} {'batch':>5} {'pairs/s':>10}")
    for r in rows:
        print(f"{r['V']:>7} {r['law']:<20} {r['k']:>3} {r['batch']:>5} {r['pairs_per_s']:10.2f}")
    print(f"{'V':>7} {'k':>3} {'LP pairs/s':>11} {'optimal pairs/s':>16} {'ratio':>8}")
    for r in lp_rows:
        print(f"{r['V']:>7} {r['k']:>3} {r['lp_pairs_per_s']:11.2f} {r['optimal_pairs_per_s']:16.1f} {r['ratio']:8.0f}x")


if __name__ == "__main__":
    main()
