"""`train_eagle.py eval`: acceptance (τ) and tokens/s of every drafter for SmolLM2-135M, as chains of `--num-draft`
drafts against AR, per temperature and prompt set (MT-bench, HumanEval; T = 0 and 1 by default).

Drafters: prompt lookup (`lookup:3`), the target's early exit (`early-exit:L`), and the trained head at `--ckpt` in
three forms: full vocabulary, VocabTrim, and VocabTrim with the data-aware rank-128 head
(`specjax.runners.eagle.with_low_rank_head`). Each head form's training-time τ estimate on the AR answers
(`specjax.bench.acceptance.text_chain_tau`) is reported beside its decoded τ; at T = 0 every chain is checked to
emit AR's tokens.

    python experiments/train_eagle.py eval --ckpt specjax/data/eagle_smollm2 --prompts 4 --out results/eagle_eval

Writes `<out>.json` (config, versions, one record per temperature and prompt set; resumable: rerun the same command
after an interruption), `<out>.csv` (one row per setting and drafter) and `<out>.png` (τ per drafter and setting).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from specjax.bench.experiment import parse_config, progress, write_csv


@dataclass(frozen=True)
class EagleEvalConfig:
    """`eval`: τ and tokens/s of every drafter (chains) against AR, per temperature and prompt set."""

    ckpt: str = "specjax/data/eagle_smollm2"
    prompts: int = 3
    max_new_tokens: int = 64
    num_draft: int = 4
    exit_layer: int = 4
    temperatures: tuple[float, ...] = (0.0, 1.0)
    prompt_sets: tuple[str, ...] = ("mt_bench", "humaneval")
    seed: int = 0


CONFIG = EagleEvalConfig
DEFAULT_OUT = "results/eagle_eval"


def load_drafters(cfg: EagleEvalConfig, target) -> dict:
    """{name: drafter handle}: prompt lookup, the early exit, and the head at `cfg.ckpt` in its three forms."""
    from specjax.apps.models import load_drafter
    from specjax.runners.eagle import load_eagle, with_low_rank_head

    drafters = {name: load_drafter(name, target, cfg.seed + 1) for name in ("lookup:3", f"early-exit:{cfg.exit_layer}")}
    drafters["eagle_full"] = load_eagle(cfg.ckpt, target.handle)
    drafters["eagle_trim"] = load_eagle(cfg.ckpt, target.handle, trim=True)
    drafters["eagle_trim_lowrank"] = with_low_rank_head(drafters["eagle_trim"], 128)
    return drafters


def evaluate_cell(cfg: EagleEvalConfig, target, drafters: dict, temp: float, set_name: str) -> dict:
    """{drafter name or "ar": summary} of one (temperature, prompt set): AR, then a chain with each drafter on the
    same prompts; the heads' τ estimate on AR's answers, and at T = 0 whether each chain emitted AR's tokens."""
    from specjax.bench.acceptance import text_chain_tau
    from specjax.bench.decoding import decode_prompts, summarize
    from specjax.bench.prompts import load_prompts
    from specjax.methods import make_method
    from specjax.sampling import SamplingConfig

    chain = make_method("chain", num_draft=cfg.num_draft)
    ids = [target.encode_prompt(p) for p in load_prompts(set_name, cfg.prompts)]
    common = dict(max_new_tokens=cfg.max_new_tokens, sampling=SamplingConfig(temperature=temp),
                  eos_id=target.eos_id, seed=cfg.seed)
    ar = decode_prompts(target.handle, ids, **common)
    row = {"ar": summarize(ar)}
    texts = [i + r.tokens for i, r in zip(ids, ar)]            # the target's own answers at this temperature
    for name, d in drafters.items():
        runs = decode_prompts(target.handle, ids, method=chain, drafter=d, **common)
        row[name] = summarize(runs)
        if name.startswith("eagle"):                            # the training-time estimate on the AR answers
            row[name]["tau_estimate"] = float(text_chain_tau(target.handle, d, texts, [len(i) for i in ids],
                                                             cfg.num_draft, common["sampling"])[-1])
        if temp == 0.0:
            row[name]["equals_ar"] = all(a.tokens == r.tokens for a, r in zip(ar, runs))
    return row


def evaluate(cfg: EagleEvalConfig, out: Path) -> int:
    """AR and chains with every drafter on each (temperature, prompt set) not yet in `<out>.json`; tables, CSV, PNG."""
    from specjax.apps.models import load_target
    from specjax.bench.decoding import Results

    results = Results(out.with_suffix(".json"), asdict(cfg))
    target = load_target("smollm2", cfg.seed)
    drafters = load_drafters(cfg, target)
    cells = [(temp, set_name) for temp in cfg.temperatures for set_name in cfg.prompt_sets]
    for temp, set_name in progress(cells, len(cells), "eval"):
        key = f"T{temp:g}/{set_name}"
        if not results.done(key):
            results.add(key, evaluate_cell(cfg, target, drafters, temp, set_name))
    rows = [dict(setting=key, drafter=name, vs_ar=r["tokens_per_s"] / row["ar"]["tokens_per_s"], **r)
            for key, row in results.records.items() for name, r in row.items()]
    print(f"\n{'setting':<18}{'drafter':<20}{'tau':>6}{'est. tau':>9}{'tok/s':>8}{'vs AR':>8}")
    for r in rows:
        est = f"{r['tau_estimate']:.2f}" if "tau_estimate" in r else ""
        print(f"{r['setting']:<18}{r['drafter']:<20}{r['tau']:>6.2f}{est:>9}{r['tokens_per_s']:>8.1f}"
              f"{r['vs_ar']:>7.2f}x")
    write_csv(out.with_suffix(".csv"), rows)
    plot_taus(results.records, out.with_suffix(".png"))
    print(f"wrote {out}.json, {out}.csv and {out}.png")
    return 0


def plot_taus(records: dict, path: Path) -> None:
    """τ of every drafter, grouped by (temperature, prompt set)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [n for n in next(iter(records.values())) if n != "ar"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ax.bar(np.arange(len(records)) + width * i, [row[name]["tau"] for row in records.values()], width, label=name)
    ax.set_xticks(np.arange(len(records)) + 0.4 - width / 2, list(records), fontsize=7)
    ax.set_ylabel("τ (tokens per target call)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    cfg, out = parse_config(CONFIG, argv, __doc__, default_out=DEFAULT_OUT, prog="train_eagle.py eval")
    return evaluate(cfg, out)
