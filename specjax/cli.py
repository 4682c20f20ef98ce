"""The `specjax` command: `generate` (AR / chain / tree speculative decoding) and the subcommands other packages
register (`bounds`, `demo`)."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

CHAIN_METHODS = ("ar", "chain")
# subcommands living in other modules: (module, add-parser function, run function)
EXTRA_COMMANDS = {
    "bounds": ("specjax.cli_bounds", "add_bounds_parser", "run_bounds"),
    "demo": ("specjax.cli_demo", "add_demo_parser", "run_demo"),
}


def _tree_methods() -> tuple[str, ...]:
    try:
        from trees import TREE_METHODS
    except ImportError:
        return ()
    return tuple(TREE_METHODS)


def add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="decode prompts with AR, chain or tree speculative decoding")
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts-file", type=Path, help="one prompt per line")
    p.add_argument("--method", default="chain", choices=CHAIN_METHODS + _tree_methods())
    p.add_argument("-K", "--num-draft", type=int, default=4, help="draft tokens per round (chain)")
    p.add_argument("--budget", type=int, default=16, help="tree nodes per round (tree methods)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=None, help="rows decoded together (prompts are repeated to fill)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--model", default="byte-small", help="named config of a random-weight byte-level target")
    p.add_argument("--draft", default="byte-small-draft", help="named config of the random draft model")
    p.add_argument("--early-exit", type=int, default=None, help="draft with the target's first L layers instead")
    p.add_argument("--prompt-lookup", type=int, default=None, metavar="N",
                   help="draft by n-gram lookup in the row's own history (n-grams up to N; chains only)")
    p.add_argument("--out", type=Path, default=Path("results/generate.json"))


def _drafter_label(args) -> str:
    if args.prompt_lookup:
        return f"prompt-lookup n<={args.prompt_lookup}"
    return f"early exit L={args.early_exit}" if args.early_exit else args.draft


def run_generate(args) -> int:
    import jax

    from specjax import byte_tokenizer as bt
    from specjax.config import named_config
    from specjax.decode import generate
    from specjax.drafters import early_exit_drafter
    from specjax.lookup import prompt_lookup_drafter
    from specjax.model import init_model
    from specjax.sampling import SamplingConfig

    prompts = list(args.prompt or [])
    if args.prompts_file:
        prompts += [line for line in args.prompts_file.read_text().splitlines() if line.strip()]
    if not prompts:
        prompts = ["The quick brown fox"]
    batch = args.batch or len(prompts)
    prompts = [prompts[i % len(prompts)] for i in range(batch)]
    target_cfg = named_config(args.model)
    if target_cfg.vocab_size != bt.VOCAB_SIZE:
        raise SystemExit(f"--model {args.model} is not a byte-level preset (vocab {target_cfg.vocab_size})")
    print(f"note: no trained model pair is installed; using RANDOMLY INITIALISED models ({args.model} target, "
          f"{_drafter_label(args)} draft) with a byte tokenizer. "
          f"The text is noise; the statistics show the machinery.", file=sys.stderr)
    target = init_model(target_cfg, seed=0)
    if args.prompt_lookup:
        if args.method not in CHAIN_METHODS:
            raise SystemExit("--prompt-lookup drafts chains only: use --method chain")
        drafter = prompt_lookup_drafter(target_cfg, args.prompt_lookup)
    elif args.early_exit:
        drafter = early_exit_drafter(target, args.early_exit)
    else:
        drafter = init_model(named_config(args.draft), 1)
    ids = [bt.encode(p) for p in prompts]
    width = max(map(len, ids))
    tokens = np.full((batch, width), bt.PAD, np.int32)
    for i, row in enumerate(ids):
        tokens[i, :len(row)] = row
    sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
    kwargs = dict(max_new_tokens=args.max_new_tokens, sampling=sampling, eos_id=bt.EOS)
    if args.method in CHAIN_METHODS:
        kwargs.update(method=args.method, num_draft=args.num_draft, drafter=drafter)
    else:
        from trees import make_speculator
        kwargs.update(speculator=make_speculator(args.method, budget=args.budget), drafter=drafter)
    key = jax.random.key(args.seed)
    start = time.perf_counter()
    out = generate(target, tokens, np.array([len(r) for r in ids]), key, **kwargs)
    out.tokens.block_until_ready()
    seconds = time.perf_counter() - start
    for prompt, row, n in zip(prompts, np.asarray(out.tokens), np.asarray(out.lengths)):
        print(f"--- {prompt!r}\n{bt.decode(row[:n])!r}")
    stats = {"method": args.method, "num_draft": args.num_draft, "batch": batch, "seed": args.seed,
             "temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
             "acceptance_length": out.acceptance_length, "tokens": int(np.asarray(out.lengths).sum()),
             "seconds_including_compile": seconds, "target": args.model, "random_weights": True,
             "accepted_per_round": [row[row >= 0].tolist() for row in np.asarray(out.accepted)]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats, indent=1))
    print(f"tau (tokens per target call) = {out.acceptance_length:.3f}; stats written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(sub)
    runners = {"generate": run_generate}
    for name, (module, add, run) in EXTRA_COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        getattr(mod, add)(sub)
        runners[name] = getattr(mod, run)
    args = parser.parse_args(argv)
    return runners[args.command](args) or 0


if __name__ == "__main__":
    sys.exit(main())
