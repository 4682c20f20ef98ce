"""The cross-vocabulary rules by exact enumeration on two tiny tokenizers that split strings differently
(transport/THEORY.md §5.7): each rule's TV to the target (TLI, SLEM, SLRS lossless; the one-path SLRS and the
unrenormalised TLI as negative controls), expected accepted drafts and characters per round, and the optimum across
tokenizations (an LP over strings) beside them.

    python experiments/cross_vocab_exact.py --seeds 5 --out results/cross_vocab_exact

Writes `<out>.json`: one record per seed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from specjax.bench.decoding import Results
from specjax.bench.experiment import parse_config


@dataclass(frozen=True)
class ExactConfig:
    target_tokens: str = "a,b,ab,ba,aab"
    drafter_tokens: str = "a,b,aa,bb,abb"
    history: str = "ab"
    """the committed text, encoded by the target's tokenizer"""
    depth: int = 3
    """K: target tokens drafted per round"""
    temperature: float = 1.0
    seeds: int = 5
    seed: int = 0
    """first seed; the drafter's is seed + 100"""


CONFIG = ExactConfig


def run_seed(cfg: ExactConfig, seed: int) -> dict:
    from transport.exact import strings as S, tokenizers as T
    from transport.exact.chain import total_variation
    from transport.studies.cross_vocab import compare_rules

    target, drafter = tuple(cfg.target_tokens.split(",")), tuple(cfg.drafter_tokens.split(","))
    rnd = S.Round(T.random_token_model(target, seed, cfg.temperature),
                  T.random_token_model(drafter, 100 + seed, cfg.temperature), T.encode(target, cfg.history), cfg.depth)
    exact = S.target_law(rnd)
    comparison = compare_rules(rnd)
    rows = {}
    for rule in S.RULES + S.CONTROLS + S.AUDITED:
        law = S.round_law(rnd, rule)
        rows[rule] = {"tv": total_variation(law.output, exact), "accepted": law.accepted, "chars": law.chars}
        if rule in comparison.rules:
            rows[rule].update(chars_within=comparison.rules[rule].chars_within, own_bound=comparison.rules[rule].bound)
    return {"rules": rows, "optimum": comparison.optimum, "full_match": comparison.full_match, "m": comparison.m}


def main(argv=None) -> int:
    cfg, out = parse_config(ExactConfig, argv, __doc__, default_out="results/cross_vocab_exact")
    results = Results(out.with_suffix(".json"), asdict(cfg))
    print(f"{'seed':>4} {'rule':<15}{'TV':>10}{'accepted':>10}{'chars':>8}{'within m':>10}{'own bound':>10}")
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        if not results.done(str(seed)):
            results.add(str(seed), run_seed(cfg, seed))
        record = results.records[str(seed)]
        for rule, r in record["rules"].items():
            within = f"{r['chars_within']:.3f}" if "chars_within" in r else "-"
            bound = f"{r['own_bound']:.3f}" if "own_bound" in r else "-"
            print(f"{seed:>4} {rule:<15}{r['tv']:>10.2e}{r['accepted']:>10.3f}{r['chars']:>8.3f}{within:>10}{bound:>10}")
        print(f"{seed:>4} optimum across tokenizations (LCP, m = {record['m']}): {record['optimum']:.3f}; "
              f"P(all m accepted) <= {record['full_match']:.3f}")
    print(f"written: {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
