"""`--method auto` against AR on prompts it has not seen, per category, on this machine.

    python experiments/auto_bench.py --out results/auto_bench

For each drafter: the machine's cost profile is measured first (the grid `specjax generate --method auto` measures on
first use), then every prompt (the first `per_category` of each MT-bench category and of HumanEval) is decoded by AR,
by a fixed chain of K = `num_draft`, and by `auto` starting from the prior estimate and learning across the prompts
in order. Each prompt is run once per method to compile, then timed `repeats` times (the median is kept); auto's
choice for a prompt is made once, from the estimate before it. Writes `<out>.json` (resumable per drafter and method), `<out>.md` (tokens/s ratio to AR per
category) and `<out>.png`.
"""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np

from specjax.bench.decoding import Results
from specjax.bench.experiment import parse_config, progress


@dataclass(frozen=True)
class AutoBenchConfig:
    target: str = "smollm2"
    drafters: tuple[str, ...] = ("eagle", "lookup:3")
    per_category: int = 1
    """prompts per MT-bench category and of HumanEval"""
    max_new_tokens: int = 48
    num_draft: int = 4
    """K of the fixed chain, and auto's largest K"""
    temperature: float = 0.0
    repeats: int = 3
    """timed runs per prompt and method (their median is kept)"""
    seed: int = 0


CONFIG = AutoBenchConfig


def run_method(name: str, target, drafter, prompts, costs, cfg: AutoBenchConfig) -> list[dict]:
    """One record per prompt: tokens, seconds of the timed run, τ, and auto's choice."""
    from specjax.bench.timing import timed
    from specjax.costs.choice import AcceptanceEstimate
    from specjax.decode.auto import generate_auto
    from specjax.decode.chain import ChainSpeculator
    from specjax.decode.loop import generate
    from specjax.sampling import SamplingConfig

    sampling = SamplingConfig(temperature=cfg.temperature)
    estimate, records = AcceptanceEstimate(), []
    for i, prompt in enumerate(progress(prompts, len(prompts), name)):
        key = jax.random.fold_in(jax.random.key(cfg.seed), i)
        if name == "auto":
            kw = dict(profile=costs, estimate=estimate, max_draft=cfg.num_draft, max_new_tokens=cfg.max_new_tokens,
                      sampling=sampling, eos_id=target.eos_id)
            generate_auto(target.handle, drafter, [prompt], key, **kw)                    # compiles
            runs = [timed(generate_auto, target.handle, drafter, [prompt], key, **kw) for _ in range(cfg.repeats)]
            seconds = float(np.median([s for _, s in runs]))
            res, choice, estimate = runs[0][0].result, runs[0][0].choices[0], runs[0][0].estimate
        else:
            k = 0 if name == "AR" else cfg.num_draft
            kw = dict(method=ChainSpeculator(k), drafter=drafter if k else None, max_new_tokens=cfg.max_new_tokens,
                      sampling=sampling, eos_id=target.eos_id)
            ids, lengths = np.asarray([prompt], np.int32), np.asarray([len(prompt)], np.int32)
            jax.block_until_ready(generate(target.handle, ids, lengths, key, **kw))   # compiles (and finishes)
            runs = [timed(generate, target.handle, ids, lengths, key, **kw) for _ in range(cfg.repeats)]
            res, seconds, choice = runs[0][0], float(np.median([s for _, s in runs])), None
        n = int(np.asarray(res.lengths)[0])
        records.append({"tokens": np.asarray(res.tokens[0, :n]).tolist(), "seconds": seconds,
                        "tau": res.acceptance_length, "choice": choice})
    return records


def table(records: dict, categories: list[str]) -> list[dict]:
    """Per drafter, method and category: tokens/s and the ratio to AR (same prompts), and whether tokens equal AR's."""
    rows = []
    for key, recs in records.items():
        drafter, method = key.split(" | ")
        ar = records[f"{drafter} | AR"]
        for cat in sorted(set(categories)) + ["all"]:
            idx = [i for i, c in enumerate(categories) if cat in ("all", c)]
            tokens = sum(len(recs[i]["tokens"]) for i in idx)
            rate = tokens / sum(recs[i]["seconds"] for i in idx)
            ar_rate = sum(len(ar[i]["tokens"]) for i in idx) / sum(ar[i]["seconds"] for i in idx)
            chose = [recs[i]["choice"]["method"] + (f"{recs[i]['choice']['num_draft']}" if recs[i]["choice"]
                                                    ["num_draft"] else "") for i in idx] if method == "auto" else []
            rows.append({"drafter": drafter, "method": method, "category": cat, "tokens_per_s": rate,
                         "ratio_to_ar": rate / ar_rate, "tau": float(np.mean([recs[i]["tau"] for i in idx])),
                         "equals_ar": all(recs[i]["tokens"] == ar[i]["tokens"] for i in idx), "choices": chose})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| drafter | method | category | tok/s | vs AR | mean τ | = AR | auto's choices |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['drafter']} | {r['method']} | {r['category']} | {r['tokens_per_s']:.1f} | "
                     f"{r['ratio_to_ar']:.2f} | {r['tau']:.2f} | {'yes' if r['equals_ar'] else 'no'} | "
                     f"{' '.join(r['choices'])} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [r for r in rows if r["method"] != "AR" and r["category"] != "all"]
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(shown) + 1))
    ax.barh([f"{r['drafter']} {r['method']} {r['category']}" for r in shown], [r["ratio_to_ar"] for r in shown])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.axvline(0.95, color="r", lw=0.6, ls="--")
    ax.set_xlabel("tokens/s / AR's (same prompts)")
    ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    from specjax.apps.auto import first_use_config
    from specjax.apps.models import load_drafter, load_target
    from specjax.bench.profile import measure_profile
    from specjax.bench.prompts import categorized_prompts

    cfg, out = parse_config(AutoBenchConfig, argv, __doc__, default_out="results/auto_bench")
    results = Results(out.with_suffix(".json"), asdict(cfg))
    target = load_target(cfg.target, cfg.seed)
    pairs = categorized_prompts(cfg.per_category)
    categories = [c for c, _ in pairs]
    prompts = [target.encode_prompt(p) for _, p in pairs]
    for name in cfg.drafters:
        drafter = load_drafter(name, target)
        if not results.done(f"{name} | profile"):
            profile = measure_profile(target.handle, drafter, first_use_config(), {"target": target.label,
                                                                                   "drafter": name}, log=lambda m: None)
            results.add(f"{name} | profile", profile.to_dict())
        from specjax.costs.profile import DeviceProfile
        profile = DeviceProfile.from_dict(results.records[f"{name} | profile"])
        width = max(map(len, prompts)) + cfg.max_new_tokens
        costs = profile.at(min(max(width, profile.contexts[0]), profile.contexts[-1]), 1)
        for method in ("AR", f"chain K{cfg.num_draft}", "auto"):
            if not results.done(f"{name} | {method}"):
                results.add(f"{name} | {method}", run_method(method, target, drafter, prompts, costs, cfg))
        jax.clear_caches()
    rows = table({k: v for k, v in results.records.items() if not k.endswith("profile")}, categories)
    text = markdown(rows)
    print(text, file=sys.stdout)
    out.with_suffix(".md").write_text(text)
    plot(rows, out.with_suffix(".png"))
    print(f"written: {out.with_suffix('.json')}, {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
