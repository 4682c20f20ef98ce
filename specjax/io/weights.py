"""Put named float arrays into a `LlamaLM` without random initialisation, and compare a model with a config.

Loaders (GGUF, safetensors) translate their own tensor names into Hugging Face Llama names
(`model.layers.0.self_attn.q_proj.weight`, PyTorch `[out, in]` layout); `model_from_hf_tensors` maps those onto the
specjax parameter paths (`layers/0/attn/q_proj/kernel`, `[in, out]`) and checks every shape before building.
"""
from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from specjax.config import ModelConfig
from specjax.model import LlamaLM

_ATTN = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "o_proj": "o_proj"}
_MLP = ("gate_proj", "up_proj", "down_proj")


def hf_name_map(config: ModelConfig) -> dict[str, tuple[str, bool]]:
    """Hugging Face tensor name -> (specjax parameter path `a/b/c`, transpose?) for every parameter of `config`."""
    m: dict[str, tuple[str, bool]] = {"model.embed_tokens.weight": ("embed/embedding", False),
                                      "model.norm.weight": ("final_norm/scale", False)}
    if not config.tie_embeddings:
        m["lm_head.weight"] = ("lm_head/kernel", True)
    for i in range(config.n_layers):
        hf, sj = f"model.layers.{i}", f"layers/{i}"
        m[f"{hf}.input_layernorm.weight"] = (f"{sj}/attn_norm/scale", False)
        m[f"{hf}.post_attention_layernorm.weight"] = (f"{sj}/mlp_norm/scale", False)
        for name in _ATTN:
            m[f"{hf}.self_attn.{name}.weight"] = (f"{sj}/attn/{name}/kernel", True)
        if config.attention_bias:
            for name in ("q_proj", "k_proj", "v_proj"):
                m[f"{hf}.self_attn.{name}.bias"] = (f"{sj}/attn/{name}/bias", False)
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


def model_from_params(config: ModelConfig, params: Mapping[str, np.ndarray], *, source: str = "weights"
                      ) -> LlamaLM:
    """Build a `LlamaLM` from `params` keyed by specjax path; ValueError names any missing/extra/misshaped one."""
    model = abstract_model(config)
    graphdef, state = nnx.split(model)
    flat = nnx.to_flat_state(state)
    expected = {_path_str(p): v for p, v in flat}
    missing = sorted(set(expected) - set(params))
    extra = sorted(set(params) - set(expected))
    if missing:
        raise ValueError(f"{source}: parameter {missing[0]!r} is missing for config {config} "
                         f"({len(missing)} missing in all)")
    if extra:
        raise ValueError(f"{source}: parameter {extra[0]!r} is not part of config {config} ({len(extra)} extra)")
    leaves = []
    for path, var in flat:
        key = _path_str(path)
        want = tuple(var.get_value().shape)
        got = tuple(np.shape(params[key]))
        if want != got:
            raise ValueError(f"{source}: parameter {key!r} has shape {got}, the config needs {want}")
        leaves.append((path, var.replace(jnp.asarray(params[key], jnp.float32))))
    return nnx.merge(graphdef, nnx.from_flat_state(leaves))


def model_from_hf_tensors(config: ModelConfig, tensors: Mapping[str, np.ndarray], *, source: str = "checkpoint"
                          ) -> LlamaLM:
    """`LlamaLM` from Hugging Face-named tensors (PyTorch `[out, in]` layout). Ignores rotary buffers and, for
    tied models, a redundant `lm_head.weight`; any other unknown tensor raises ValueError."""
    name_map = hf_name_map(config)
    params = {}
    for name, array in tensors.items():
        if name not in name_map:
            if name.endswith("rotary_emb.inv_freq") or (name == "lm_head.weight" and config.tie_embeddings):
                continue
            raise ValueError(f"{source}: tensor {name!r} has no place in config {config}")
        path, transpose = name_map[name]
        array = np.asarray(array, np.float32)
        params[path] = array.T if transpose else array
    missing = sorted(set(name_map) - set(tensors))
    if missing:
        raise ValueError(f"{source}: tensor {missing[0]!r} is missing ({len(missing)} missing in all)")
    return model_from_params(config, params, source=source)


def model_params(model: LlamaLM) -> dict[str, np.ndarray]:
    """specjax parameter path -> numpy array (a host copy)."""
    state = nnx.state(model, nnx.Param)
    return {_path_str(p): np.asarray(v.get_value()) for p, v in nnx.to_flat_state(state)}


def hf_tensors_from_model(model: LlamaLM) -> dict[str, np.ndarray]:
    """Hugging Face-named tensors (`[out, in]` layout) of a model: the inverse of `model_from_hf_tensors`."""
    params = model_params(model)
    return {hf: (params[sj].T if tr else params[sj]) for hf, (sj, tr) in hf_name_map(model.config).items()}
