"""Stored next-token laws of a target and its drafters at real contexts (`.npz`), for the real-law gap study
(`transport.studies.law_gap`), which re-runs from the file without any model.

The file stores **logits**, not laws: full vocabulary, float32, exactly as the models produced them. A law at
temperature T is `softmax(logits / T)` in float64, the law the decode loop samples from at that temperature
(`specjax.sampling.warp_logits`, which applies T to target and drafter alike), so every α* and every verifier
acceptance of the study is exact for the stored pair at any T > 0 — nothing is truncated. (Keeping only the top-m
tokens of p ∪ q with one "other" bucket would change α* and the verifiers' acceptances, which depend on the whole
laws.) -inf logits are tokens a drafter never drafts (VocabTrim): probability exactly 0.

Keys (N contexts, V vocabulary, D drafters):
  target_logits `[N, V]` float32; drafter_logits `[D, N, V]` float32; drafters `[D]` str (drafter names);
  target str; temperatures `[T]` float (> 0; the study's default temperatures); prompt_set `[N]` str;
  prompt_index `[N]` int (index in its set); position `[N]` int (the context is the prompt and the first
  `position` answer tokens); token `[N]` int (the target's greedy token there); version int.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

VERSION = 1
ARRAY_KEYS = ("target_logits", "drafter_logits", "drafters", "temperatures", "prompt_set", "prompt_index",
              "position", "token")


@dataclass(frozen=True)
class StoredLaws:
    """Logits of a target and D drafters at N real contexts, with where each context comes from (see the module
    docstring for shapes). Construction checks everything and raises ValueError on a malformed file."""

    target: str
    drafters: tuple[str, ...]
    temperatures: tuple[float, ...]
    target_logits: np.ndarray
    drafter_logits: np.ndarray
    prompt_set: np.ndarray
    prompt_index: np.ndarray
    position: np.ndarray
    token: np.ndarray

    def __post_init__(self) -> None:
        _check(self)

    @property
    def vocab_size(self) -> int:
        return self.target_logits.shape[1]

    @property
    def num_contexts(self) -> int:
        return self.target_logits.shape[0]

    @property
    def prompt_sets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.prompt_set.tolist()))

    def laws(self, drafter: str, temperature: float, rows: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """(p, q) `[n, V]` float64 at `temperature` for the contexts `rows` (default: all)."""
        if drafter not in self.drafters:
            raise ValueError(f"no drafter {drafter!r} in the file; it holds {self.drafters}")
        if not (isinstance(temperature, (int, float)) and np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be > 0 (T = 0 laws are one-hot: every rule accepts iff the "
                             f"argmaxes agree), got {temperature!r}")
        rows = np.arange(self.num_contexts) if rows is None else np.asarray(rows)
        d = self.drafters.index(drafter)
        return softmax64(self.target_logits[rows], temperature), softmax64(self.drafter_logits[d, rows], temperature)

    def save(self, path: str | Path) -> Path:
        """Write the compressed `.npz`; returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        with path.open("wb") as fh:                       # a file object: numpy would append .npz to other names
            np.savez_compressed(fh, version=np.int64(VERSION), **arrays)
        return path


def softmax64(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) in float64 `[n, V]`; -inf logits get probability exactly 0."""
    z = np.asarray(logits, np.float64) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def load_laws(path: str | Path) -> StoredLaws:
    """Read a file written by `StoredLaws.save`; ValueError on a missing key, mismatched shapes or bad logits."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no stored-laws file at {path}")
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in ("version", "target") + ARRAY_KEYS if k not in f.files]
        if missing:
            raise ValueError(f"{path} is not a stored-laws file: missing {missing}")
        if int(f["version"]) != VERSION:
            raise ValueError(f"{path}: stored-laws version {int(f['version'])}, this code reads {VERSION}")
        return StoredLaws(target=str(f["target"]), drafters=tuple(str(d) for d in f["drafters"]),
                          temperatures=tuple(float(t) for t in np.atleast_1d(f["temperatures"])),
                          **{k: f[k] for k in ARRAY_KEYS if k not in ("drafters", "temperatures")})


def _check(s: StoredLaws) -> None:
    p, q = np.asarray(s.target_logits), np.asarray(s.drafter_logits)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 2:
        raise ValueError(f"target_logits must be [N, V] with N >= 1, V >= 2, got shape {p.shape}")
    n, v = p.shape
    if q.ndim != 3 or q.shape[1] != n:
        raise ValueError(f"drafter_logits must be [D, N, V] with N = {n} contexts, got shape {q.shape}")
    if q.shape[2] != v:
        raise ValueError(f"drafter vocabulary {q.shape[2]} differs from the target's {v}")
    if len(s.drafters) != q.shape[0] or len(set(s.drafters)) != len(s.drafters):
        raise ValueError(f"drafters {s.drafters} must name the {q.shape[0]} drafter_logits rows, once each")
    for name, x in (("target_logits", p), ("drafter_logits", q)):
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"{name} must be floating point, got {x.dtype}")
        if np.isnan(x).any() or np.isposinf(x).any():
            raise ValueError(f"{name} holds NaN or +inf: not the logits of a law")
        if not np.isfinite(x).any(axis=-1).all():
            raise ValueError(f"{name} has a row with no finite logit: no law")
    for name in ("prompt_set", "prompt_index", "position", "token"):
        if np.shape(getattr(s, name)) != (n,):
            raise ValueError(f"{name} must have one entry per context ({n}), got shape {np.shape(getattr(s, name))}")
    if not s.temperatures or not all(np.isfinite(t) and t > 0 for t in s.temperatures):
        raise ValueError(f"temperatures must be a non-empty list of numbers > 0, got {s.temperatures}")
