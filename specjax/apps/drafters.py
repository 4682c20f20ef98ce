"""Drafter names (`--drafter`), read once into typed specs checked against a target:
- `eagle` (the shipped head for SmolLM2, VocabTrim), `eagle-full` (no VocabTrim), `eagle-lowrank:R` (VocabTrim +
  rank-R head);
- `early-exit:L` (the target's first L layers), `lookup:N` (n-gram lookup, n <= N), `model:<target form>` (a
  separate draft model; its vocabulary must match the target's, or it drafts across vocabularies with
  `with_cross_vocab("tli")`, the command line's `--cross-vocab`);
- `rest` / `rest:N` (retrieval from a datastore of the Python standard library's sources tokenized by the target's
  tokenizer, contexts of up to N tokens, default 4; built once and cached, `specjax.apps.datastores`), `aded` /
  `aded:N` (online n-gram statistics of the row's committed tokens, contexts up to N, default 3);
- `A+B+...`: a hybrid (`specjax.runners.hybrid`): drafter A with the best proposal of each later one (`lookup:N`,
  `rest`, `aded`, ...) promoted to the top, the last one highest, e.g. `rest+lookup:3`, `eagle+rest`.
`drafter_spec` parses a name into an `EagleSpec`, `EarlyExitSpec`, `ProposalSpec`, `ModelDrafterSpec` or
`HybridSpec`, whose `fit(target)` checks it against a target: each condition in one place, before any weights load.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Protocol, Union

from specjax.apps.targets import LoadedTarget, TargetSpec, load_target, target_spec
from specjax.model.config import NAMED_CONFIGS, ModelConfig
from specjax.runners.base import Handle
from specjax.runners.model import early_exit

DRAFTER_FORMS = ("eagle", "eagle-full", "eagle-lowrank:R", "early-exit:L", "lookup:N", "model:<target>", "rest[:N]",
                 "aded[:N]", "A+B (hybrid; B a lookup/rest/aded form)")


PROPOSAL_KINDS = ("lookup", "rest", "aded")


DEFAULT_NGRAM = {"rest": 4, "aded": 3}


ANY_TARGET_DRAFTER = "lookup:3"          # prompt lookup: no weights, so it fits every target


class TargetFacts(Protocol):
    """What a drafter's fit depends on: a `TargetSpec` before loading, or a `LoadedTarget` after."""

    @property
    def config(self) -> ModelConfig: ...

    @property
    def label(self) -> str: ...

    @property
    def has_tokenizer(self) -> bool: ...


def _architecture(config: ModelConfig) -> ModelConfig:
    """The config without what a checkpoint may change at load time (dtypes) or never uses (the init scale, the
    context it was trained for)."""
    return config.replace(dtype="float32", cache_dtype=None, init_std=0.02, max_positions=None)


@functools.lru_cache(maxsize=1)
def _eagle_trained_for() -> ModelConfig:
    """The configuration of the target the shipped EAGLE head was trained on (stored with the head)."""
    from specjax.model.io.checkpoint import read_meta
    from specjax.runners.eagle import default_eagle_path
    return _architecture(ModelConfig(**read_meta(default_eagle_path())["config"]))


def eagle_fits(config: ModelConfig) -> bool:
    """Whether the shipped EAGLE head drafts for a target of `config` (SmolLM2's architecture, any dtype)."""
    return _architecture(config) == _eagle_trained_for()


@dataclass(frozen=True)
class EagleSpec:
    """The shipped EAGLE head for SmolLM2: `eagle` (VocabTrim), `eagle-full`, `eagle-lowrank:R`."""

    trim: bool = True
    """VocabTrim: the head scores only its stored set of frequent tokens."""
    rank: int | None = None
    """The rank R of a low-rank (SlimSpec) head, R <= the target's width; None: the full head."""

    @property
    def name(self) -> str:
        return f"eagle-lowrank:{self.rank}" if self.rank else "eagle" if self.trim else "eagle-full"

    def as_tuple(self) -> tuple[str, Any]:
        return ("eagle-lowrank", self.rank) if self.rank else (self.name, None)

    def fit(self, target: TargetFacts) -> None:
        if not eagle_fits(target.config):
            c = target.config
            raise ValueError(f"the shipped EAGLE head was trained for SmolLM2 (--target smollm2), not {target.label} "
                             f"(vocabulary {c.vocab_size}, width {c.d_model}, {c.n_layers} layers)")
        if self.rank is not None and self.rank > target.config.d_model:
            raise ValueError(f"{self.name}: the rank must be at most the target's width {target.config.d_model}")

    def build(self, target: LoadedTarget, seed: int, dtype: str | None, in_hybrid: bool = False) -> Handle:
        from specjax.runners.eagle import default_eagle_path, load_eagle, with_low_rank_head
        eagle = load_eagle(default_eagle_path(), target.handle, trim=self.trim)
        return with_low_rank_head(eagle, self.rank) if self.rank else eagle


@dataclass(frozen=True)
class EarlyExitSpec:
    """`early-exit:L`: the target's own first L layers (and its head) draft."""

    layers: int
    """L >= 1, fewer than the target's layers."""

    @property
    def name(self) -> str:
        return f"early-exit:{self.layers}"

    def as_tuple(self) -> tuple[str, Any]:
        return "early-exit", self.layers

    def fit(self, target: TargetFacts) -> None:
        if self.layers >= target.config.n_layers:
            raise ValueError(f"{self.name} needs fewer layers than the target's {target.config.n_layers}")

    def build(self, target: LoadedTarget, seed: int, dtype: str | None, in_hybrid: bool = False) -> Handle:
        return early_exit(target.handle, self.layers)


@dataclass(frozen=True)
class ProposalSpec:
    """A drafter of proposals without weights: `lookup:N` (prompt n-grams), `rest[:N]` (a datastore of the
    standard library's sources), `aded[:N]` (the row's own n-gram statistics)."""

    kind: str
    """One of PROPOSAL_KINDS."""
    max_ngram: int
    """The longest context matched, N >= 1 (rest and aded: at most 16)."""

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.max_ngram}"

    def as_tuple(self) -> tuple[str, Any]:
        return self.kind, self.max_ngram

    def fit(self, target: TargetFacts) -> None:
        if self.kind == "rest" and not target.has_tokenizer:
            raise ValueError(f"rest needs a target with a tokenizer to build its datastore; {target.label} has none")

    def build(self, target: LoadedTarget, seed: int, dtype: str | None, in_hybrid: bool = False) -> Handle:
        config, repeat = target.handle.config, not in_hybrid          # in a hybrid, an unmatched row proposes nothing
        if self.kind == "lookup":
            from specjax.runners.lookup import lookup_handle
            return lookup_handle(config, max_ngram=self.max_ngram, repeat_unmatched=repeat)
        if self.kind == "aded":
            from specjax.runners.aded import aded_handle
            return aded_handle(config, max_ngram=self.max_ngram, repeat_unmatched=repeat)
        from specjax.apps.datastores import stdlib_datastore
        from specjax.runners.retrieval import datastore_handle
        return datastore_handle(config, stdlib_datastore(target.tokenizer, max_ngram=self.max_ngram),
                                repeat_unmatched=repeat)


CROSS_VOCAB_RULES = ("tli", "slem", "slrs", "omnidraft")
MIN_SHARED_TOKENS = 256          # fewer shared tokens than the bytes of ASCII text: TLI would draft almost nothing


@dataclass(frozen=True)
class ModelDrafterSpec:
    """`model:<target form>`: a separate draft model, read like a target; with `cross_vocab`, one of another
    vocabulary drafting by token-level intersection (`specjax.crossvocab`)."""

    target: TargetSpec
    """The draft model's own spec (configuration read, no weights)."""
    cross_vocab: str | None = None
    """None (the vocabularies must match) or a rule of CROSS_VOCAB_RULES (`with_cross_vocab`)."""

    @property
    def name(self) -> str:
        return f"model:{self.target.name}"

    def as_tuple(self) -> tuple[str, Any]:
        return "model", self.target.name

    def with_cross_vocab(self, rule: str) -> "ModelDrafterSpec":
        """This drafter across vocabularies by `rule`; ValueError for an unknown rule, or one the jitted loop does not
        run (SLEM and SLRS re-tokenize drafted text: their exact laws are in transport.exact.strings)."""
        if rule not in CROSS_VOCAB_RULES:
            raise ValueError(f"unknown cross-vocabulary rule {rule!r}; rules: {', '.join(CROSS_VOCAB_RULES)}")
        if rule == "slrs":
            raise ValueError("--cross-vocab slrs: its exact proposal law sums every drafter tokenization of the "
                             "drafted string (exponential); the affordable one-path law is lossy (TV 0.43 on the "
                             "tiny suite, transport.exact.strings). Use tli (jitted) or slem (host-stepped)")
        if rule == "omnidraft":
            raise ValueError("--cross-vocab omnidraft: OmniDraft's n-gram cache verifies a merged draft with the "
                             "product of the drafter's probabilities along one cached n-gram, which is not the law "
                             "the draft came from: lossy at T > 0 (TV 0.013-0.16 at T = 1 on the tiny suite, "
                             "transport.exact.strings), and at T = 0 it accepts what tli and slem accept. Use tli "
                             "or slem")
        return dataclasses.replace(self, cross_vocab=rule)

    def codecs(self, target: TargetFacts):
        """(target codec, drafter codec): each model's token bytes and tokenizer, for SLEM's re-encoding."""
        from specjax.apps.grammar import vocabulary_bytes
        from specjax.crossvocab.slem import tokenizer_codec
        return tuple(tokenizer_codec(m.tokenizer, vocabulary_bytes(m.tokenizer, m.config.vocab_size))
                     for m in (target, self.target))

    def fit(self, target: TargetFacts) -> None:
        vocab = self.target.config.vocab_size
        if self.cross_vocab is None:
            if vocab != target.config.vocab_size:
                raise ValueError(f"drafter {self.target.name} has vocabulary {vocab}, the target {target.label} "
                                 f"{target.config.vocab_size}: a draft model must share the target's vocabulary, "
                                 "or draft across vocabularies with --cross-vocab tli")
            return
        for model in (target, self.target):
            if not model.has_tokenizer:
                raise ValueError(f"drafting across vocabularies reads both models' token strings: {model.label} has "
                                 "no tokenizer")
        if self.cross_vocab == "slem":
            probe = "The quick brown fox, 42 times.\n"          # SLEM re-encodes drafted text: bytes must survive
            for model, codec in zip((target, self.target), self.codecs(target)):
                if codec.decode(codec.encode(probe.encode())) != probe.encode():
                    raise ValueError(f"SLEM re-encodes text, but {model.label}'s tokenizer does not give back the "
                                     f"bytes it encodes ({probe!r})")
        overlap = self.vocab_pair(target)[1]
        if overlap.shared < MIN_SHARED_TOKENS:
            raise ValueError(f"drafter {self.target.name} shares {overlap.shared} tokens with {target.label}: "
                             f"token-level intersection needs at least {MIN_SHARED_TOKENS}")

    def vocab_pair(self, target: TargetFacts):
        """(VocabMap, Overlap) from the target's vocabulary to this drafter's, built once per pair of sources."""
        return _vocab_pair(target, self.target)

    def build(self, target: LoadedTarget, seed: int, dtype: str | None, in_hybrid: bool = False) -> Handle:
        drafter = load_target(self.target, seed, dtype=dtype).handle
        if self.cross_vocab in (None, "slem"):          # SLEM's drafter drafts in its own vocabulary
            return drafter
        from specjax.crossvocab import cross_vocab
        return cross_vocab(drafter, self.vocab_pair(target)[0])


_VOCAB_PAIRS: dict = {}


def _vocab_pair(target: TargetFacts, drafter: TargetSpec):
    """The vocabulary map of a (target, drafter) pair, cached by the pair's config and drafter source. Each target
    token reads as at most 4 drafter tokens (Gemma 3 -> SmolLM2: 78% of the vocabulary, nearly all English text)."""
    from specjax.apps.grammar import vocabulary_bytes
    from specjax.crossvocab import vocab_map
    from specjax.model.io.tokenizer import byte_fallback_ids

    key = (target.label, target.config.vocab_size, drafter.source, drafter.config.vocab_size)
    if key not in _VOCAB_PAIRS:
        t_tok, d_tok = getattr(target, "tokenizer", None), drafter.tokenizer

        def spellings(tokenizer, size):           # a model may have more logit rows than its tokenizer has tokens
            found = vocabulary_bytes(tokenizer, size)[:size]
            return found + [None] * (size - len(found))

        _VOCAB_PAIRS[key] = vocab_map(
            spellings(t_tok, target.config.vocab_size), spellings(d_tok, drafter.config.vocab_size),
            max_pieces=4, target_byte_tokens=byte_fallback_ids(t_tok) if t_tok is not None else (),
            drafter_byte_tokens=byte_fallback_ids(d_tok) if d_tok is not None else ())
    return _VOCAB_PAIRS[key]


@dataclass(frozen=True)
class HybridSpec:
    """`A+B+...`: drafter A with the best proposal of each later part promoted (`specjax.runners.hybrid`)."""

    parts: tuple[DrafterSpec, ...]
    """A (any single drafter), then one or more `ProposalSpec`s."""

    @property
    def name(self) -> str:
        return "+".join(part.name for part in self.parts)

    def as_tuple(self) -> tuple[str, Any]:
        return "hybrid", [part.as_tuple() for part in self.parts]

    def fit(self, target: TargetFacts) -> None:
        for part in self.parts:
            part.fit(target)

    def build(self, target: LoadedTarget, seed: int, dtype: str | None, in_hybrid: bool = False) -> Handle:
        from specjax.runners.hybrid import hybrid_handle
        drafter = self.parts[0].build(target, seed, dtype)
        for part in self.parts[1:]:
            drafter = hybrid_handle(drafter, part.build(target, seed, dtype, in_hybrid=True))
        return drafter


DrafterSpec = Union[EagleSpec, EarlyExitSpec, ProposalSpec, ModelDrafterSpec, HybridSpec]


# the forms `head:N` with a positive integer N, and the spec each makes
_COUNTED = {"eagle-lowrank": lambda n: EagleSpec(rank=n), "early-exit": EarlyExitSpec,
            "lookup": lambda n: ProposalSpec("lookup", n)}


def _single_drafter(name: str) -> DrafterSpec:
    """The spec of a drafter name without `+`."""
    head, _, arg = name.partition(":")
    if name in ("eagle", "eagle-full"):
        return EagleSpec(trim=name == "eagle")
    if name in DEFAULT_NGRAM:
        return ProposalSpec(name, DEFAULT_NGRAM[name])
    if head in DEFAULT_NGRAM:
        if not arg.isdigit() or not 1 <= int(arg) <= 16:
            raise ValueError(f"drafter {name!r}: {head} takes a context length in [1, 16], e.g. {head}:4")
        return ProposalSpec(head, int(arg))
    if head in _COUNTED:
        if not arg.isdigit() or int(arg) < 1:
            raise ValueError(f"drafter {name!r}: {head} takes a positive integer, e.g. {head}:4")
        return _COUNTED[head](int(arg))
    if head == "model" and arg:
        return ModelDrafterSpec(target_spec(arg))
    raise ValueError(f"unknown drafter {name!r}; forms: {', '.join(DRAFTER_FORMS)}")


def drafter_spec(name: str) -> DrafterSpec:
    """Parse a drafter name (a `model:` part's configuration is read, no weights); ValueError saying why. Its
    `fit(target)` then checks it against a target."""
    if "+" not in name:
        return _single_drafter(name)
    parts = tuple(_single_drafter(part) for part in name.split("+"))
    if any(not isinstance(part, ProposalSpec) for part in parts[1:]):
        raise ValueError(f"hybrid drafter {name!r}: every part after the first must be one of "
                         f"{', '.join(PROPOSAL_KINDS)} (an n-gram or retrieval drafter)")
    return HybridSpec(parts)


def parse_drafter(name: str) -> tuple[str, Any]:
    """(kind, argument) of a drafter name (`drafter_spec` as a tuple, e.g. ("lookup", 3), ("hybrid", [...]))."""
    return drafter_spec(name).as_tuple()


def default_drafter(target: TargetSpec) -> str:
    """The drafter named when none is: the shipped EAGLE head where it fits (SmolLM2), a random preset's `-draft`
    partner (random:byte-small -> model:random:byte-small-draft), else ANY_TARGET_DRAFTER (prompt lookup)."""
    if eagle_fits(target.config):
        return "eagle"
    if target.kind == "random" and f"{target.source}-draft" in NAMED_CONFIGS:
        return f"model:random:{target.source}-draft"
    return ANY_TARGET_DRAFTER
