"""Data- and model-parallel decoding and sharded loading on 8 host CPU devices, in one subprocess (the device count
must be set before jax starts, and one process pays jax's start once):
- meshes (data, model) = (1, 8), (2, 4), (8, 1) return the same tokens as one device for the same key, for chains
  and trees at T = 0 and T = 1; parameters and caches carry the intended shardings;
- a mesh that cannot split the target, a batch the data axis does not divide, or a run over the memory budget
  raises ValueError before anything is traced;
- a multi-file safetensors checkpoint with its index json is read tensor by tensor, each device reading only its
  own shard of a split tensor, into the layout `generate` uses; orbax drafter checkpoints restore straight into
  their shardings; `init_sharded` draws the same weights whatever the layout;
- a drafter of another vocabulary (TLI) decodes the same tokens on a mesh as on one device."""
import os
import subprocess
import sys
import textwrap

from specjax.testing.pairs import FAST_COMPILE_XLA_FLAGS

SCRIPT = textwrap.dedent("""
    import json, os, struct, sys
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec as P
    assert len(jax.devices()) == 8, jax.devices()
    import specjax.decode.loop as decode
    from specjax.model.config import named_config
    from specjax.decode.loop import generate, prefill
    from specjax.model.io.checkpoint import restore_model, save_model
    from specjax.model.io.safetensors_hf import INDEX_NAME, SafetensorsCheckpoint, load_hf_model
    from specjax.model.io.weights import hf_tensors_from_model, model_from_hf_tensors, model_params
    from specjax.model.decoder import init_model
    from specjax.runners.model import as_model, model_handle
    from specjax.sampling import SamplingConfig
    from specjax.parallel.sharding import batch_mesh, init_sharded, make_mesh, shard_decode
    from specjax.methods import make_method

    root = Path(sys.argv[1])
    # one layer: every split (attention, MLP, embedding, head, caches) at half the compile time of two
    target = model_handle(init_model(named_config("tiny-mp").replace(n_layers=1), 0))  # 8 heads, 4 KV heads, V 32
    draft = model_handle(init_model(named_config("tiny-mp-draft"), 1))  # 4 heads, 2 KV heads
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 32, (8, 6)).astype(np.int32)
    lengths = rng.integers(1, 7, 8).astype(np.int32)
    meshes = {(1, 8): make_mesh(data=1, model=8), (2, 4): make_mesh(data=2, model=4), (8, 1): batch_mesh(8)}

    def same(sharding, mesh, *spec):
        return sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), len(spec))

    # 1. layouts: parameters by their logical axes, caches by batch and KV heads, the drafter by its own rule
    for (data, model), mesh in meshes.items():
        t, d, tokens, lens = shard_decode(target, draft, prompts, lengths, mesh)
        p = t.params
        assert same(p["layers"][0]["attn"]["q_proj"]["kernel"][...].sharding, mesh, None, "model")
        assert same(p["layers"][0]["attn"]["o_proj"]["kernel"][...].sharding, mesh, "model", None)
        assert same(p["layers"][0]["mlp"]["up_proj"]["kernel"][...].sharding, mesh, None, "model")
        assert same(p["layers"][0]["mlp"]["down_proj"]["kernel"][...].sharding, mesh, "model", None)
        assert same(p["embed"]["embedding"][...].sharding, mesh, "model", None)
        assert same(p["final_norm"]["scale"][...].sharding, mesh, None)
        kv = "model" if 4 % model == 0 else None                  # 4 KV heads: split on 2 or 4, replicated on 8
        assert same(p["layers"][0]["attn"]["k_proj"]["kernel"][...].sharding, mesh, None, kv)
        q_draft = d.params["layers"][0]["attn"]["q_proj"]["kernel"][...].sharding
        assert same(q_draft, mesh, None, "model" if 4 % model == 0 else None)      # the drafter's own rule
        caches = jax.jit(prefill, static_argnames=("sampling", "capacity"))(
            t, d, tokens, lens, jax.random.key(0), SamplingConfig(), 16).caches
        assert same(caches.target.keys[0].sharding, mesh, "data", None, kv, None)
        assert same(caches.target.values[0].sharding, mesh, "data", None, kv, None)
        assert same(caches.drafter.keys[0].sharding, mesh, "data", None, "model" if model <= 2 else None, None)

    # 2. the same tokens as one device, chains and trees, T = 0 and T = 1: 16 loops, each compiled once (what they
    #    cost), in a thread per core (XLA compiles without the GIL)
    chain, tree = make_method("chain", num_draft=3), make_method("rsd-c", budget=6)
    runs = [(method, temperature, shape) for method in (chain, tree) for temperature in (0.0, 1.0)
            for shape in (None,) + tuple(meshes)]

    def run(case):
        method, temperature, shape = case
        return generate(target, prompts, lengths, jax.random.key(7), method=method, drafter=draft, max_new_tokens=8,
                        sampling=SamplingConfig(temperature), mesh=None if shape is None else meshes[shape])

    with ThreadPoolExecutor(max(1, min(4, len(os.sched_getaffinity(0))))) as pool:
        results = dict(zip(runs, pool.map(run, runs)))
    for (method, temperature, shape), many in results.items():
        if shape is None:
            continue
        one = results[(method, temperature, None)]
        assert len(many.tokens.sharding.device_set) == 8, many.tokens.sharding
        label = f"{shape} {type(method).__name__} T={temperature}"
        np.testing.assert_array_equal(np.asarray(one.tokens), np.asarray(many.tokens), err_msg=label)
        np.testing.assert_array_equal(np.asarray(one.accepted), np.asarray(many.accepted), err_msg=label)

    # 3. bad meshes, batches and budgets: ValueError before the loop is traced
    real_loop = decode._generate
    def untraced(*args, **kwargs):
        raise AssertionError("the decode loop was traced")
    decode._generate = untraced
    tiny = model_handle(init_model(named_config("tiny"), 0))            # 4 heads: a model axis of 8 cannot split it
    errors = [(lambda: generate(tiny, prompts % 16, lengths, jax.random.key(0), mesh=meshes[(1, 8)]), "n_heads (4)"),
              (lambda: generate(target, prompts[:6], lengths[:6], jax.random.key(0), mesh=meshes[(8, 1)]),
               "divisible"),
              (lambda: generate(target, prompts, lengths, jax.random.key(0), mesh=meshes[(2, 4)],
                                memory_budget_bytes=10_000), "over the budget")]
    for call, message in errors:
        try:
            call()
        except ValueError as e:
            assert message in str(e), e
        else:
            raise AssertionError(f"expected ValueError ({message})")
    decode._generate = real_loop

    # 4. sharded loading: three safetensors files + index, each split tensor read one device shard at a time
    def save_file(tensors, path):      # the safetensors layout: u64 header length, JSON header, raw tensors
        header, offset = {}, 0
        for name, array in tensors.items():
            header[name] = dict(dtype="F32", shape=list(array.shape), data_offsets=[offset, offset + array.nbytes])
            offset += array.nbytes
        raw = json.dumps(header).encode()
        Path(path).write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(a.tobytes() for a in tensors.values()))

    config = named_config("tiny-mp").replace(tie_embeddings=False)
    model = init_model(config, 0)
    tensors = {k: np.ascontiguousarray(v, np.float32) for k, v in hf_tensors_from_model(model).items()}
    names = sorted(tensors)
    files = {f"model-{i + 1:05d}-of-00003.safetensors": names[i::3] for i in range(3)}
    for file, part in files.items():
        save_file({n: tensors[n] for n in part}, root / file)
    weight_map = {n: f for f, part in files.items() for n in part}
    (root / INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
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

    reference = model_params(model)
    for data, model_size in ((1, 8), (2, 4)):
        mesh = make_mesh(data=data, model=model_size)
        log = {}
        loaded = model_from_hf_tensors(config, Probed(SafetensorsCheckpoint(root), log), mesh=mesh)
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
        for path, value in model_params(loaded).items():
            np.testing.assert_array_equal(value, reference[path], err_msg=path)

    mesh = meshes[(2, 4)]
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

    drafter = as_model(draft)
    save_model(root / "draft", drafter)
    for model_size, spec in ((4, P(None, "model")), (8, P())):          # 4 heads: split on 4, replicated on 8
        mesh = make_mesh(data=8 // model_size, model=model_size)
        restored, _, _ = restore_model(root / "draft", mesh=mesh)
        kernel = restored.layers[0].mlp.gate_proj.kernel[...]
        assert kernel.sharding.is_equivalent_to(NamedSharding(mesh, spec), 2), kernel.sharding
        np.testing.assert_array_equal(np.asarray(kernel), np.asarray(drafter.layers[0].mlp.gate_proj.kernel[...]))

    # 5. a random model drawn in its layout: the same weights on every mesh (the sharding benchmark relies on it)
    wide, square = (init_sharded(named_config("tiny-mp"), meshes[s], seed=3) for s in ((1, 8), (2, 4)))
    assert same(square.params["layers"][0]["attn"]["q_proj"]["kernel"][...].sharding, meshes[(2, 4)], None, "model")
    for a, b in zip(jax.tree.leaves(wide.params), jax.tree.leaves(square.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert np.all(np.asarray(square.params["final_norm"]["scale"][...]) == 1.0)

    # 6. a drafter of another vocabulary (token-level intersection): its vocabulary map travels with its parameters
    #    and the same tokens come back on every mesh, chain at T = 1 and tree at T = 0
    from specjax.crossvocab import cross_vocab, vocab_map
    from specjax.testing.pairs import TINY_DRAFTER_SPELLINGS, TINY_TARGET_SPELLINGS, tiny_cross_pair
    small, other = tiny_cross_pair()                                   # V 16 and V 12, 4 heads each
    tli = cross_vocab(other, vocab_map(TINY_TARGET_SPELLINGS, TINY_DRAFTER_SPELLINGS, max_pieces=3, fallback=3)[0])
    cases = [(chain, 1.0, shape) for shape in (None, (2, 4), (8, 1))] + [(tree, 0.0, s) for s in (None, (2, 4))]

    def run_tli(case):
        method, temperature, shape = case
        return generate(small, prompts % 16, lengths, jax.random.key(3), method=method, drafter=tli,
                        max_new_tokens=8, sampling=SamplingConfig(temperature),
                        mesh=None if shape is None else meshes[shape])

    with ThreadPoolExecutor(max(1, min(4, len(os.sched_getaffinity(0))))) as pool:
        crossed = dict(zip(cases, pool.map(run_tli, cases)))
    for (method, temperature, shape), many in crossed.items():
        one = crossed[(method, temperature, None)]
        assert shape is None or len(many.tokens.sharding.device_set) == 8, many.tokens.sharding
        np.testing.assert_array_equal(np.asarray(one.tokens), np.asarray(many.tokens), err_msg=f"TLI {shape}")
    print("SHARDED-OK")
""")


def test_model_and_data_parallel_decoding_and_sharded_loading(tmp_path):
    # 8 fake CPU devices, and the cheapest code generation: compiling 16 decode loops dominates the run
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=8 {FAST_COMPILE_XLA_FLAGS}",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHARDED-OK" in proc.stdout
