"""Batch-sharded decoding on 8 host CPU devices returns the same tokens as one device (run in a subprocess, since
the device count must be set before jax starts)."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    assert len(jax.devices()) == 8, jax.devices()
    import trees
    from specjax.decode import generate
    from specjax.sampling import SamplingConfig
    from specjax.sharding import batch_mesh
    from specjax.speculators import make_method
    from specjax.testing import tiny_pair
    target, draft = tiny_pair()
    rng = np.random.default_rng(0)
    prompts = rng.integers(0, 16, (16, 6)).astype(np.int32)
    lengths = rng.integers(1, 7, 16).astype(np.int32)
    mesh = batch_mesh(8)
    cases = [(make_method("chain", num_draft=3), SamplingConfig(0.0)), (make_method("chain", num_draft=3),
             SamplingConfig(1.0)), (make_method("rsd-c", budget=6), SamplingConfig(1.0))]
    for method, sampling in cases:
        kw = dict(method=method, drafter=draft, max_new_tokens=12, sampling=sampling)
        one = generate(target, prompts, lengths, jax.random.key(7), **kw)
        many = generate(target, prompts, lengths, jax.random.key(7), mesh=mesh, **kw)
        assert len(many.tokens.sharding.device_set) == 8, many.tokens.sharding
        np.testing.assert_array_equal(np.asarray(one.tokens), np.asarray(many.tokens))
        np.testing.assert_array_equal(np.asarray(one.accepted), np.asarray(many.accepted))
    try:
        generate(target, prompts[:12], lengths[:12], jax.random.key(0), mesh=mesh, max_new_tokens=4)
    except ValueError as e:
        assert "divisible" in str(e)
    else:
        raise AssertionError("batch 12 over 8 devices should fail")
    print("SHARDED-OK")
""")


def test_sharded_generate_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHARDED-OK" in proc.stdout
