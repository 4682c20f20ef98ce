"""`specjax demo`, the main job: SmolLM2-135M-Instruct (embedded, no download) answers a few prompts with
autoregressive and speculative decoding; prints the answers and a table (τ, tokens/s, speedup); writes JSON.

Timing excludes compilation: prompts are right-padded to one bucket length so each method compiles once, and a
warm-up call runs before the clock starts.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

DEFAULT_PROMPTS = (
    "What is the capital of France? Answer in one sentence.",
    "Write a Python function that checks whether a number is prime.",
    "Give three tips for staying focused while studying.",
)
# first layers used by the early-exit self-drafter; chosen by `specjax demo --sweep` (see the issue note)
DEFAULT_EXIT_LAYER = 4
DEFAULT_NUM_DRAFT = 4
DEFAULT_LOOKUP_NGRAM = 3
LOW_RANK = 128
DRAFTERS = ("prompt-lookup", "eagle-trim", "eagle-trim-lowrank", "eagle", "early-exit")


def make_drafters(target, names: Sequence[str], exit_layers: Sequence[int]) -> dict[str, Any]:
    """Drafters by CLI name: prompt lookup (n-grams of the row's history), early-exit (one per layer), the shipped
    EAGLE head, its VocabTrim variant and VocabTrim + a rank-LOW_RANK (SlimSpec-style, data-aware) head."""
    from specjax.drafters import early_exit_drafter
    from specjax.eagle import default_eagle_path, load_eagle, with_low_rank_head
    from specjax.lookup import prompt_lookup_drafter
    out = {}
    for name in names:
        if name == "early-exit":
            out.update({f"early_exit_L{L}": early_exit_drafter(target, L) for L in exit_layers})
        elif name == "prompt-lookup":
            out["prompt_lookup"] = prompt_lookup_drafter(target.config, DEFAULT_LOOKUP_NGRAM)
        elif not default_eagle_path().is_dir():
            raise ValueError(f"drafter {name!r}: no shipped EAGLE head at {default_eagle_path()}")
        else:
            drafter = load_eagle(default_eagle_path(), target, trim=name.startswith("eagle-trim"))
            if name.endswith("lowrank"):
                drafter = with_low_rank_head(*drafter, LOW_RANK)
            out[name.replace("-", "_")] = drafter
    return out


def encode_prompts(tokenizer, prompts: Sequence[str], bucket: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Chat-formatted prompts right-padded to a multiple of `bucket`: tokens `[B, L]` int32, lengths `[B]`."""
    ids = [tokenizer.chat_ids(p) for p in prompts]
    width = -(-max(len(i) for i in ids) // bucket) * bucket
    tokens = np.zeros((len(ids), width), np.int32)
    for row, i in enumerate(ids):
        tokens[row, :len(i)] = i
    return tokens, np.array([len(i) for i in ids], np.int32)


@dataclass
class Run:
    """One prompt decoded by one method: generated ids, wall seconds (compiled), τ."""

    tokens: list[int]
    seconds: float
    tau: float


def timed_generate(target, tokens: np.ndarray, length: int, key, *, method: str, max_new_tokens: int,
                   sampling, eos_id: int | None, drafter=None, num_draft: int = DEFAULT_NUM_DRAFT) -> Run:
    """Decode one padded prompt `tokens [1, L]` (already compiled by a warm-up call) and time it."""
    import jax

    from specjax.decode import generate
    kwargs = dict(method=method, max_new_tokens=max_new_tokens, sampling=sampling, eos_id=eos_id)
    if method != "ar":
        kwargs.update(drafter=drafter, num_draft=num_draft)
    t0 = time.perf_counter()
    res = generate(target, tokens, np.array([length], np.int32), key, **kwargs)
    jax.block_until_ready(res.tokens)
    seconds = time.perf_counter() - t0
    n = int(res.lengths[0])
    return Run(np.asarray(res.tokens[0, :n]).tolist(), seconds, res.acceptance_length if method != "ar" else 1.0)


def decode_all(target, tokens: np.ndarray, lengths: np.ndarray, *, method: str, max_new_tokens: int, sampling,
               eos_id: int | None, drafter=None, num_draft: int = DEFAULT_NUM_DRAFT, seed: int = 0) -> list[Run]:
    """Warm up (compile) on the first prompt, then decode and time every prompt."""
    import jax
    args = dict(method=method, max_new_tokens=max_new_tokens, sampling=sampling, eos_id=eos_id, drafter=drafter,
                num_draft=num_draft)
    timed_generate(target, tokens[:1], int(lengths[0]), jax.random.key(seed), **args)
    return [timed_generate(target, tokens[i:i + 1], int(lengths[i]), jax.random.key(seed + 1 + i), **args)
            for i in range(len(lengths))]


def summarize(runs: list[Run]) -> dict[str, float]:
    """Total tokens, seconds, tokens/s and mean τ (weighted by rounds through the token counts)."""
    toks = sum(len(r.tokens) for r in runs)
    secs = sum(r.seconds for r in runs)
    return {"tokens": toks, "seconds": secs, "tokens_per_s": toks / secs if secs else 0.0,
            "tau": float(np.mean([r.tau for r in runs]))}


def add_demo_parser(subparsers) -> None:
    p = subparsers.add_parser("demo", help="SmolLM2-135M: AR vs speculative decoding on built-in prompts")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable; default: three built-in prompts)")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("-K", "--num-draft", type=int, default=DEFAULT_NUM_DRAFT)
    p.add_argument("--exit-layer", type=int, default=DEFAULT_EXIT_LAYER,
                   help="early-exit drafter: draft with the first L of 30 layers")
    p.add_argument("--sweep", type=str, default=None,
                   help="comma-separated exit layers to compare (e.g. 4,6,8,10,12)")
    p.add_argument("--drafter", action="append", choices=DRAFTERS,
                   help="repeatable; default: prompt-lookup and eagle-trim (the shipped EAGLE head with "
                        "VocabTrim; early-exit if no head is shipped)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results/demo.json"))


def run_demo(args: argparse.Namespace) -> int:
    from specjax.io.smollm2 import ModelNotInstalledError, load_smollm2
    from specjax.sampling import SamplingConfig
    from specjax.validation import check_int

    try:
        sampling = SamplingConfig(temperature=args.temperature)
        check_int("max_new_tokens", args.max_new_tokens, low=1)
        check_int("num_draft", args.num_draft, low=1)
        layers = [int(x) for x in args.sweep.split(",")] if args.sweep else [args.exit_layer]
        for layer in layers:
            check_int("exit layer", layer, low=1, high=29)
    except ValueError as e:
        print(f"specjax demo: {e}", file=sys.stderr)
        return 2
    try:
        t0 = time.perf_counter()
        target, tok = load_smollm2()
        load_s = time.perf_counter() - t0
    except ModelNotInstalledError as e:
        print(f"specjax demo: {e}", file=sys.stderr)
        return 2
    from specjax.eagle import default_eagle_path
    names = args.drafter or ["prompt-lookup", "eagle-trim" if default_eagle_path().is_dir() else "early-exit"]
    if args.sweep and "early-exit" not in names:
        names.append("early-exit")
    try:
        drafters = make_drafters(target, names, layers)
    except ValueError as e:
        print(f"specjax demo: {e}", file=sys.stderr)
        return 2

    prompts = list(args.prompt or DEFAULT_PROMPTS)
    tokens, lengths = encode_prompts(tok, prompts)
    print(f"loaded SmolLM2-135M-Instruct in {load_s:.1f}s; {len(prompts)} prompts, max_new_tokens="
          f"{args.max_new_tokens}, temperature={args.temperature}, K={args.num_draft}", flush=True)
    common = dict(max_new_tokens=args.max_new_tokens, sampling=sampling, eos_id=tok.eos_id, seed=args.seed)
    results: dict[str, Any] = {}
    ar = decode_all(target, tokens, lengths, method="ar", **common)
    results["ar"] = summarize(ar)
    sd_runs = {}
    for name, drafter in drafters.items():
        runs = decode_all(target, tokens, lengths, method="chain", drafter=drafter, num_draft=args.num_draft,
                          **common)
        sd_runs[name] = runs
        results[name] = summarize(runs)
    best = max(drafters, key=lambda n: results[n]["tokens_per_s"])

    for i, prompt in enumerate(prompts):
        print(f"\n### {prompt}\n[AR] {tok.decode(ar[i].tokens).strip()}")
        same = sd_runs[best][i].tokens == ar[i].tokens
        label = "identical to AR" if same else "differs from AR (sampling)" if not sampling.greedy else "DIFFERS"
        print(f"[SD, {best}] {label}" + ("" if same else f": {tok.decode(sd_runs[best][i].tokens)}"))

    base = results["ar"]["tokens_per_s"]
    print(f"\n{'method':<22}{'tau':>7}{'tokens':>8}{'tok/s':>9}{'speedup':>9}")
    for name, r in results.items():
        r["speedup_vs_ar"] = r["tokens_per_s"] / base if base else 0.0
        print(f"{name:<22}{r['tau']:>7.2f}{r['tokens']:>8d}{r['tokens_per_s']:>9.1f}{r['speedup_vs_ar']:>8.2f}x")
    greedy_equal = all(sd_runs[n][i].tokens == ar[i].tokens for n in drafters for i in range(len(prompts)))
    if sampling.greedy:
        print(f"greedy speculative output equals AR output: {greedy_equal}")
    report = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to float32)", "prompts": prompts,
              "max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "num_draft": args.num_draft,
              "fastest_drafter": best, "results": results, "greedy_sd_equals_ar": greedy_equal if sampling.greedy
              else None, "answers": {"ar": [tok.decode(r.tokens) for r in ar]}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.out}")
    return 0
