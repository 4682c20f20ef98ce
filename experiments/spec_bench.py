"""Spec-Bench-style report: τ and speedup over AR per category (the eight MT-bench categories and HumanEval) for AR,
chains with every drafter and every tree builder, on one target, measured in one run on the same prompts.

    python experiments/spec_bench.py --per-category 2 --max-new-tokens 64 --out results/spec_bench
Default: SmolLM2-135M-Instruct at temperature 0; chains (K = `num_draft`) with each of `drafters`, every tree
builder (budget `budget`) with each of `tree_drafters`. Every configuration decodes all prompts (batch 1, timed
after compilation); the speedup of a configuration in a category is its tokens/s over AR's on that category's
prompts. Writes `<out>.json` (config, versions, one record per configuration; resumable), `<out>.csv` (one row per
configuration and category) and prints the τ and speedup tables.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from specjax.bench.decoding import Results, decode_prompts, summarize
from specjax.bench.experiment import parse_config, progress, write_csv
from specjax.apps.models import load_drafter, load_target, parse_drafter
from specjax.bench.prompts import categorized_prompts
from specjax.sampling import SamplingConfig
from specjax.methods import make_method
from trees.builders import canonical_method
from trees import TREE_METHODS, make_speculator


@dataclass(frozen=True)
class SpecBenchConfig:
    target: str = "smollm2"
    drafters: tuple[str, ...] = ("eagle", "lookup:3", "early-exit:10")
    tree_methods: tuple[str, ...] = TREE_METHODS
    tree_drafters: tuple[str, ...] = ("eagle",)
    num_draft: int = 4
    budget: int = 16
    per_category: int = 2
    temperature: float = 0.0
    max_new_tokens: int = 64
    seed: int = 0

    def __post_init__(self):
        for name in self.drafters + self.tree_drafters:
            parse_drafter(name)
        for method in self.tree_methods:
            canonical_method(method)                     # ValueError on an unknown name

    def configurations(self) -> list[tuple[str, str, str | None]]:
        """(label, method, drafter name) of every configuration, AR first."""
        chains = [(f"chain K={self.num_draft} {d}", "chain", d) for d in self.drafters]
        trees = [(f"{m} {self.budget} {d}", m, d) for d in self.tree_drafters for m in self.tree_methods]
        return [("ar", "ar", None)] + chains + trees


CONFIG = SpecBenchConfig  # what `main` parses (tests/apps/test_experiments.py)


def run(cfg: SpecBenchConfig, out: Path) -> Results:
    """Decode every prompt with every configuration not yet in `<out>.json`; records keyed by label, each holding
    per-category summaries."""
    results = Results(out.with_suffix(".json"), dataclasses.asdict(cfg))
    target = load_target(cfg.target, cfg.seed)
    if target.random_weights:
        print(f"note: {target.label} has RANDOMLY INITIALISED weights: the numbers show the machinery.")
    labelled = categorized_prompts(cfg.per_category)
    prompts = [target.encode_prompt(p) for _, p in labelled]
    drafters = {}
    sampling = SamplingConfig(cfg.temperature)
    configurations = cfg.configurations()
    for label, method, drafter_name in progress(configurations, len(configurations), "spec-bench"):
        if results.done(label):
            continue
        if drafter_name is not None and drafter_name not in drafters:
            drafters[drafter_name] = load_drafter(drafter_name, target, cfg.seed + 1)
        spec = (make_method("ar") if method == "ar" else make_method("chain", num_draft=cfg.num_draft)
                if method == "chain" else make_speculator(method, budget=cfg.budget))
        runs = decode_prompts(target.handle, prompts, seed=cfg.seed, method=spec,
                              drafter=drafters.get(drafter_name), max_new_tokens=cfg.max_new_tokens,
                              sampling=sampling, eos_id=target.eos_id)
        categories = list(dict.fromkeys(c for c, _ in labelled))
        record = {c: summarize([r for r, (rc, _) in zip(runs, labelled) if rc == c]) for c in categories}
        record["overall"] = summarize(runs)
        results.add(label, record)
    return results


def rows(records: dict) -> list[dict]:
    """One row per (configuration, category) with the speedup over AR on the same category."""
    ar = records["ar"]
    return [dict(configuration=label, category=c, tau=s["tau"], tokens_per_s=s["tokens_per_s"],
                 speedup=s["tokens_per_s"] / ar[c]["tokens_per_s"], drafted_per_round=s["drafted_per_round"])
            for label, record in records.items() for c, s in record.items()]


def format_tables(records: dict) -> str:
    """Two markdown tables (τ, speedup over AR), configurations by categories."""
    table = rows(records)
    categories = list(dict.fromkeys(r["category"] for r in table))
    out = []
    for field, title in (("tau", "τ"), ("speedup", "speedup over AR")):
        out.append(f"{title}\n\n| configuration | " + " | ".join(categories) + " |")
        out.append("|---" * (len(categories) + 1) + "|")
        for label in records:
            cells = {r["category"]: r[field] for r in table if r["configuration"] == label}
            out.append(f"| {label} | " + " | ".join(f"{cells[c]:.2f}" for c in categories) + " |")
        out.append("")
    ar = records["ar"]["overall"]
    out.append(f"AR: {ar['tokens_per_s']:.1f} tokens/s overall")
    return "\n".join(out)


def main(argv=None) -> int:
    cfg, out = parse_config(SpecBenchConfig, argv, __doc__, default_out="results/spec_bench")
    results = run(cfg, out)
    print(format_tables(results.records))
    write_csv(out.with_suffix(".csv"), rows(results.records))
    print(f"wrote {out}.json and {out}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
