"""The memory planner: exact weight and cache bytes per device (against the placed arrays and the closed form), the
round's `[B, M, V]` buffers, and `generate` refusing a run over budget before anything is traced."""
import re

import jax
import numpy as np
import pytest

import specjax.decode.loop as decode
from specjax.model.config import named_config
from specjax.decode.loop import generate
from specjax.runners.lookup import lookup_handle
from specjax.parallel.memory import plan_generate, plan_memory
from specjax.model.decoder import init_model
from specjax.runners.model import early_exit, model_handle
from specjax.methods import make_method

CONFIG = named_config("tiny-mp")          # V 32, D 64, 2 layers, 8 heads, 4 KV heads of 8, d_ff 128, tied


def test_weights_and_cache_bytes_match_the_arrays_on_one_device():
    model = init_model(CONFIG, 0)
    plan = plan_memory(CONFIG, batch=3, capacity=40, round_tokens=5, prompt_len=8)
    assert plan.weights == sum(x.nbytes for x in jax.tree.leaves(model_handle(model).params))
    cache = model_handle(model).init_cache(3, 40)
    assert plan.caches == sum(x.nbytes for x in jax.tree.leaves(cache))


def test_per_device_bytes_follow_the_layout():
    split = 32 * 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128)      # vocab, heads, KV heads, MLP
    replicated = 2 * 2 * 64 + 64                                           # norms
    plan = plan_memory(CONFIG, batch=8, capacity=40, round_tokens=7, prompt_len=8, mesh=(2, 4))
    assert plan.weights == 4 * (split // 4 + replicated)
    assert plan.caches == 4 * 2 * 2 * (8 // 2) * 40 * (4 // 4) * 8            # K and V, 2 layers, KV heads split
    wide = plan_memory(CONFIG, batch=8, capacity=40, round_tokens=7, prompt_len=8, mesh=(1, 8))
    kv_split = 2 * (2 * 64 * 32)
    assert wide.weights == 4 * ((split - kv_split) // 8 + kv_split + replicated)   # 4 KV heads replicated on 8
    assert wide.caches == 4 * 2 * 2 * 8 * 40 * 4 * 8
    half = plan_memory(CONFIG, batch=8, capacity=40, round_tokens=7, prompt_len=8, mesh=(2, 4), dtype="bfloat16")
    assert half.weights == 2 * (split // 4) + 4 * replicated and half.caches == plan.caches // 2
    # one round holds target logits, warped law and draft laws [B, M, V] float32 (plus one layer's scores)
    bigger = plan_memory(CONFIG, batch=8, capacity=40, round_tokens=65, prompt_len=8, mesh=(2, 4))
    scores = 2 * 4 * (8 // 4) * 40 * 4
    assert bigger.round - plan.round == (3 * 4 * 32 * 4 + scores) * (65 - 7)
    with pytest.raises(ValueError, match=r"n_heads \(8\)"):
        plan_memory(CONFIG, batch=8, capacity=40, round_tokens=7, prompt_len=8, mesh=(1, 3))


def test_drafters_are_counted_by_their_own_rule():
    target = model_handle(init_model(CONFIG, 0))
    kw = dict(batch=4, capacity=32, round_tokens=5, prompt_len=8, mesh=(1, 4))
    alone = plan_generate(target, None, **kw)
    shared = plan_generate(target, early_exit(target, 1), **kw)
    assert shared.weights == alone.weights and shared.caches == alone.caches * 3 // 2     # 1 of 2 layers again
    lookup = plan_generate(target, lookup_handle(CONFIG), **kw)
    assert lookup.caches == alone.caches + 4 * 32 * 4                                      # a token history [B, S]
    other = model_handle(init_model(named_config("tiny-mp-draft"), 1))
    assert plan_generate(target, other, **kw).weights > alone.weights


def test_generate_refuses_a_run_over_budget_before_tracing(monkeypatch, tiny_pair):
    target, draft = tiny_pair
    prompts, lengths = np.array([[1, 2, 3]] * 2, np.int32), np.array([3, 2], np.int32)
    kw = dict(method=make_method("chain", num_draft=3), drafter=draft, max_new_tokens=8)

    class Traced(Exception):
        pass

    def loop(*args, **kwargs):          # stands in for the jitted loop: reaching it means the budget let the run in
        raise Traced
    monkeypatch.setattr(decode, "_generate", loop)
    with pytest.raises(ValueError, match=r"needs about .* per device .*over the budget of .*\(1,000 bytes\)") as e:
        generate(target, prompts, lengths, jax.random.key(0), memory_budget_bytes=1000, **kw)
    needed = int(re.search(r"needs about [^(]*\(([\d,]+) bytes\)", str(e.value)).group(1).replace(",", ""))
    # the figure in the message is the threshold: a budget of exactly that runs, one byte less is refused
    with pytest.raises(Traced):
        generate(target, prompts, lengths, jax.random.key(0), memory_budget_bytes=needed, **kw)
    with pytest.raises(ValueError, match="over the budget"):
        generate(target, prompts, lengths, jax.random.key(0), memory_budget_bytes=needed - 1, **kw)
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        generate(target, prompts, lengths, jax.random.key(0), memory_budget_bytes=0, **kw)
