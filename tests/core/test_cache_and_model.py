"""Model + cache: one scoring call equals token-by-token decoding; a committed round equals one-by-one decoding."""
import jax
import jax.numpy as jnp
import numpy as np

from specjax.cache import init_cache
from specjax.decode import DecodeContext, verify_chain
from specjax.draft import draft_chain
from specjax.drafters import causal_mask, model_runner
from specjax.sampling import SamplingConfig


def _decode_one_by_one(model, tokens, capacity):
    b, t = tokens.shape
    cache = init_cache(model.config, b, capacity)
    logits = []
    for i in range(t):
        lg, _, cache = model(tokens[:, i:i + 1], jnp.full((b, 1), i), cache, jnp.full((b,), i, jnp.int32),
                             causal_mask(b, 1))
        logits.append(lg)
    return jnp.concatenate(logits, 1), cache


def test_block_scoring_equals_incremental_decoding(tiny_pair):
    target, _ = tiny_pair
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 16, (3, 9)), jnp.int32)
    full, _, _ = target(tokens, jnp.broadcast_to(jnp.arange(9), (3, 9)))
    inc, _ = _decode_one_by_one(target, tokens, 12)
    np.testing.assert_allclose(np.asarray(full), np.asarray(inc), atol=1e-4)


def test_committed_round_equals_one_by_one_decoding(tiny_pair):
    """After prefill + one chain round with ragged acceptance, the target cache over the committed prefix equals
    the cache of decoding those tokens one at a time, and so do the next-token logits."""
    target, draft = tiny_pair
    runner, params = model_runner(target)
    d_runner, d_params = model_runner(draft)
    b, prompt_len, k, capacity = 6, 4, 4, 16
    prompts = jnp.asarray(np.random.default_rng(1).integers(0, 16, (b, prompt_len)), jnp.int32)
    pos = jnp.broadcast_to(jnp.arange(prompt_len), (b, prompt_len))
    zeros = jnp.zeros((b,), jnp.int32)
    cache = runner.init_cache(params, b, capacity)
    _, hidden, cache = runner.forward(params, cache, prompts[:, :-1], pos[:, :-1], zeros,
                                      causal_mask(b, prompt_len - 1))
    d_cache = d_runner.init_cache(d_params, b, capacity)
    _, _, d_cache = d_runner.forward(d_params, d_cache, prompts[:, :-1], pos[:, :-1], zeros,
                                     causal_mask(b, prompt_len - 1))
    position = jnp.full((b,), prompt_len - 1, jnp.int32)
    ctx = DecodeContext(prev=prompts[:, -2], pending=prompts[:, -1], position=position,
                        features=jnp.zeros((b, 2, target.config.d_model)))
    sampling = SamplingConfig(temperature=1.0)
    _, drafts, probs, _ = draft_chain(d_runner, d_params, d_cache, ctx.prev, ctx.pending, position, ctx.features,
                                      jax.random.key(0), k, sampling)
    cache, num_accepted, out, _ = verify_chain(runner, params, cache, ctx, drafts, probs, jax.random.key(1), sampling)
    num_accepted = np.asarray(num_accepted)
    assert len(set(num_accepted.tolist())) > 1, "want ragged acceptance across rows"
    for row in range(b):
        n = int(num_accepted[row])
        committed = np.r_[np.asarray(prompts[row]), np.asarray(out[row, :n])]      # prompt + accepted drafts
        ref_logits, ref_cache = _decode_one_by_one(target, jnp.asarray(committed[None], jnp.int32), capacity)
        slots = len(committed)
        for layer in range(target.config.n_layers):
            np.testing.assert_allclose(np.asarray(cache.keys[layer][row, :slots]),
                                       np.asarray(ref_cache.keys[layer][0, :slots]), atol=1e-5)
            np.testing.assert_allclose(np.asarray(cache.values[layer][row, :slots]),
                                       np.asarray(ref_cache.values[layer][0, :slots]), atol=1e-5)
        # scoring the correction token on top of the committed cache gives the reference next-token logits
        corr = jnp.asarray([[out[row, n]]], jnp.int32)
        row_cache = jax.tree.map(lambda a: a[row:row + 1], cache)
        lg, _, _ = target(corr, jnp.full((1, 1), slots), row_cache, jnp.full((1,), slots, jnp.int32),
                          causal_mask(1, 1))
        ref, _, _ = target(jnp.asarray(np.r_[committed, int(out[row, n])][None], jnp.int32),
                           jnp.arange(slots + 1)[None])
        np.testing.assert_allclose(np.asarray(lg[0, 0]), np.asarray(ref[0, -1]), atol=1e-4)


def test_jitted_steps_compose_into_a_round(tiny_pair):
    """The public jitted draft and verify steps (caches donated) give the same round as the traced functions."""
    from specjax.decode import verify_step
    from specjax.draft import draft_step
    target, draft = tiny_pair
    runner, params = model_runner(target)
    d_runner, d_params = model_runner(draft)
    b = 3
    ctx = DecodeContext(prev=jnp.array([1, 2, 3]), pending=jnp.array([4, 5, 6]), position=jnp.array([1, 1, 1]),
                        features=jnp.zeros((b, 2, target.config.d_model)))
    sampling = SamplingConfig(temperature=0.0)
    results = []
    for draft_fn, verify_fn in [(draft_chain, verify_chain), (draft_step, verify_step)]:
        d_cache = d_runner.init_cache(d_params, b, 12)
        t_cache = runner.init_cache(params, b, 12)
        _, tokens, probs, _ = draft_fn(d_runner, d_params, d_cache, ctx.prev, ctx.pending, ctx.position,
                                       ctx.features, jax.random.key(0), 3, sampling)
        _, n, out, _ = verify_fn(runner, params, t_cache, ctx, tokens, probs, jax.random.key(1), sampling)
        results.append((np.asarray(tokens), np.asarray(n), np.asarray(out)))
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)
