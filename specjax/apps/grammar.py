"""The command line's grammar constraints: `--regex PATTERN | --json-schema FILE [--grammar-mode MODE]`, read and
compiled before any weights are loaded, made faithful (an estimated h) once the target is, and checked after
decoding (each row complete, a valid prefix, or neither: the last never happens)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GRAMMAR_MODES = ("masked", "faithful", "faithful:onestep", "faithful:dp")


def add_grammar_arguments(p) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--regex", default=None, metavar="PATTERN", help="constrain every row's output to PATTERN")
    group.add_argument("--json-schema", type=Path, default=None, metavar="FILE",
                       help="constrain every row's output to JSON matching the schema in FILE")
    p.add_argument("--grammar-mode", default="masked", choices=GRAMMAR_MODES,
                   help="masked: the locally projected law (what serving engines sample); faithful[:dp] or "
                        "faithful:onestep: the grammar-conditional law, approximately, by the Doob transform with an "
                        "estimated future validity (specjax.constrain.validity; exact only for enumerable models)")


@dataclass(frozen=True)
class GrammarPlan:
    """What the grammar flags name: the regex (a JSON schema's, for --json-schema), its source for the report,
    and the mode."""

    regex: str
    source: str
    mode: str

    @property
    def estimator(self) -> str | None:
        """None for masked decoding, else the h estimator: onestep or dp."""
        return None if self.mode == "masked" else (self.mode.split(":")[1] if ":" in self.mode else "dp")


def plan_grammar(args) -> GrammarPlan | None:
    """The grammar the flags name, read eagerly (ValueError for a missing file or a schema outlines-core cannot
    compile), or None."""
    from specjax.constrain.compile import regex_from_json_schema

    if args.json_schema is not None:
        if not args.json_schema.is_file():
            raise ValueError(f"--json-schema {args.json_schema}: no such file")
        return GrammarPlan(regex_from_json_schema(args.json_schema.read_text()), f"json-schema:{args.json_schema}",
                           args.grammar_mode)
    if args.regex is not None:
        return GrammarPlan(args.regex, f"regex:{args.regex}", args.grammar_mode)
    if args.grammar_mode != "masked":
        raise ValueError("--grammar-mode needs a grammar: --regex PATTERN or --json-schema FILE")
    return None


def vocabulary_bytes(tokenizer: Any, vocab_size: int) -> list[bytes | None]:
    """The bytes of every token id: from the tokenizer, or for the random byte presets (no tokenizer) ids 0-255 are
    the bytes; ValueError for a target whose token strings are unknown."""
    from specjax.model.io.tokenizer import token_bytes
    from specjax.model.io import byte_tokenizer

    if tokenizer is not None:
        return token_bytes(tokenizer)
    if vocab_size == byte_tokenizer.VOCAB_SIZE:
        return [bytes([i]) for i in range(256)] + [None] * (vocab_size - 256)
    raise ValueError("a grammar constraint needs the target's token strings: this target has no tokenizer")


def compile_grammar(plan: GrammarPlan, tokenizer: Any, vocab_size: int, eos_id: int | None):
    """The masked-mode automaton of the plan over the target's vocabulary (cached on disk)."""
    from specjax.constrain.compile import compile_regex

    if eos_id is None:
        raise ValueError("a grammar constraint needs the target's end-of-sequence token: this target has none")
    return compile_regex(plan.regex, vocabulary_bytes(tokenizer, vocab_size), eos_id)


def make_faithful(plan: GrammarPlan, automaton, target, tokens: np.ndarray, lengths: np.ndarray, sampling,
                  max_new_tokens: int):
    """The automaton with the plan's h (masked: unchanged); the surrogate law is the target's mean law over the
    prompts (`specjax.constrain.validity.prompt_surrogate`)."""
    from specjax.constrain import validity

    if plan.estimator is None:
        return automaton
    surrogate = validity.prompt_surrogate(target, tokens, lengths, sampling)
    if plan.estimator == "onestep":
        return validity.onestep(automaton, surrogate, sampling.temperature)
    return validity.dp(automaton, surrogate, max_new_tokens, sampling.temperature)


def grammar_status(automaton, tokens: np.ndarray, lengths: np.ndarray) -> list[str]:
    """Per row: "complete" (a string of the language, ended by EOS), "prefix" (cut by max_new_tokens while still
    valid) or "invalid" (never, if the loop is right)."""
    from specjax.constrain.automaton import DEAD, DONE

    table = automaton.transitions()
    status = []
    for row, n in zip(np.asarray(tokens), np.asarray(lengths)):
        state = automaton.initial
        for y in row[:n]:
            state = int(table[state, y])
            if state == DEAD:
                break
        status.append("complete" if state == DONE else "invalid" if state == DEAD else "prefix")
    return status
