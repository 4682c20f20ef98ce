"""Sharded loading on 8 host CPU devices (a subprocess: the device count is set before jax starts): a multi-file
safetensors checkpoint with its index json is read tensor by tensor, each device reading only its own shard of a
split tensor, into the layout `generate` uses; orbax drafter checkpoints restore straight into their shardings."""
import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    from safetensors.numpy import save_file
    assert len(jax.devices()) == 8
    from specjax.config import named_config
    from specjax.io.checkpoint import restore_model, save_model
    from specjax.io.safetensors_hf import INDEX_NAME, SafetensorsCheckpoint, load_hf_model
    from specjax.io.weights import hf_tensors_from_model, model_from_hf_tensors
    from specjax.model import init_model
    from specjax.sharding import make_mesh, model_layout

    root = Path(sys.argv[1])
    config = named_config("tiny-mp").replace(tie_embeddings=False)
    model = init_model(config, 0)
    tensors = {k: np.ascontiguousarray(v) for k, v in hf_tensors_from_model(model).items()}
    names = sorted(tensors)
    files = {f"model-{i + 1:05d}-of-00003.safetensors": names[i::3] for i in range(3)}
    for file, part in files.items():
        save_file({n: tensors[n] for n in part}, str(root / file))
    (root / INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": {n: f for f, p in files.items() for n in p}}))
    (root / "config.json").write_text(json.dumps(dict(
        model_type="llama", vocab_size=32, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=4, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False)))

    class Probe:
        # a lazily read tensor that records the largest block any caller materialises
        def __init__(self, array, log, name):
            self.array, self.log, self.name = array, log, name
        shape = property(lambda self: self.array.shape)
        T = property(lambda self: Probe(self.array.T, self.log, self.name))
        def __getitem__(self, index):
            block = np.asarray(self.array[index])
            self.log[self.name] = max(self.log.get(self.name, 0), block.size)
            return block
        def __array__(self, dtype=None, copy=None):
            self.log[self.name] = self.array.size
            return np.asarray(self.array, dtype)

    class Probed(dict):
        def __init__(self, lazy, log):
            super().__init__({n: None for n in lazy})
            self.lazy, self.log = lazy, log
        def __getitem__(self, name):
            return Probe(self.lazy[name], self.log, name)

    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 32, (2, 7)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(7), (2, 7))
    ref = np.asarray(model(tokens, positions)[0])
    for data, model_size in ((1, 8), (2, 4)):
        mesh = make_mesh(data=data, model=model_size)
        log = {}
        loaded = model_from_hf_tensors(config, Probed(SafetensorsCheckpoint(root), log), mesh=mesh)
        layout = model_layout(config, mesh)
        for hf_name, size in log.items():
            full = tensors[hf_name].size
            split = hf_name.endswith(("q_proj.weight", "o_proj.weight", "mlp.gate_proj.weight", "up_proj.weight",
                                      "down_proj.weight", "embed_tokens.weight", "lm_head.weight"))
            split |= hf_name.endswith(("k_proj.weight", "v_proj.weight")) and 4 % model_size == 0
            assert size == (full // model_size if split else full), (hf_name, size, full)
        q = loaded.layers[1].attn.q_proj.kernel[...]
        assert q.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "model")), 2), q.sharding
        head = loaded.lm_head.kernel[...]
        assert head.sharding.is_equivalent_to(NamedSharding(mesh, P(None, "model")), 2), head.sharding
        np.testing.assert_allclose(np.asarray(loaded(tokens, positions)[0]), ref, atol=1e-5)

    mesh = make_mesh(data=2, model=4)
    half = load_hf_model(root, dtype="bfloat16", mesh=mesh)
    emb = half.embed.embedding[...]
    assert emb.dtype == jnp.bfloat16 and emb.sharding.is_equivalent_to(NamedSharding(mesh, P("model", None)), 2)
    assert half.final_norm.scale[...].dtype == jnp.float32
    try:
        load_hf_model(root, mesh=make_mesh(data=1, model=3))
    except ValueError as e:
        assert "n_heads (8)" in str(e), e
    else:
        raise AssertionError("a model axis of 3 cannot split 8 heads")

    draft = init_model(named_config("tiny-mp-draft"), 1)
    save_model(root / "draft", draft)
    for model_size, spec in ((4, P(None, "model")), (8, P())):          # 4 heads: split on 4, replicated on 8
        mesh = make_mesh(data=8 // model_size, model=model_size)
        restored, _, _ = restore_model(root / "draft", mesh=mesh)
        kernel = restored.layers[0].mlp.gate_proj.kernel[...]
        assert kernel.sharding.is_equivalent_to(NamedSharding(mesh, spec), 2), kernel.sharding
        np.testing.assert_array_equal(np.asarray(kernel), np.asarray(draft.layers[0].mlp.gate_proj.kernel[...]))
    print("LOADING-OK")
""")


def test_sharded_loading(tmp_path):
    pytest.importorskip("safetensors")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "LOADING-OK" in proc.stdout
