"""Benchmark: grammar-constrained decoding, measured in one run on this machine.

Part 1 (SmolLM2-135M with the shipped EAGLE head, `experiments/configs/grammar_tasks.json`: JSON-schema and regex
tasks of the project's own): AR, an EAGLE chain (K = 4) and an EAGLE-2 tree (budget 16), each with and without the
task's constraint, at temperature 0: τ, tokens/s, the ratio to AR measured beside it (same constraint status), the
constraint's cost per round (the same prompts decoded free and under a permissive automaton, which leaves the greedy
tokens, hence the rounds, unchanged), and whether each constrained row is a complete string of the language. Timings interleave every configuration of a task (`decode_interleaved`).

Part 2 (exact, the tiny pair and the tiny grammars of `specjax.testing.grammars`): the total-variation distance to
the grammar-conditional law μ* left by each future-validity estimator (masked, one-step, DP, exact), by
enumeration, with the seconds each h took to compute.

    python experiments/grammar_bench.py --out results/grammar_bench
    python experiments/grammar_bench.py --config quick --out results/grammar_quick
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from specjax.bench.decoding import Results, decode_interleaved, summarize
from specjax.bench.experiment import parse_config, progress

TASKS = Path(__file__).parent / "configs" / "grammar_tasks.json"


@dataclass(frozen=True)
class GrammarBenchConfig:
    tasks: tuple[str, ...] = ()              # task names of grammar_tasks.json (empty: all)
    max_new_tokens: int = 48
    num_draft: int = 4
    budget: int = 16
    temperature: float = 0.0
    repeats: int = 3
    tiny_budget: int = 6                     # tokens of the exact part (EOS included)
    real: bool = True                        # run part 1 (SmolLM2)
    seed: int = 0


CONFIG = GrammarBenchConfig
PRESETS = {"quick": GrammarBenchConfig(tasks=("weather_json", "iso_date"), max_new_tokens=24, repeats=1)}


def real_part(config: GrammarBenchConfig, results: Results) -> None:
    from specjax.apps.grammar import grammar_status, vocabulary_bytes
    from specjax.apps.models import load_drafter, load_target
    from specjax.constrain import compile_regex, pad_automaton, regex_from_json_schema
    from specjax.methods import make_method
    from specjax.sampling import SamplingConfig

    tasks = json.loads(TASKS.read_text())["tasks"]
    tasks = [t for t in tasks if not config.tasks or t["name"] in config.tasks]
    target = load_target("smollm2")
    eagle = load_drafter("eagle", target)
    vocabulary = vocabulary_bytes(target.tokenizer, target.config.vocab_size)
    sampling = SamplingConfig(config.temperature)
    methods = {"ar": (make_method("ar"), None), "chain": (make_method("chain", num_draft=config.num_draft), eagle),
               "eagle2": (make_method("eagle2", budget=config.budget), eagle)}
    compiled = {}
    for task in tasks:
        regex = regex_from_json_schema(json.dumps(task["json_schema"])) if "json_schema" in task else task["regex"]
        start = time.perf_counter()
        compiled[task["name"]] = (compile_regex(regex, vocabulary, target.eos_id), time.perf_counter() - start)
    # every task's automaton padded to one shape: the constrained loops compile once, not once per grammar
    shape = np.max([a.next_state.shape for a, _ in compiled.values()], axis=0)
    for task in progress(tasks, len(tasks), "tasks"):
        if results.done(task["name"]):
            continue
        automaton, compile_seconds = compiled[task["name"]]
        padded = pad_automaton(automaton, *map(int, shape))
        configs = {}
        for name, (method, drafter) in methods.items():
            common = dict(method=method, drafter=drafter, max_new_tokens=config.max_new_tokens, sampling=sampling,
                          eos_id=target.eos_id)
            configs[name] = common
            configs[name + "+grammar"] = dict(common, constraint=padded)
        prompt = target.encode_prompt(task["prompt"])
        runs = decode_interleaved(target.handle, [prompt], configs, seed=config.seed, repeats=config.repeats)
        record = {"states": automaton.num_states, "classes": int(automaton.next_state.shape[1]),
                  "padded_to": [int(x) for x in shape], "compile_seconds": compile_seconds, "configs": {}}
        for name, rs in runs.items():
            row = summarize(rs)
            row["text"] = target.decode(rs[0].tokens)
            if name.endswith("+grammar"):
                row["status"] = grammar_status(automaton, np.asarray([rs[0].tokens]),
                                               np.asarray([len(rs[0].tokens)]))[0]
            record["configs"][name] = row
        results.add(task["name"], record)


def overhead_part(config: GrammarBenchConfig, results: Results) -> None:
    """The automaton's cost per round with the output held fixed: every task prompt decoded with no constraint and
    with a permissive one (any text: the same greedy tokens, so the same rounds), per method."""
    from specjax.apps.grammar import vocabulary_bytes
    from specjax.apps.models import load_drafter, load_target
    from specjax.constrain import compile_regex
    from specjax.methods import make_method
    from specjax.sampling import SamplingConfig

    if results.done("overhead") or config.temperature != 0:
        return
    tasks = json.loads(TASKS.read_text())["tasks"]
    tasks = [t for t in tasks if not config.tasks or t["name"] in config.tasks]
    target = load_target("smollm2")
    eagle = load_drafter("eagle", target)
    anything = compile_regex(r"[\s\S]*", vocabulary_bytes(target.tokenizer, target.config.vocab_size), target.eos_id)
    prompts = [target.encode_prompt(t["prompt"]) for t in tasks]
    methods = {"ar": (make_method("ar"), None), "chain": (make_method("chain", num_draft=config.num_draft), eagle),
               "eagle2": (make_method("eagle2", budget=config.budget), eagle)}
    record = {}
    for name, (method, drafter) in progress(methods.items(), len(methods), "overhead"):
        common = dict(method=method, drafter=drafter, max_new_tokens=config.max_new_tokens,
                      sampling=SamplingConfig(0.0), eos_id=target.eos_id)
        runs = decode_interleaved(target.handle, prompts, {"free": common, "any": dict(common, constraint=anything)},
                                  seed=config.seed, repeats=config.repeats)
        rounds = sum((len(r.tokens) - 1) / r.tau for r in runs["free"])
        free, constrained = summarize(runs["free"]), summarize(runs["any"])
        record[name] = {"same_tokens": all(a.tokens == b.tokens for a, b in zip(runs["free"], runs["any"])),
                        "rounds": rounds, "seconds_free": free["seconds"], "seconds_any": constrained["seconds"],
                        "ms_per_round": 1e3 * (constrained["seconds"] - free["seconds"]) / rounds,
                        "ms_per_round_free": 1e3 * free["seconds"] / rounds}
    results.add("overhead", record)


def exact_part(config: GrammarBenchConfig, results: Results) -> None:
    from specjax.constrain import validity
    from specjax.sampling import SamplingConfig
    from specjax.testing.grammars import (TINY_GRAMMARS, conditional_law, emitted_law, model_law, tiny_automaton,
                                          total_variation)
    from specjax.testing.pairs import tiny_pair

    target, _ = tiny_pair()
    sampling = SamplingConfig(1.0)
    prompt = [3, 5, 7]
    next_law = model_law(target, prompt, sampling)
    surrogate = validity.prompt_surrogate(target, np.asarray([prompt]), np.asarray([len(prompt)]), sampling)
    for name in TINY_GRAMMARS:
        key = f"exact:{name}"
        if results.done(key):
            continue
        budget = config.tiny_budget + (2 if name == "json" else 0)       # the shortest JSON string takes 7 tokens
        masked = tiny_automaton(name)
        conditional = conditional_law(masked, next_law, budget)
        estimators = {"masked": lambda: masked, "onestep": lambda: validity.onestep(masked, surrogate),
                      "dp": lambda: validity.dp(masked, surrogate, budget),
                      "exact": lambda: validity.exact_trie(masked, next_law, budget)}
        record = {"budget": budget, "estimators": {}}
        for label, make in estimators.items():
            start = time.perf_counter()
            automaton = make()
            seconds = time.perf_counter() - start
            law = emitted_law(automaton, next_law, budget)
            record["estimators"][label] = {"tv": total_variation(law, conditional), "seconds": seconds,
                                           "states": automaton.num_states,
                                           "complete": sum(p for seq, p in law.items() if seq[-1] == 0)}
        results.add(key, record)


def print_tables(records: dict) -> None:
    real = {k: v for k, v in records.items() if not k.startswith("exact:") and k != "overhead"}
    if real:
        print(f"\n{'task':<14} {'config':<15} {'tau':>5} {'tok/s':>7} {'/AR':>5} {'status':>9}")
        for task, rec in real.items():
            cfg = rec["configs"]
            for name, row in cfg.items():
                ar = cfg["ar+grammar" if name.endswith("+grammar") else "ar"]
                print(f"{task:<14} {name:<15} {row['tau']:>5.2f} {row['tokens_per_s']:>7.1f} "
                      f"{row['tokens_per_s'] / ar['tokens_per_s']:>5.2f} {row.get('status', '-'):>9}")
            print(f"{task:<14} automaton: {rec['states']} states, {rec['classes']} token classes, compiled in "
                  f"{rec['compile_seconds']:.1f} s")
    if "overhead" in records:
        print(f"\n{'method':<8} {'same tokens':>11} {'ms/round':>9} {'+automaton ms/round':>20}")
        for name, row in records["overhead"].items():
            print(f"{name:<8} {str(row['same_tokens']):>11} {row['ms_per_round_free']:>9.1f} "
                  f"{row['ms_per_round']:>+20.2f}")
    exact = {k: v for k, v in records.items() if k.startswith("exact:")}
    if exact:
        print(f"\n{'grammar':<8} {'N':>2} {'estimator':<9} {'TV to mu*':>10} {'P(complete)':>11} {'h seconds':>9}")
        for key, rec in exact.items():
            for label, row in rec["estimators"].items():
                print(f"{key[6:]:<8} {rec['budget']:>2} {label:<9} {row['tv']:>10.2e} {row['complete']:>11.3f} "
                      f"{row['seconds']:>9.3f}")


def main(argv=None) -> None:
    config, out = parse_config(GrammarBenchConfig, argv, __doc__, default_out="results/grammar_bench",
                               presets=PRESETS)
    results = Results(out.with_suffix(".json"), asdict(config))
    exact_part(config, results)
    if config.real:
        real_part(config, results)
        overhead_part(config, results)
    print_tables(results.records)
    print(f"wrote {out}.json")


if __name__ == "__main__":
    main()
