"""Run the real-law gap study (`transport.studies.law_gap`) on a stored-laws file, resumably: every (drafter,
temperature, prompt set, k) cell is one record of a `specjax.bench.decoding.Results` file, so an interrupted run skips the
cells it finished. Writes STEM.json (config, provenance, summary, per-context records), STEM.png and STEM.md (the
tables). Used by `experiments/real_laws.py study` and `specjax bounds --laws`."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from specjax.bench.decoding import Results
from specjax.bench.experiment import progress, provenance
from specjax.bench.studies_plots import plot_law_gap
from transport.studies import law_gap
from transport.studies.law_file import load_laws


def run_law_study(path: str | Path, config: law_gap.LawStudyConfig, out: str | Path) -> dict:
    """The study of the file at `path` under `config`; outputs at the stem `out`. Returns the result dict
    (summary rows, α* rows, violations of the two theorems, the file's description)."""
    stored = load_laws(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {"file": str(Path(path).resolve()), "study": dataclasses.asdict(config)}
    results = Results(out.with_name(out.name + ".records.json"), settings)
    todo = law_gap.cells(stored, config)
    laws: dict[tuple, tuple] = {}                # (drafter, T, set) -> (p, q): one softmax per setting
    for drafter, t, pset, k in progress(todo, len(todo), f"real-law study ({stored.num_contexts} contexts)"):
        key = law_gap.cell_key(drafter, t, pset, k)
        if results.done(key):
            continue
        if (drafter, t, pset) not in laws:
            laws = {(drafter, t, pset): stored.laws(drafter, t, stored.prompt_set == pset)}
        results.add(key, law_gap.compute_cell(*laws[drafter, t, pset], k, config))
    summary = law_gap.summarize(stored, results.records, config)
    description = {"target": stored.target, "drafters": list(stored.drafters), "vocab_size": stored.vocab_size,
                   "contexts": {s: int((stored.prompt_set == s).sum()) for s in stored.prompt_sets},
                   "temperatures": list(config.temperatures or stored.temperatures)}
    result = {"config": settings, "provenance": provenance(), "laws": description, **summary}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    table = law_gap.format_markdown(summary, config)
    out.with_suffix(".md").write_text(table + "\n")
    plot_law_gap(summary, out.with_suffix(".png"), f"{stored.target}: verifier gap on real laws "
                 f"({stored.num_contexts} contexts, V = {stored.vocab_size})")
    result["table"] = table
    return result


def report(result: dict, out: str | Path) -> str:
    """What a run prints: the file's description, the tables, the theorem checks and where the outputs are."""
    laws = result["laws"]
    checks = ("every verifier <= its alpha* and alpha*_wor >= alpha*_iid (within 1e-9) on every context"
              if not result["violations"] else f"{len(result['violations'])} VIOLATIONS: {result['violations'][:5]}")
    out = Path(out)
    return "\n".join([f"{laws['target']} with {', '.join(laws['drafters'])}: contexts {laws['contexts']}, "
                      f"V = {laws['vocab_size']}, T in {laws['temperatures']}", "", result["table"], "",
                      f"checks: {checks}",
                      f"wrote {out.with_suffix('.json')}, {out.with_suffix('.md')}, {out.with_suffix('.png')}"])
