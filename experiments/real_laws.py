"""The verifier-vs-optimum study on real next-token laws (Hu et al.'s question asked of a real model pair).

    python experiments/real_laws.py collect --out results/real_laws            # -> results/real_laws.npz
    python experiments/real_laws.py study results/real_laws.npz --out results/real_laws_gap

`collect` decodes the target's answers at T = 0 to the first prompts of each prompt set (one jitted `generate` per
set), then scores prompt + answer teacher-forced: one forward of the target and one of each drafter per prompt set
give the next-token logits at every answer position (the context is the prompt and the answer so far). The file
stores full-vocabulary logits (`transport.studies.law_file`), so the study is exact at every temperature it asks for.
T = 0 is left out: its laws are one-hot and every rule accepts iff the argmaxes agree. `lookup:N` drafters are left
out too: a point-mass q makes every draft law k copies of one token, so α* = p(token) for every k.

`study` computes, per drafter, temperature, prompt set and k, α* (i.i.d., without replacement, greedy) and the exact
acceptance of every verifier, context by context (`transport.studies.law_gap`, resumable), and writes STEM.json, STEM.md
(the gap table) and STEM.png; `specjax bounds --laws FILE.npz` runs the same study.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import jax
import numpy as np

from specjax.bench.acceptance import next_token_logits
from specjax.bench.experiment import parse_config
from specjax.bench.law_study import report, run_law_study
from specjax.apps.models import load_drafter, load_target
from specjax.decode.batching import pad_prompts
from specjax.decode.loop import generate
from specjax.bench.prompts import load_prompts
from specjax.sampling import GREEDY
from transport.studies.law_file import StoredLaws
from transport.studies.law_gap import LawStudyConfig


@dataclass(frozen=True)
class CollectConfig:
    """Which pair, which contexts, and the temperatures the file proposes to the study."""

    target: str = "smollm2"
    drafters: tuple[str, ...] = ("eagle", "early-exit:8", "early-exit:16")
    prompt_sets: tuple[str, ...] = ("mt_bench", "humaneval")
    prompts_per_set: int = 4
    """the first prompts of each set"""
    answer_tokens: int = 48
    """greedy answer length (fewer where the target stops); one context per answer token"""
    temperatures: tuple[float, ...] = (0.7, 1.0)
    seed: int = 0


def collect(cfg: CollectConfig) -> StoredLaws:
    """Decode, score and gather the logits of `cfg` (see the module docstring)."""
    if any(d.startswith("lookup") for d in cfg.drafters):
        raise ValueError("lookup drafters propose point masses: their study is trivial (α* = p(token) at every k)")
    target = load_target(cfg.target, cfg.seed)
    drafters = [load_drafter(d, target) for d in cfg.drafters]
    parts = []
    for pset in cfg.prompt_sets:
        prompts = [target.encode_prompt(text) for text in load_prompts(pset, cfg.prompts_per_set)]
        tokens, lengths = pad_prompts(prompts)
        res = generate(target.handle, tokens, lengths, jax.random.key(cfg.seed), max_new_tokens=cfg.answer_tokens,
                       sampling=GREEDY, eos_id=target.eos_id)
        answers = [np.asarray(res.tokens[i, :int(res.lengths[i])]) for i in range(len(prompts))]
        texts, _ = pad_prompts([list(p) + a.tolist() for p, a in zip(prompts, answers)])
        rows = np.concatenate([np.full(len(a), i) for i, a in enumerate(answers)])
        pos = np.concatenate([np.arange(len(a)) for a in answers])
        cols = np.array([len(prompts[i]) - 1 + j for i, j in zip(rows, pos)])   # logits there predict answer[j]
        logits = [next_token_logits(target.handle, d, texts, rows, cols) for d in drafters]
        parts.append({"target_logits": logits[0][0], "drafter_logits": np.stack([q for _, q in logits]),
                      "prompt_set": np.full(len(rows), pset), "prompt_index": rows, "position": pos,
                      "token": np.concatenate(answers)})
        print(f"[real_laws] {pset}: {len(prompts)} prompts, {len(rows)} contexts", file=sys.stderr, flush=True)
    cat = {k: np.concatenate([p[k] for p in parts], axis=1 if k == "drafter_logits" else 0) for k in parts[0]}
    return StoredLaws(target=target.label, drafters=cfg.drafters, temperatures=cfg.temperatures, **cat)


# each subcommand's config (tests/apps/test_experiments.py)
CONFIG = {"collect": CollectConfig, "study": LawStudyConfig}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("collect", "study"):
        sys.exit(__doc__)
    if argv[0] == "collect":
        cfg, out = parse_config(CollectConfig, argv[1:], __doc__, default_out="results/real_laws",
                                prog="real_laws.py collect")
        path = collect(cfg).save(out.with_suffix(".npz"))
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
        return
    if argv[1:2] in (["-h"], ["--help"]):
        parse_config(LawStudyConfig, argv[1:], __doc__, default_out="results/real_laws_gap", prog="real_laws.py study")
    if len(argv) < 2 or argv[1].startswith("-"):
        sys.exit("usage: real_laws.py study FILE.npz [--ks ...] [--temperatures ...] [--wor-ks ...] [--out STEM]")
    cfg, out = parse_config(LawStudyConfig, argv[2:], __doc__, default_out="results/real_laws_gap")
    print(report(run_law_study(argv[1], cfg, out), out))


if __name__ == "__main__":
    main()
