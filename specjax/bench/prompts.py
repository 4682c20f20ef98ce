"""Offline prompt sets for acceptance measurements: MT-bench (80 questions, first turns) and HumanEval (164
problems). Both are vendored under `specjax/data/` with their licenses (see `specjax/data/README.md`)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
PROMPT_SETS = ("mt_bench", "humaneval")


def mt_bench_prompts() -> list[str]:
    """First-turn questions of MT-bench, in file order (question ids 81..160)."""
    return [prompt for _, prompt in mt_bench_by_category()]


def mt_bench_by_category() -> list[tuple[str, str]]:
    """(category, first-turn question) of MT-bench, in file order: 10 each of writing, roleplay, reasoning, math,
    coding, extraction, stem, humanities."""
    lines = (DATA_DIR / "mt_bench_questions.jsonl").read_text().splitlines()
    return [(q["category"], q["turns"][0]) for q in map(json.loads, filter(str.strip, lines))]


def categorized_prompts(per_category: int) -> list[tuple[str, str]]:
    """(category, prompt): the first `per_category` prompts of each MT-bench category and of HumanEval (category
    "humaneval"), as Spec-Bench reports them."""
    if not isinstance(per_category, int) or per_category < 1:
        raise ValueError(f"per_category must be a positive integer, got {per_category!r}")
    taken: dict[str, int] = {}
    out = []
    for category, prompt in mt_bench_by_category() + [("humaneval", p) for p in humaneval_prompts()]:
        if taken.get(category, 0) < per_category:
            taken[category] = taken.get(category, 0) + 1
            out.append((category, prompt))
    return out


def humaneval_prompts() -> list[str]:
    """HumanEval problem prompts (function signature + docstring), in task order."""
    with gzip.open(DATA_DIR / "HumanEval.jsonl.gz", "rt") as f:
        return [json.loads(line)["prompt"] for line in f if line.strip()]


def load_prompts(name: str, limit: int | None = None) -> list[str]:
    """Prompts of set `name` ("mt_bench" | "humaneval"), the first `limit` of them if given."""
    if name not in PROMPT_SETS:
        raise ValueError(f"unknown prompt set {name!r}; known: {PROMPT_SETS}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer, got {limit!r}")
    prompts = mt_bench_prompts() if name == "mt_bench" else humaneval_prompts()
    return prompts[:limit]


def held_out_prompts(per_set: int = 24) -> list[str]:
    """The last `per_set` prompts of every set, for fitting things (an acceptance head) away from the prompts that
    experiments evaluate on (the first ones of each set; keep their `limit` below the set size minus `per_set`)."""
    if not isinstance(per_set, int) or per_set < 1:
        raise ValueError(f"per_set must be a positive integer, got {per_set!r}")
    return [p for name in PROMPT_SETS for p in load_prompts(name)[-per_set:]]
