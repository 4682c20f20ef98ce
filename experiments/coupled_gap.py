"""The price of drafter invariance (transport/THEORY.md §3.11): exact acceptance of the coupled rules against the
standard rules and the optimum on the synthetic pair families of the gap study (`transport.studies.gap`).

    python experiments/coupled_gap.py --out results/coupled_gap

Part 1, one draft at full vocabulary (`vocab_size`): DISD's acceptance (O(V log V) closed form) against the standard
rule's 1 − TV (= α*) and the paper's worst-case bound (1 − TV)/(1 + TV), mean over the pairs of each family and
temperature. Part 2, k drafts at a small vocabulary (`list_vocab`, the list law is exact by inclusion–exclusion): the
Gumbel list rule against RRS without replacement (the same draft law) and α*_wor. Part 3, k i.i.d. drafts at
`vocab_size`: the exponential race (closed form, §3.12) against RRS (the same draft law) and α*_iid. Writes
`<out>.json` (config, software versions, rows) and `<out>.csv`, and prints the three tables. With `--laws FILE.npz`
part 1 also runs on stored real laws (`real_laws.py collect`).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from specjax.bench.experiment import parse_config, provenance, write_csv
from transport.exact.coupled import disd_acceptance, gumbel_list_acceptance, race_acceptance
from transport.exact.verifiers import verifier_acceptance
from transport.optimal.acceptance import optimal_acceptance
from transport.studies.gap import synthetic_pairs
from transport.studies.law_file import load_laws


@dataclass(frozen=True)
class CoupledGapConfig:
    vocab_size: int = 4096
    """V of the one-draft comparison"""
    list_vocab: int = 6
    """V of the k-draft comparison (exact list law: 3^(V-1) terms per token)"""
    ks: tuple[int, ...] = (2, 3, 4)
    """draft counts of the list comparison"""
    race_ks: tuple[int, ...] = (1, 2, 4, 8)
    """draft counts of the race comparison (k i.i.d. drafts, at `vocab_size`)"""
    temperatures: tuple[float, ...] = (0.5, 1.0, 2.0)
    """applied to both laws' logits"""
    families: tuple[str, ...] = ("dirichlet", "zipf", "correlated_softmax")
    """pair families of `transport.studies.gap.synthetic_pairs`"""
    pairs: int = 32
    """(p, q) pairs per (family, temperature)"""
    seed: int = 0
    """draws the pairs"""
    laws: str = ""
    """a stored-laws file (`transport.studies.law_file`): part 1 also on its real laws, every drafter and temperature
    of the file, all contexts (family "laws:DRAFTER")"""


CONFIG = CoupledGapConfig


def one_draft_rows(cfg: CoupledGapConfig, rng: np.random.Generator) -> list[dict]:
    sources = [(family, t, synthetic_pairs(family, cfg.pairs, cfg.vocab_size, t, rng))
               for family in cfg.families for t in cfg.temperatures]
    if cfg.laws:
        stored = load_laws(cfg.laws)
        sources += [(f"laws:{d}", t, stored.laws(d, t)) for d in stored.drafters for t in stored.temperatures]
    rows = []
    for family, t, (p, q) in sources:
        tv = np.maximum(p - q, 0.0).sum(1)
        disd = disd_acceptance(p, q)
        rows.append({"family": family, "temperature": t, "standard_1_minus_tv": float(np.mean(1 - tv)),
                     "disd": float(np.mean(disd)), "bound": float(np.mean((1 - tv) / (1 + tv))),
                     "max_loss": float(np.max(1 - tv - disd))})
    return rows


def list_rows(cfg: CoupledGapConfig, rng: np.random.Generator) -> list[dict]:
    rows = []
    for family in cfg.families:
        for t in cfg.temperatures:
            p, q = synthetic_pairs(family, cfg.pairs, cfg.list_vocab, t, rng)
            for k in cfg.ks:
                listed = np.array([gumbel_list_acceptance(a, b, k) for a, b in zip(p, q)])
                rrs = verifier_acceptance(p, q, k, "rrs_without_replacement")
                star = optimal_acceptance(p, q, k, "without_replacement")
                diff = listed - rrs
                rows.append({"family": family, "temperature": t, "k": k, "gumbel_list": float(listed.mean()),
                             "rrs_without_replacement": float(rrs.mean()), "alpha_star_wor": float(star.mean()),
                             "list_wins": float(np.mean(diff > 1e-12)), "rrs_wins": float(np.mean(diff < -1e-12))})
    return rows


def race_rows(cfg: CoupledGapConfig, rng: np.random.Generator) -> list[dict]:
    """Part 3: the exponential race with k i.i.d. drafts (THEORY §3.12) against RRS and α*_iid, same draft law."""
    rows = []
    for family in cfg.families:
        for t in cfg.temperatures:
            p, q = synthetic_pairs(family, cfg.pairs, cfg.vocab_size, t, rng)
            for k in cfg.race_ks:
                race, rrs = race_acceptance(p, q, k), verifier_acceptance(p, q, k, "rrs")
                diff = race - rrs
                rows.append({"family": family, "temperature": t, "k": k, "race": float(race.mean()),
                             "rrs_iid": float(rrs.mean()), "alpha_star_iid": float(optimal_acceptance(p, q, k).mean()),
                             "race_wins": float(np.mean(diff > 1e-12)), "rrs_wins_race": float(np.mean(diff < -1e-12))})
    return rows


def format_tables(result: dict) -> str:
    lines = [f"{'family':<20} {'T':>4} {'1-TV':>7} {'DISD':>7} {'bound':>7} {'max loss':>9}"]
    for r in result["one_draft"]:
        lines.append(f"{r['family']:<20} {r['temperature']:4.1f} {r['standard_1_minus_tv']:7.4f} {r['disd']:7.4f} "
                     f"{r['bound']:7.4f} {r['max_loss']:9.4f}")
    lines.append(f"\n{'family':<20} {'T':>4} {'k':>2} {'list':>7} {'RRS_wor':>7} {'α*_wor':>7} {'list>':>6} "
                 f"{'rrs>':>6}")
    for r in result["lists"]:
        lines.append(f"{r['family']:<20} {r['temperature']:4.1f} {r['k']:2d} {r['gumbel_list']:7.4f} "
                     f"{r['rrs_without_replacement']:7.4f} {r['alpha_star_wor']:7.4f} {r['list_wins']:6.2f} "
                     f"{r['rrs_wins']:6.2f}")
    lines.append(f"\n{'family':<20} {'T':>4} {'k':>2} {'race':>7} {'RRS':>7} {'α*_iid':>7} {'race>':>6} {'rrs>':>6}")
    for r in result.get("races", []):
        lines.append(f"{r['family']:<20} {r['temperature']:4.1f} {r['k']:2d} {r['race']:7.4f} {r['rrs_iid']:7.4f} "
                     f"{r['alpha_star_iid']:7.4f} {r['race_wins']:6.2f} {r['rrs_wins_race']:6.2f}")
    return "\n".join(lines)


def run(cfg: CoupledGapConfig, out: Path) -> dict:
    start = time.time()
    rng = np.random.default_rng(cfg.seed)
    result = {"config": asdict(cfg), "provenance": provenance(), "one_draft": one_draft_rows(cfg, rng),
              "lists": list_rows(cfg, rng), "races": race_rows(cfg, rng),
              "method": "exact acceptance (closed forms and enumeration), no sampling"}
    result["seconds"] = time.time() - start
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    write_csv(out.with_suffix(".csv"), result["one_draft"] + result["lists"] + result["races"])
    return result


def main(argv=None) -> int:
    cfg, out = parse_config(CoupledGapConfig, argv, __doc__, default_out="results/coupled_gap")
    print(format_tables(run(cfg, out)))
    print(f"wrote {out}.json and {out}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
