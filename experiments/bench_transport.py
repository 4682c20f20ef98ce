"""Pairs per second of `transport.optimal_acceptance` at V = 32k and 128k against the HiGHS LP, and α* without
replacement for k >= 3 (the aggregated race of `transport.optimal.race`) against the previous jax-scan race and
against i.i.d. drafts at the same V.

    python experiments/bench_transport.py --out results/bench_transport [--quick] [--laws results/real_laws.npz]
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
    race_vocab: int = 49_152
    """V of the without-replacement k >= 3 comparison (SmolLM2's vocabulary)"""
    race_ks: tuple[int, ...] = (3, 4, 8)
    race_pairs: int = 8
    """pairs timed per race cell for the new path and for i.i.d."""
    old_race_pairs: int = 2
    """pairs timed for the old jax-scan race (~0.1-1 s each)"""
    repeats: int = 3
    """timed calls per race cell (the fastest counts: the host is shared)"""
    laws: str = ""
    """a stored-laws file (`transport.studies.law_file`): also time its first race_pairs contexts, every drafter at
    T = 1"""
    race_only: bool = False
    """only the race cells"""
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


def _old_race(p, q, k, nodes_per_decade=20):
    """The previous numpy-backend path for k_eff >= 3: the exponential-race recursion as a jax scan over V."""
    import jax
    from transport.optimal import jax_backend
    p64, q64 = as_float64_rows(p), as_float64_rows(q)
    k_eff = np.minimum(k, np.count_nonzero(q64, axis=1))
    with jax.enable_x64(True):
        return jax_backend.race_rows(p64, q64, k_eff, nodes_per_decade, True)[0]


def _best_seconds_per_pair(fn, n, repeats):
    fn()                                             # warm-up: compile / caches
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / n


def race_sources(cfg: BenchTransportConfig) -> list[str]:
    """The pair sources of the race cells: correlated softmax pairs, and each drafter of the laws file."""
    sources = ["softmax"]
    if cfg.laws:
        from transport.studies.law_file import load_laws
        sources += [f"laws:{d}" for d in load_laws(cfg.laws).drafters]
    return sources


def _race_pairs(cfg: BenchTransportConfig, source: str) -> tuple[np.ndarray, np.ndarray]:
    if source == "softmax":
        return _pairs(np.random.default_rng([cfg.seed, cfg.race_vocab]), cfg.race_pairs, cfg.race_vocab)
    from transport.studies.law_file import load_laws
    p, q = load_laws(cfg.laws).laws(source.removeprefix("laws:"), 1.0)
    return p[: cfg.race_pairs], q[: cfg.race_pairs]


def race_row(cfg: BenchTransportConfig, source: str, k: int) -> dict:
    """ms per pair of α* without replacement (new aggregated race, old jax scan) and of α* iid at the same V, the
    ratios, the largest |new − old| and the change of the new value at twice the quadrature nodes."""
    p, q = _race_pairs(cfg, source)
    n, n_old = len(p), min(cfg.old_race_pairs, len(p))
    new = _best_seconds_per_pair(lambda: optimal_acceptance(p, q, k, "without_replacement"), n, cfg.repeats)
    iid = _best_seconds_per_pair(lambda: optimal_acceptance(p, q, k, "iid"), n, cfg.repeats)
    old = _best_seconds_per_pair(lambda: _old_race(p[:n_old], q[:n_old], k), n_old, 1)
    a_new = optimal_acceptance(p, q, k, "without_replacement")
    diff = float(np.abs(a_new[:n_old] - _old_race(p[:n_old], q[:n_old], k)).max())
    err = float(np.abs(optimal_acceptance(p, q, k, "without_replacement", nodes_per_decade=40) - a_new).max())
    return {"V": p.shape[1], "source": source, "k": k, "pairs": n, "iid_ms": iid * 1e3, "new_ms": new * 1e3,
            "old_ms": old * 1e3, "new_over_iid": new / iid, "old_over_new": old / new, "max_abs_new_minus_old": diff,
            "node_doubling_err": err}


def run(cfg: BenchTransportConfig, out: Path) -> Results:
    """Every timing not yet in `<out>.json` (each cell's ratio is measured within the cell)."""
    results = Results(out.with_suffix(".json"), asdict(cfg))
    cells = [(f"V={v}/{law}/k={k}", partial(law_row, cfg, v, law, k, batch)) for v, law, k, batch in law_cells(cfg)]
    cells += [(f"lp/V={v}/k={k}", partial(lp_row, cfg, v, k)) for v, k in cfg.lp_sizes]
    cells = [] if cfg.race_only else cells
    cells += [(f"race/{source}/V={cfg.race_vocab}/k={k}", partial(race_row, cfg, source, k))
              for source in race_sources(cfg) for k in cfg.race_ks]
    for key, measure in progress(cells, len(cells), "bench transport"):
        if not results.done(key):
            results.add(key, measure())
    return results


def print_tables(records: dict) -> None:
    rows = [r for key, r in records.items() if not key.startswith(("lp/", "race/"))]
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


    print(f"{'source':<20} {'V':>6} {'k':>2} {'iid ms':>7} {'new ms':>7} {'old ms':>8} {'new/iid':>8} {'old/new':>8}"
          f" {'max|new-old|':>12} {'|Δ| 2x nodes':>12}")
    for key, r in records.items():
        if key.startswith("race/"):
            print(f"{r['source']:<20} {r['V']:>6} {r['k']:>2} {r['iid_ms']:7.2f} {r['new_ms']:7.2f} {r['old_ms']:8.1f} "
                  f"{r['new_over_iid']:7.1f}x {r['old_over_new']:7.0f}x {r['max_abs_new_minus_old']:12.1e} "
                  f"{r['node_doubling_err']:12.1e}")


def main(argv=None) -> int:
    cfg, out = parse_config(BenchTransportConfig, argv, __doc__, default_out="results/bench_transport")
    results = run(cfg, out)
    print_tables(results.records)
    write_csv(out.with_suffix(".csv"), [r for key, r in results.records.items() if not key.startswith(("lp/", "race/"))])
    print(f"wrote {out}.json and {out}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
