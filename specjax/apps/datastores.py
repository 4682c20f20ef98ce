"""Retrieval datastores built from offline corpora, cached on disk.

The code corpus is the Python standard library's own `.py` sources (the running interpreter's, test packages and
site-packages left out): always present, never an evaluation prompt. It is tokenized with the target's tokenizer
and turned into a `specjax.runners.retrieval.Datastore`. Building is deterministic (sorted file list, fixed sort
orders), so the cache key is a hash of the sources, the tokenizer and the build options; a cached datastore is
reloaded from `$SPECJAX_CACHE` (default `~/.cache/specjax`)/datastores/<key>.npz.
"""
from __future__ import annotations

import hashlib
import json
import os
import sysconfig
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from specjax.runners.retrieval import Datastore, NgramTable, build_datastore


def cache_dir() -> Path:
    return Path(os.environ.get("SPECJAX_CACHE", Path.home() / ".cache" / "specjax")) / "datastores"


def stdlib_sources(root: str | Path | None = None) -> list[Path]:
    """The standard library's `.py` files under `root` (default: this interpreter's), sorted, without tests and
    site-packages."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "site-packages", "idle_test", "__pycache__"}
    return sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts))


def corpus_key(texts: Sequence[str], tokenizer: Any, options: dict) -> str:
    """A hash of the corpus texts, the tokenizer's full definition and the build options."""
    h = hashlib.sha256()
    h.update(tokenizer.backend.to_str().encode())
    h.update(json.dumps(options, sort_keys=True).encode())
    for t in texts:
        h.update(hashlib.sha256(t.encode()).digest())
    return h.hexdigest()[:24]


def save_datastore(store: Datastore, path: Path) -> None:
    arrays = {f"{name}_{t.ngram}": np.asarray(getattr(t, name)) for t in store.tables
              for name in ("contexts", "tokens", "counts")}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)                          # atomic: an interrupted build never leaves half a file


def load_datastore(path: Path) -> Datastore:
    with np.load(path) as f:
        ngrams = sorted({int(k.rsplit("_", 1)[1]) for k in f.files})
        return Datastore(tuple(NgramTable(f[f"contexts_{n}"], f[f"tokens_{n}"], f[f"counts_{n}"]) for n in ngrams))


def text_datastore(texts: Sequence[str], tokenizer: Any, *, max_ngram: int = 4, num_proposals: int = 4,
                   min_count: int = 2, verbose: bool = False) -> Datastore:
    """The datastore of `texts` tokenized by `tokenizer` (a `specjax.model.io.tokenizer.Tokenizer`), from the disk cache
    when it was built before."""
    options = dict(max_ngram=max_ngram, num_proposals=num_proposals, min_count=min_count)
    path = cache_dir() / f"{corpus_key(texts, tokenizer, options)}.npz"
    if path.exists():
        return load_datastore(path)
    docs = [e.ids for e in tokenizer.backend.encode_batch(list(texts), add_special_tokens=False)]
    store = build_datastore(docs, **options)
    save_datastore(store, path)
    if verbose:
        print(f"datastore: {sum(map(len, docs))} corpus tokens -> {store.nbytes / 2**20:.0f} MiB at {path}")
    return store


def stdlib_datastore(tokenizer: Any, **options) -> Datastore:
    """The datastore of the Python standard library's sources (see the module docstring)."""
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in stdlib_sources()]
    return text_datastore(texts, tokenizer, **options)
