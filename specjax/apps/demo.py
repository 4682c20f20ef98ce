"""`specjax demo`, the main job: SmolLM2-135M-Instruct (embedded, no download) answers a few prompts with
autoregressive and speculative decoding; prints the answers and a table (τ, tokens/s, speedup); writes JSON.

Timing excludes compilation (a warm-up call per prompt bucket runs before the clock starts). Under the table: what
a verification call of K+1 tokens costs on this machine relative to a 1-token call, and the τ each drafter's chain
would need to beat AR here (`specjax.costs.latency`; `specjax profile` and `experiments/latency_model.py` go further).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_PROMPTS = (
    "What is the capital of France? Answer in one sentence.",
    "Write a Python function that checks whether a number is prime.",
    "Give three tips for staying focused while studying.",
)
DEFAULT_DRAFTERS = ("lookup:3", "eagle")
DEFAULT_NUM_DRAFT = 4


def add_demo_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="SmolLM2-135M: AR vs speculative decoding on built-in prompts")
    p.set_defaults(func=run_demo)
    p.add_argument("--prompt", action="append", help="a prompt (repeatable; default: three built-in prompts)")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("-K", "--num-draft", type=int, default=DEFAULT_NUM_DRAFT)
    p.add_argument("--drafter", action="append",
                   help=f"repeatable (forms: see `specjax generate --help`); default: {', '.join(DEFAULT_DRAFTERS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/demo.json"))


def load_demo(args: argparse.Namespace, prompts: list[str]):
    """(sampling, chain, target, drafters by name, prompt ids, load seconds): every flag, name and length checked
    (ValueError, or ModelNotInstalledError with the pip command) before any weights are loaded."""
    from specjax.apps.models import drafter_spec, encode_prompt, load_drafter, load_target, target_spec
    from specjax.sampling import SamplingConfig
    from specjax.methods import make_method
    from specjax.validation import check_int

    sampling = SamplingConfig(temperature=args.temperature)
    check_int("max_new_tokens", args.max_new_tokens, low=1)
    chain = make_method("chain", num_draft=args.num_draft)
    specs = {name: drafter_spec(name) for name in args.drafter or DEFAULT_DRAFTERS}
    smollm2 = target_spec("smollm2")
    for spec in specs.values():
        spec.fit(smollm2)
    ids = [encode_prompt(smollm2.tokenizer, p) for p in prompts]
    smollm2.check_length(max(map(len, ids)), args.max_new_tokens)
    t0 = time.perf_counter()
    target = load_target(smollm2)
    drafters = {name: load_drafter(spec, target) for name, spec in specs.items()}
    return sampling, chain, target, drafters, ids, time.perf_counter() - t0


def run_demo(args: argparse.Namespace) -> int:
    from specjax.bench.decoding import decode_prompts, summarize
    from specjax.model.io.smollm2 import ModelNotInstalledError

    prompts = list(args.prompt or DEFAULT_PROMPTS)
    try:
        sampling, chain, target, drafters, ids, load_s = load_demo(args, prompts)
    except (ModelNotInstalledError, ValueError) as e:
        print(f"specjax demo: {e}", file=sys.stderr)
        return 2
    print(f"loaded {target.label} in {load_s:.1f}s; {len(prompts)} prompts, max_new_tokens={args.max_new_tokens}, "
          f"temperature={args.temperature}, K={args.num_draft}", flush=True)
    common = dict(max_new_tokens=args.max_new_tokens, sampling=sampling, eos_id=target.eos_id, seed=args.seed)
    runs = {"ar": decode_prompts(target.handle, ids, **common)}
    for name, drafter in drafters.items():
        runs[name] = decode_prompts(target.handle, ids, method=chain, drafter=drafter, **common)
    results: dict[str, Any] = {name: summarize(r) for name, r in runs.items()}
    best = max(drafters, key=lambda n: results[n]["tokens_per_s"])
    print_answers(target, prompts, runs, best, sampling.greedy)
    print_table(results)
    ar = runs["ar"]
    greedy_equal = all(runs[n][i].tokens == ar[i].tokens for n in drafters for i in range(len(prompts)))
    if sampling.greedy:
        print(f"greedy speculative output equals AR output: {greedy_equal}")
    cost = (print_break_even(target.handle, drafters, chain, ids, args.max_new_tokens, results)
            if chain.num_draft else None)                  # K = 0 verifies nothing beyond AR's call
    report = {"model": f"{target.label} (GGUF dequantized to float32)", "prompts": prompts,
              "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "num_draft": args.num_draft,
              "fastest_drafter": best, "results": results,
              "greedy_sd_equals_ar": greedy_equal if sampling.greedy else None, "verification_cost": cost,
              "answers": {"ar": [target.decode(r.tokens) for r in ar]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0


def print_answers(target, prompts: list[str], runs: dict, best: str, greedy: bool) -> None:
    """Each prompt's AR answer, and whether the fastest drafter's speculative answer is the same."""
    ar = runs["ar"]
    for i, prompt in enumerate(prompts):
        print(f"\n### {prompt}\n[AR] {target.decode(ar[i].tokens).strip()}")
        same = runs[best][i].tokens == ar[i].tokens
        label = "identical to AR" if same else "differs from AR (sampling)" if not greedy else "DIFFERS"
        print(f"[SD, {best}] {label}" + ("" if same else f": {target.decode(runs[best][i].tokens)}"))


def print_table(results: dict) -> None:
    """The τ, tokens, tokens/s and speedup of every run (each result gains its `speedup_vs_ar`)."""
    base = results["ar"]["tokens_per_s"]
    print(f"\n{'method':<22}{'tau':>7}{'tokens':>8}{'tok/s':>9}{'speedup':>9}")
    for name, r in results.items():
        r["speedup_vs_ar"] = r["tokens_per_s"] / base if base else 0.0
        print(f"{name:<22}{r['tau']:>7.2f}{r['tokens']:>8d}{r['tokens_per_s']:>9.1f}{r['speedup_vs_ar']:>8.2f}x")


def print_break_even(target, drafters: dict, chain, ids, max_new_tokens: int, results: dict) -> dict:
    """Measure c(K+1)/c(1) of the target on this machine, at the cache capacity the demo's chains decode with (its
    longest prompt), and print it with each drafter's break-even τ beside the τ it reached (`results`)."""
    from specjax.bench.profile import chain_break_even, device_name
    from specjax.decode.loop import needed_capacity
    from specjax.decode.batching import bucket_size

    context = needed_capacity(bucket_size(max(map(len, ids))), chain, max_new_tokens)
    cost = chain_break_even(target, drafters, chain.num_draft, context)
    print(f"\non this machine ({device_name()}) a verification call scoring K+1 = {cost['verify_tokens']} tokens "
          f"costs {cost['cost_ratio']:.2f}x a 1-token call ({1e3 * cost['target_1_s']:.1f} ms); to beat AR here a "
          f"chain of K = {chain.num_draft} needs at most (the per-round overhead, left out, only lowers it)")
    for name, tau in cost["break_even_tau"].items():
        print(f"  {name:<20} tau >= {tau:.2f}   (it reached {results[name]['tau']:.2f})")
    return cost
