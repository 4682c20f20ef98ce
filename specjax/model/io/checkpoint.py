"""Orbax checkpoints of parameters + optimizer state + step, with a JSON sidecar for the model config.

Parameters are stored as a flat `{path: array}` dict so a mismatch can be reported by name: restoring into a
config whose parameters differ (missing, extra, or another shape) raises ValueError naming the parameter before
any array is read. Templates that carry shardings (`jax.ShapeDtypeStruct(..., sharding=)`, or `restore_model(...,
mesh=)`) are restored by orbax straight into them: each device reads its own shard.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jax.sharding import Mesh

from specjax.model.config import ModelConfig
from specjax.model.io.weights import abstract_model, model_from_params, model_params
from specjax.model.decoder import LlamaLM
from specjax.model.layout import declared_axes, model_layout

_META = "specjax_meta.json"
_STATE = "state"


def _key_str(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """Leaf path -> shape of a pytree of arrays (or ShapeDtypeStructs / orbax metadata)."""
    return {_key_str(p): tuple(leaf.shape) for p, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def check_matches(saved: dict[str, tuple[int, ...]], wanted: dict[str, tuple[int, ...]], what: str) -> None:
    """ValueError naming the first parameter that is missing, extra or of another shape."""
    for key in sorted(set(wanted) | set(saved)):
        if key not in saved:
            raise ValueError(f"checkpoint {what} has no parameter {key!r} (the config needs shape {wanted[key]})")
        if key not in wanted:
            raise ValueError(f"checkpoint {what} has parameter {key!r} {saved[key]} that the config does not have")
        if saved[key] != wanted[key]:
            raise ValueError(f"checkpoint {what} parameter {key!r} has shape {saved[key]}, the config needs "
                             f"{wanted[key]}")


def save_checkpoint(directory: str | Path, params: Any, opt_state: Any = None, *, step: int = 0,
                    config: ModelConfig | None = None, extra: dict | None = None) -> Path:
    """Write `{params, opt_state}` (any pytrees of arrays) and metadata to `directory` (created; must not exist)."""
    directory = Path(directory).absolute()
    if directory.exists():
        raise ValueError(f"checkpoint directory {directory} already exists")
    directory.mkdir(parents=True)
    tree = {"params": params, "opt_state": opt_state if opt_state is not None else {}}
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(directory / _STATE, tree)
        ckpt.wait_until_finished()
    meta = {"step": int(step), "config": dataclasses.asdict(config) if config is not None else None,
            "has_opt_state": opt_state is not None, "extra": extra or {}}
    (directory / _META).write_text(json.dumps(meta, indent=1))
    return directory


def read_meta(directory: str | Path) -> dict:
    """The JSON sidecar: step, config (dict or None), has_opt_state, extra."""
    path = Path(directory) / _META
    if not path.is_file():
        raise ValueError(f"{directory} is not a specjax checkpoint (no {_META})")
    return json.loads(path.read_text())


def restore_checkpoint(directory: str | Path, params_like: Any, opt_state_like: Any = None
                       ) -> tuple[Any, Any, int]:
    """Restore `(params, opt_state, step)` shaped like the given templates (arrays or ShapeDtypeStructs, in their
    dtypes and, when they carry one, their shardings).

    ValueError names the first mismatched parameter; opt_state is None when `opt_state_like` is None.
    """
    directory = Path(directory).absolute()
    meta = read_meta(directory)
    with ocp.StandardCheckpointer() as ckpt:
        saved = ckpt.metadata(directory / _STATE)
        saved_tree = getattr(saved, "item_metadata", saved)
        saved_tree = getattr(saved_tree, "tree", saved_tree)
        check_matches(flat_shapes(saved_tree["params"]), flat_shapes(params_like), "params")
        want_opt = opt_state_like is not None
        if want_opt and not meta["has_opt_state"]:
            raise ValueError(f"checkpoint {directory} holds no optimizer state")
        if want_opt:
            check_matches(flat_shapes(saved_tree["opt_state"]), flat_shapes(opt_state_like), "optimizer state")
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype,
                                                              sharding=getattr(x, "sharding", None)), {
            "params": params_like, "opt_state": opt_state_like if want_opt else saved_tree["opt_state"]})
        if not want_opt:
            abstract["opt_state"] = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype),
                                                 saved_tree["opt_state"])
        tree = ckpt.restore(directory / _STATE, abstract)
    return tree["params"], (tree["opt_state"] if want_opt else None), int(meta["step"])


def save_model(directory: str | Path, model: LlamaLM, opt_state: Any = None, *, step: int = 0,
               extra: dict | None = None) -> Path:
    """Checkpoint a `LlamaLM` (flat `{path: array}` params) with its config and optional optimizer state."""
    return save_checkpoint(directory, model_params(model), opt_state, step=step, config=model.config, extra=extra)


def restore_model(directory: str | Path, config: ModelConfig | None = None, opt_state_like: Any = None, *,
                  mesh: Mesh | None = None) -> tuple[LlamaLM, Any, int]:
    """`(model, opt_state, step)` from `save_model`, parameters in the config's dtype. `config` defaults to the
    stored one; a checkpoint that does not match it raises ValueError naming the parameter. With a mesh, each
    parameter is restored straight into its sharding (a drafter's rule: split where the mesh divides the model,
    else replicated)."""
    meta = read_meta(directory)
    if config is None:
        if meta["config"] is None:
            raise ValueError(f"checkpoint {directory} stores no config; pass one")
        config = ModelConfig(**meta["config"])
    layout = None if mesh is None else model_layout(config, mesh, strict=False)
    wanted = {}
    for path, var in nnx.to_flat_state(nnx.state(abstract_model(config), nnx.Param)):
        value = var.get_value()
        sharding = None if layout is None else layout.sharding(declared_axes(var))
        wanted[_key_str(path)] = jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)
    params, opt_state, step = restore_checkpoint(directory, wanted, opt_state_like)
    return model_from_params(config, params, source=str(directory), mesh=mesh, strict=False), opt_state, step
