"""Data- and model-parallel decoding on 8 host CPU devices (in a subprocess, since the device count must be set before
jax starts): meshes (data, model) = (1, 8), (2, 4), (8, 1) return the same tokens as one device for the same key,
for chains and trees at T = 0 and T = 1; parameters and caches carry the intended shardings; a mesh that cannot
split the target raises ValueError before anything is traced."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec as P
    assert len(jax.devices()) == 8, jax.devices()
    import trees
    import specjax.decode as decode
    from specjax.config import named_config
    from specjax.decode import generate, prefill
    from specjax.model import init_model
    from specjax.runners import model_handle
    from specjax.sampling import SamplingConfig
    from specjax.sharding import batch_mesh, make_mesh, shard_decode
    from specjax.speculators import make_method

    target = model_handle(init_model(named_config("tiny-mp"), 0))      # 8 heads, 4 KV heads, V = 32
    draft = model_handle(init_model(named_config("tiny-mp-draft"), 1))  # 4 heads, 2 KV heads
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 32, (8, 6)).astype(np.int32)
    lengths = rng.integers(1, 7, 8).astype(np.int32)
    meshes = {(1, 8): make_mesh(data=1, model=8), (2, 4): make_mesh(data=2, model=4), (8, 1): batch_mesh(8)}

    def same(sharding, mesh, *spec):
        return sharding.is_equivalent_to(NamedSharding(mesh, P(*spec)), len(spec))

    for (data, model), mesh in meshes.items():
        t, d, tokens, lens = shard_decode(target, draft, prompts, lengths, mesh)
        p = t.params
        assert same(p["layers"][0]["attn"]["q_proj"]["kernel"][...].sharding, mesh, None, "model")
        assert same(p["layers"][0]["attn"]["o_proj"]["kernel"][...].sharding, mesh, "model", None)
        assert same(p["layers"][1]["mlp"]["up_proj"]["kernel"][...].sharding, mesh, None, "model")
        assert same(p["layers"][1]["mlp"]["down_proj"]["kernel"][...].sharding, mesh, "model", None)
        assert same(p["embed"]["embedding"][...].sharding, mesh, "model", None)
        kv = "model" if 4 % model == 0 else None                  # 4 KV heads: split on 2 or 4, replicated on 8
        assert same(p["layers"][0]["attn"]["k_proj"]["kernel"][...].sharding, mesh, None, kv)
        q_draft = d.params["layers"][0]["attn"]["q_proj"]["kernel"][...].sharding
        assert same(q_draft, mesh, None, "model" if 4 % model == 0 else None)      # the drafter's own rule
        caches, _ = jax.jit(prefill, static_argnames=("sampling", "capacity"))(
            t, d, tokens, lens, jax.random.key(0), SamplingConfig(), 16)
        for layer in range(2):
            assert same(caches.target.keys[layer].sharding, mesh, "data", None, kv, None)
            assert same(caches.target.values[layer].sharding, mesh, "data", None, kv, None)
        assert same(caches.drafter.keys[0].sharding, mesh, "data", None, "model" if model <= 2 else None, None)

    chain, tree = make_method("chain", num_draft=3), make_method("rsd-c", budget=6)
    for method in (chain, tree):
        for temperature in (0.0, 1.0):
            kw = dict(method=method, drafter=draft, max_new_tokens=8, sampling=SamplingConfig(temperature))
            one = generate(target, prompts, lengths, jax.random.key(7), **kw)
            for shape, mesh in meshes.items():
                many = generate(target, prompts, lengths, jax.random.key(7), mesh=mesh, **kw)
                assert len(many.tokens.sharding.device_set) == 8, many.tokens.sharding
                label = f"{shape} {type(method).__name__} T={temperature}"
                np.testing.assert_array_equal(np.asarray(one.tokens), np.asarray(many.tokens), err_msg=label)
                np.testing.assert_array_equal(np.asarray(one.accepted), np.asarray(many.accepted), err_msg=label)

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
    print("SHARDED-OK")
""")


def test_model_and_data_parallel_generate_matches_single_device():
    flags = "--xla_force_host_platform_device_count=8"
    # the CPU backend's cheapest code generation: compiling 16 decode loops dominates the run; both sides of every
    # comparison are compiled alike
    flags += " --xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHARDED-OK" in proc.stdout
