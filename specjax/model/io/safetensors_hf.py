"""Hugging Face checkpoint directories (config.json + one or several *.safetensors, with
`model.safetensors.index.json` when sharded) for every family in `specjax.model.families`.

The safetensors format is read directly (8-byte header length, JSON header, raw little-endian tensors), so loading
needs no torch and no `safetensors` package. Tensors are memory-mapped, one at a time: `load_hf_model(..., mesh=)`
reads each tensor only as the device shards it lands in, so no host ever holds a full copy of the model.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterator, Mapping

import ml_dtypes
import numpy as np
from jax.sharding import Mesh

from specjax.model.config import ModelConfig
from specjax.model.families import config_from_hf
from specjax.model.io.weights import model_from_hf_tensors
from specjax.model.decoder import LlamaLM

__all__ = ["SafetensorsCheckpoint", "config_from_hf", "load_hf_config", "load_hf_model", "read_hf_config",
           "read_safetensors"]

INDEX_NAME = "model.safetensors.index.json"
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _header(path: Path) -> tuple[dict, int]:
    """(JSON header, byte offset of the data) of one .safetensors file."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", head)
        if length > path.stat().st_size - 8:
            raise ValueError(f"{path}: not a safetensors file (bad header length)")
        return json.loads(f.read(length)), 8 + length


class SafetensorsCheckpoint(Mapping[str, np.ndarray]):
    """The tensors of a checkpoint directory (or one file) by name, read lazily: indexing returns a read-only
    memory map of that tensor in its stored dtype (BF16 as `ml_dtypes.bfloat16`), so only the slices a caller
    touches are read from disk. With an index json, its `weight_map` must name exactly the tensors the files hold."""

    def __init__(self, path: str | Path):
        path = Path(path)
        index = path / INDEX_NAME if path.is_dir() else None
        if index is not None and index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted({path / name for name in weight_map.values()})
            for f in files:
                if not f.is_file():
                    raise ValueError(f"{index} names {f.name}, which is missing")
        else:
            weight_map = None
            files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
        if not files:
            raise ValueError(f"{path}: no *.safetensors files")
        self._entries: dict[str, tuple[Path, np.dtype, tuple[int, ...], int]] = {}
        for f in files:
            header, base = _header(f)
            for name, info in header.items():
                if name == "__metadata__":
                    continue
                if info["dtype"] not in _DTYPES:
                    raise ValueError(f"{f}: tensor {name!r} has unsupported dtype {info['dtype']}")
                begin, _ = info["data_offsets"]
                self._entries[name] = (f, np.dtype(_DTYPES[info["dtype"]]), tuple(info["shape"]), base + begin)
        if weight_map is not None:
            for name, file in weight_map.items():
                if name not in self._entries or self._entries[name][0].name != file:
                    raise ValueError(f"{index} puts tensor {name!r} in {file}, which does not hold it")

    def __getitem__(self, name: str) -> np.ndarray:
        path, dtype, shape, offset = self._entries[name]
        if 0 in shape:
            return np.zeros(shape, dtype)
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._entries[name][2]


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """All tensors of one .safetensors file as numpy arrays in memory (BF16 widened to float32)."""
    tensors = SafetensorsCheckpoint(path)
    out = {}
    for name in tensors:
        array = np.array(tensors[name])
        out[name] = array.astype(np.float32) if array.dtype == ml_dtypes.bfloat16 else array
    return out


def read_hf_config(directory: str | Path) -> dict:
    """The `config.json` dict of a Hugging Face checkpoint directory (ValueError if there is none)."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ValueError(f"{directory}: no config.json (expected a Hugging Face checkpoint directory)")
    return json.loads(path.read_text())


def load_hf_config(directory: str | Path) -> ModelConfig:
    """`ModelConfig` of a Hugging Face checkpoint directory."""
    return config_from_hf(read_hf_config(directory))


def load_hf_model(directory: str | Path, *, dtype: str | None = None, mesh: Mesh | None = None) -> LlamaLM:
    """A `LlamaLM` from a Hugging Face checkpoint directory (single or sharded safetensors), in `dtype` (default
    float32), each tensor read and placed straight into its sharding on `mesh` (ValueError before any tensor is
    read when the mesh cannot split the model, or when a tensor is missing or has no place in the config)."""
    config = load_hf_config(directory)
    if dtype is not None:
        config = config.replace(dtype=dtype)
    return model_from_hf_tensors(config, SafetensorsCheckpoint(directory), source=str(directory), mesh=mesh)
