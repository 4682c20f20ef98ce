"""Put named arrays into a `LlamaLM` without random initialisation, parameter by parameter, each straight into its
target sharding and dtype, and compare a model with a config.

Loaders (GGUF, safetensors) translate their own tensor names into Hugging Face names
(`model.layers.0.self_attn.q_proj.weight`, PyTorch `[out, in]` layout) and hand over a mapping that reads lazily
(memory maps, dequantize-on-access); `model_from_hf_tensors` maps those names onto the specjax parameter paths
(`layers/0/attn/q_proj/kernel`, `[in, out]`), checks every name before reading anything and every shape before
placing it, and reads each tensor only as the device shards it lands in (`specjax.model.layout.place`).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
from flax import nnx
from jax.sharding import Mesh

from specjax.model.config import ModelConfig
from specjax.model.families import norm_offset
from specjax.model.decoder import LlamaLM
from specjax.model.layout import declared_axes, model_layout, place

_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
_MLP = ("gate_proj", "up_proj", "down_proj")


def hf_name_map(config: ModelConfig) -> dict[str, tuple[str, bool]]:
    """Hugging Face tensor name -> (specjax parameter path `a/b/c`, transpose?) for every parameter of `config`."""
    m: dict[str, tuple[str, bool]] = {"model.embed_tokens.weight": ("embed/embedding", False),
                                      "model.norm.weight": ("final_norm/scale", False)}
    if not config.tie_embeddings:
        m["lm_head.weight"] = ("lm_head/kernel", True)
    norms = {"input_layernorm": "attn_norm", "post_attention_layernorm": "mlp_norm"}
    if config.post_norms:      # Gemma: post_attention_layernorm normalises the attention output
        norms = {"input_layernorm": "attn_norm", "post_attention_layernorm": "attn_post_norm",
                 "pre_feedforward_layernorm": "mlp_norm", "post_feedforward_layernorm": "mlp_post_norm"}
    for i in range(config.n_layers):
        hf, sj = f"model.layers.{i}", f"layers/{i}"
        for name, ours in norms.items():
            m[f"{hf}.{name}.weight"] = (f"{sj}/{ours}/scale", False)
        for name in _ATTN:
            m[f"{hf}.self_attn.{name}.weight"] = (f"{sj}/attn/{name}/kernel", True)
        if config.attention_bias:
            for name in ("q_proj", "k_proj", "v_proj"):
                m[f"{hf}.self_attn.{name}.bias"] = (f"{sj}/attn/{name}/bias", False)
        if config.qk_norm:
            for name in ("q_norm", "k_norm"):
                m[f"{hf}.self_attn.{name}.weight"] = (f"{sj}/attn/{name}/scale", False)
        for name in _MLP:
            m[f"{hf}.mlp.{name}.weight"] = (f"{sj}/mlp/{name}/kernel", True)
    return m


def _path_str(path: tuple) -> str:
    return "/".join(str(getattr(p, "key", p)) for p in path)


def abstract_model(config: ModelConfig) -> LlamaLM:
    """A `LlamaLM` whose parameters are shape/dtype placeholders (nothing is initialised)."""
    return nnx.eval_shape(lambda: LlamaLM(config, rngs=nnx.Rngs(0)))


def param_shapes(model_or_config: LlamaLM | ModelConfig) -> dict[str, tuple[int, ...]]:
    """specjax parameter path -> shape."""
    model = abstract_model(model_or_config) if isinstance(model_or_config, ModelConfig) else model_or_config
    state = nnx.state(model, nnx.Param)
    return {_path_str(p): tuple(v.get_value().shape) for p, v in nnx.to_flat_state(state)}


def build_model(config: ModelConfig, read: Callable[[str], Any], *, source: str = "weights",
                mesh: Mesh | None = None, strict: bool = True) -> LlamaLM:
    """A `LlamaLM` whose parameter at path `p` is `read(p)` (numpy array, memory map or jax array), cast to the
    config's declared dtype and placed, one parameter at a time, straight into the sharding `mesh` gives it
    (`specjax.model.layout.model_layout`; `strict=False` replicates a model the mesh cannot split). ValueError names a
    parameter whose shape does not match the config."""
    layout = None if mesh is None else model_layout(config, mesh, strict=strict)
    graphdef, state = nnx.split(abstract_model(config))
    leaves = []
    for path, var in nnx.to_flat_state(state):
        key, want = _path_str(path), var.get_value()
        value = read(key)
        if tuple(np.shape(value)) != tuple(want.shape):
            raise ValueError(f"{source}: parameter {key!r} has shape {tuple(np.shape(value))}, the config needs "
                             f"{tuple(want.shape)}")
        sharding = None if layout is None else layout.sharding(declared_axes(var))
        leaves.append((path, var.replace(place(value, sharding, want.dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def _check_names(expected: set[str], given: set[str], source: str, what: str, config: ModelConfig) -> None:
    missing, extra = sorted(expected - given), sorted(given - expected)
    if missing:
        raise ValueError(f"{source}: {what} {missing[0]!r} is missing for config {config} ({len(missing)} missing "
                         "in all)")
    if extra:
        raise ValueError(f"{source}: {what} {extra[0]!r} has no place in config {config} ({len(extra)} extra)")


def model_from_params(config: ModelConfig, params: Mapping[str, Any], *, source: str = "weights",
                      mesh: Mesh | None = None, strict: bool = True) -> LlamaLM:
    """Build a `LlamaLM` from `params` keyed by specjax path; ValueError names any missing/extra/misshaped one."""
    _check_names(set(param_shapes(config)), set(params), source, "parameter", config)
    return build_model(config, params.__getitem__, source=source, mesh=mesh, strict=strict)


def _ignorable(name: str, config: ModelConfig) -> bool:
    """Rotary buffers, and a tied model's redundant head."""
    return name.endswith("rotary_emb.inv_freq") or (name == "lm_head.weight" and config.tie_embeddings)


def model_from_hf_tensors(config: ModelConfig, tensors: Mapping[str, Any], *, source: str = "checkpoint",
                          mesh: Mesh | None = None) -> LlamaLM:
    """`LlamaLM` from Hugging Face-named tensors (PyTorch `[out, in]` layout; a lazy mapping is read one tensor, and
    one device shard, at a time). Every name is checked before any tensor is read: a missing or unknown tensor
    raises ValueError naming it."""
    name_map = hf_name_map(config)
    _check_names(set(name_map), {n for n in tensors if not _ignorable(n, config)}, source, "tensor", config)
    by_path = {path: (hf, transpose) for hf, (path, transpose) in name_map.items()}
    offset = norm_offset(config)

    def read(path: str) -> Any:
        hf, transpose = by_path[path]
        array = tensors[hf]
        if offset and path.endswith("norm/scale"):
            array = np.asarray(array, np.float32) + offset
        return array.T if transpose else array

    return build_model(config, read, source=source, mesh=mesh)


def model_params(model: LlamaLM) -> dict[str, np.ndarray]:
    """specjax parameter path -> numpy array (a host copy)."""
    state = nnx.state(model, nnx.Param)
    return {_path_str(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def hf_tensors_from_model(model: LlamaLM) -> dict[str, np.ndarray]:
    """Hugging Face-named tensors (`[out, in]` layout) of a model: the inverse of `model_from_hf_tensors`."""
    params, offset = model_params(model), norm_offset(model.config)
    out = {}
    for hf, (sj, transpose) in hf_name_map(model.config).items():
        array = params[sj] - offset if offset and sj.endswith("norm/scale") else params[sj]
        out[hf] = array.T if transpose else array
    return out


def cast_model(model: LlamaLM, dtype: str, cache_dtype: str | None = None) -> LlamaLM:
    """The same model with weights (and KV cache) in another dtype; each parameter keeps its sharding, norm
    scales stay float32."""
    config = model.config.replace(dtype=dtype, cache_dtype=cache_dtype)
    params = {_path_str(p): v.get_value() for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    return build_model(config, params.__getitem__, source="cast")
