"""Retrieval drafting on SmolLM2-135M at temperature 0: specjax AR, prompt lookup, the stdlib datastore (REST-style),
online n-gram statistics (ADED-style) and their hybrids, as chains and trees, on HumanEval and MT-bench prompts, in
one run. Prints τ, tokens/s and the ratio to AR (measured in the same run, prompt by prompt interleaved), the τ this
machine would need to break even and to reach the issue's speed aim, and writes JSON.

The needed τ is measured, not modelled: a configuration's round (draft + one target call scoring its tokens + verify)
costs τ / ratio AR steps in this run, so at that per-round cost it would equal AR at τ = τ / ratio and reach the aim
at aim × τ / ratio. It holds the round's cost fixed, which is true for chains and fixed-size trees (their shapes do
not depend on what is accepted).

    python experiments/bench_retrieval.py --prompts 4 --max-new-tokens 64 --out results/bench_retrieval

(`--config FILE.toml` reads any subset of the `BenchConfig` fields; results go to OUT.json.)
    python experiments/bench_retrieval.py --report results/bench_retrieval.json

prints the table of a run from its JSON without decoding, over the prompts every configuration finished (for a run
stopped early: on a slow machine each new prompt-width bucket recompiles every configuration).

The last run of `--config experiments/configs/bench_retrieval_issue12.toml`: experiments/RESULTS.md.

Timings: every configuration is compiled by an untimed warm-up call per prompt-width bucket; then, for each
repeat, each prompt is decoded by every configuration in turn, so a burst of load on a shared machine hits all of
them alike; a prompt's time is the median over repeats. Interrupted runs resume (`specjax.bench.decoding.Results`).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass

import numpy as np

SPEED_AIM = {"humaneval": 1.5, "mt_bench": 1.3}


@dataclass(frozen=True)
class BenchConfig:
    prompt_sets: str = "humaneval,mt_bench"
    prompts: int = 4
    max_new_tokens: int = 64
    num_draft: int = 4
    budget: int = 16
    drafters: str = "lookup:3,rest,aded,rest+lookup:3,rest+aded"
    tree_method: str = "eagle"
    repeats: int = 2
    threads: int = 2
    seed: int = 0


CONFIG = BenchConfig


def configurations(cfg: BenchConfig) -> list[tuple[str, str | None, str, int]]:
    """(label, drafter name, method, tokens the target scores per round) of every run, AR first."""
    runs = [("AR", None, "ar", 1)]
    for name in cfg.drafters.split(","):
        runs.append((f"{name} chain K{cfg.num_draft}", name, "chain", cfg.num_draft + 1))
        if not name.startswith("lookup"):
            runs.append((f"{name} {cfg.tree_method} tree {cfg.budget}", name, cfg.tree_method, cfg.budget + 1))
    return runs


def main(argv=None) -> int:
    from specjax.bench.experiment import parse_config
    cfg, out = parse_config(BenchConfig, argv, __doc__, default_out="results/bench_retrieval")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={cfg.threads}")
    import jax

    from specjax.bench.decoding import Results, run_of
    from specjax.bench.timing import timed
    from specjax.apps.models import load_drafter, load_target, parse_drafter
    from specjax.decode.batching import bucket_size, pad_prompts
    from specjax.decode.loop import generate
    from specjax.bench.prompts import load_prompts
    from specjax.model.io.smollm2 import ModelNotInstalledError
    from specjax.sampling import SamplingConfig
    from specjax.methods import make_method

    runs = configurations(cfg)
    for _, name, _, _ in runs:                    # every name checked before anything is loaded or built
        if name is not None:
            parse_drafter(name)
    try:
        target = load_target("smollm2")
    except ModelNotInstalledError as e:
        print(e, file=sys.stderr)
        return 2
    greedy = SamplingConfig(temperature=0.0)
    drafters = {name: load_drafter(name, target) for _, name, _, _ in runs if name is not None}
    methods = {label: make_method(m, **({} if m == "ar" else dict(num_draft=cfg.num_draft) if m == "chain"
                                        else dict(budget=cfg.budget))) for label, _, m, _ in runs}
    results = Results(out.with_suffix(".json"), asdict(cfg))

    def decode(label, name, tokens, lengths, key):
        return generate(target.handle, tokens, lengths, key, method=methods[label],
                        drafter=None if name is None else drafters[name], max_new_tokens=cfg.max_new_tokens,
                        sampling=greedy, eos_id=target.eos_id)

    table = {}
    for prompt_set in cfg.prompt_sets.split(","):
        ids = [target.encode_prompt(t) for t in load_prompts(prompt_set, cfg.prompts)]
        batches = [pad_prompts([x]) for x in ids]
        warmed = set()
        for i, (tokens, lengths) in enumerate(batches):
            for rep in range(cfg.repeats):
                for label, name, _, _ in runs:
                    key = f"{prompt_set}/{label}/{i}/{rep}"
                    if results.done(key):
                        continue
                    if (label, bucket_size(len(ids[i]))) not in warmed:
                        warmed.add((label, bucket_size(len(ids[i]))))
                        decode(label, name, tokens, lengths, jax.random.key(cfg.seed)).tokens.block_until_ready()
                    res, secs = timed(decode, label, name, tokens, lengths, jax.random.key(cfg.seed + 1 + i))
                    run = run_of(res, secs)
                    results.add(key, {"tokens": run.tokens, "seconds": secs, "tau": run.tau})
            print(f"  {prompt_set} prompt {i + 1}/{len(ids)} done", file=sys.stderr, flush=True)
        table[prompt_set] = summarize_set(results.records, prompt_set, runs, cfg)
    results.add("summary", table)
    print_table(table)
    return 0


def report(path: str) -> int:
    """Print the table of the run saved at `path` (its finished prompts) without decoding."""
    saved = json.loads(open(path).read())
    cfg = BenchConfig(**saved["config"])
    table = {s: summarize_set(saved["records"], s, configurations(cfg), cfg) for s in cfg.prompt_sets.split(",")}
    print_table({s: rows for s, rows in table.items() if rows})
    return 0


def summarize_set(records: dict, prompt_set: str, runs, cfg: BenchConfig) -> dict:
    """Per configuration, over the prompts that every configuration finished: τ (mean over prompts), tokens/s
    (total tokens / sum of per-prompt median seconds), ratio to AR, whether every prompt's tokens equal AR's, and
    the τ needed to break even / reach the speed aim."""
    def finished(i):
        return all(f"{prompt_set}/{label}/{i}/{r}" in records for label, *_ in runs for r in range(cfg.repeats))

    prompts = [i for i in range(cfg.prompts) if finished(i)]
    if not prompts:
        return {}
    rows = {}
    for label, _, _, scored in runs:
        recs = [[records[f"{prompt_set}/{label}/{i}/{r}"] for r in range(cfg.repeats)] for i in prompts]
        toks = sum(len(rec[0]["tokens"]) for rec in recs)
        secs = sum(float(np.median([r["seconds"] for r in rec])) for rec in recs)
        rows[label] = {"tau": float(np.mean([rec[0]["tau"] for rec in recs])), "tokens": toks, "seconds": secs,
                       "tokens_per_s": toks / secs,
                       "prompts": len(prompts),
                       "equal_to_ar": all(rec[0]["tokens"] == records[f"{prompt_set}/AR/{i}/0"]["tokens"]
                                          for i, rec in zip(prompts, recs)),
                       "scored_per_round": scored}
    ar = rows["AR"]["tokens_per_s"]
    for row in rows.values():
        row["ratio_to_ar"] = row["tokens_per_s"] / ar
        row["tau_break_even"] = row["tau"] / row["ratio_to_ar"]         # the round's cost in AR steps
        row["tau_for_aim"] = row["tau_break_even"] * SPEED_AIM.get(prompt_set, 1.0)
    return rows


def print_table(table: dict) -> None:
    for prompt_set, rows in table.items():
        aim = SPEED_AIM.get(prompt_set, 1.0)
        n = next(iter(rows.values()))["prompts"]
        print(f"\n{prompt_set}, {n} prompts (SmolLM2-135M, T=0; needed τ = round cost in AR steps, measured)")
        print(f"{'configuration':34s} {'tau':>5s} {'tok/s':>7s} {'x AR':>6s} {'= AR':>5s} "
              f"{'tau to break even':>18s} {f'tau for {aim}x':>13s}")
        for label, r in rows.items():
            print(f"{label:34s} {r['tau']:5.2f} {r['tokens_per_s']:7.1f} {r['ratio_to_ar']:6.2f} "
                  f"{'yes' if r['equal_to_ar'] else 'NO':>5s} {r['tau_break_even']:18.2f} {r['tau_for_aim']:13.2f}")
    print(json.dumps({s: {k: round(v["tau"], 3) for k, v in rows.items()} for s, rows in table.items()}))


if __name__ == "__main__":
    sys.exit(report(sys.argv[2]) if sys.argv[1:2] == ["--report"] else main())
