"""Model + cache: one scoring call equals token-by-token decoding; a committed round equals one-by-one decoding;
a block's visibility is exactly what it says."""
import jax
import jax.numpy as jnp
import numpy as np

from specjax.model.block import Block
from specjax.decode.draft import draft_chain, draft_step
from specjax.sampling import SamplingConfig
from specjax.decode.chain import verify_chain, verify_step
from specjax.decode.state import DecodeContext


def _decode_one_by_one(handle, tokens, capacity):
    b, t = tokens.shape
    cache = handle.init_cache(b, capacity)
    logits = []
    for i in range(t):
        out = handle.forward(cache, Block.chain(tokens[:, i:i + 1], jnp.full((b,), i, jnp.int32)))
        logits.append(out.logits)
        cache = out.cache
    return jnp.concatenate(logits, 1), cache


def _full(handle, tokens):
    b, t = tokens.shape
    return handle.forward(handle.init_cache(b, t), Block.chain(tokens, jnp.zeros((b,), jnp.int32)))


def test_block_scoring_equals_incremental_decoding(tiny_pair):
    target, _ = tiny_pair
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, 16, (3, 9)), jnp.int32)
    inc, _ = _decode_one_by_one(target, tokens, 12)
    np.testing.assert_allclose(np.asarray(_full(target, tokens).logits), np.asarray(inc), atol=1e-4)


def test_window_visibility_scores_each_node_on_its_own_path(tiny_pair):
    """Two sibling branches written in one cache: each node scored through a window that shows only its ancestors
    gets the logits of its own path alone, although its cousins sit in the cache (what tree levels rely on)."""
    target, _ = tiny_pair
    prefix = jnp.asarray([[3, 1, 4]], jnp.int32)
    cache = _full(target, prefix).cache
    cache = jax.tree.map(lambda a: jnp.pad(a, ((0, 0), (0, 5)) + ((0, 0),) * (a.ndim - 2)), cache)
    # window from slot 3: slot 3 = branch A token 7, slot 4 = branch B token 9, slot 5 = A's child 2 (sees 3, 5)
    level1 = Block(tokens=jnp.asarray([[7, 9]]), positions=jnp.asarray([[3, 3]]), slots=jnp.asarray([[3, 4]]),
                   window=jnp.asarray([3]), visible=jnp.asarray([[[1, 0, 0], [0, 1, 0]]], bool))
    out1 = target.forward(cache, level1)
    level2 = Block(tokens=jnp.asarray([[2]]), positions=jnp.asarray([[4]]), slots=jnp.asarray([[5]]),
                   window=jnp.asarray([3]), visible=jnp.asarray([[[1, 0, 1]]], bool))
    out2 = target.forward(out1.cache, level2)
    ref_a = _full(target, jnp.asarray([[3, 1, 4, 7, 2]], jnp.int32)).logits
    ref_b = _full(target, jnp.asarray([[3, 1, 4, 9]], jnp.int32)).logits
    np.testing.assert_allclose(np.asarray(out1.logits[0, 0]), np.asarray(ref_a[0, 3]), atol=1e-4)
    np.testing.assert_allclose(np.asarray(out1.logits[0, 1]), np.asarray(ref_b[0, 3]), atol=1e-4)
    np.testing.assert_allclose(np.asarray(out2.logits[0, 0]), np.asarray(ref_a[0, 4]), atol=1e-4)
    # negative control: letting the child also see its cousin (slot 4) changes its logits
    leaky = target.forward(out1.cache, level2.replace(visible=jnp.ones((1, 1, 3), bool)))
    assert np.abs(np.asarray(leaky.logits[0, 0]) - np.asarray(ref_a[0, 4])).max() > 1e-3


def test_committed_round_equals_one_by_one_decoding(tiny_pair):
    """After prefill + one chain round with ragged acceptance, the target cache over the committed prefix equals
    the cache of decoding those tokens one at a time, and so do the next-token logits."""
    target, draft = tiny_pair
    b, prompt_len, k, capacity = 6, 4, 4, 16
    prompts = jnp.asarray(np.random.default_rng(1).integers(0, 16, (b, prompt_len)), jnp.int32)
    zeros = jnp.zeros((b,), jnp.int32)
    cache = target.forward(target.init_cache(b, capacity), Block.chain(prompts[:, :-1], zeros)).cache
    d_cache = draft.forward(draft.init_cache(b, capacity), Block.chain(prompts[:, :-1], zeros)).cache
    position = jnp.full((b,), prompt_len - 1, jnp.int32)
    ctx = DecodeContext(prev=prompts[:, -2], pending=prompts[:, -1], position=position,
                        features=jnp.zeros((b, 2, target.config.d_model)))
    sampling = SamplingConfig(temperature=1.0)
    drafted = draft_chain(draft, d_cache, ctx, jax.random.key(0), k, sampling)
    verdict = verify_chain(target, cache, ctx, drafted.tokens, drafted.probs, jax.random.key(1), sampling)
    cache, out = verdict.cache, verdict.tokens
    num_accepted = np.asarray(verdict.num_accepted)
    assert len(set(num_accepted.tolist())) > 1, "want ragged acceptance across rows"
    for row in range(b):
        n = int(num_accepted[row])
        committed = np.r_[np.asarray(prompts[row]), np.asarray(out[row, :n])]      # prompt + accepted drafts
        _, ref_cache = _decode_one_by_one(target, jnp.asarray(committed[None], jnp.int32), capacity)
        slots = len(committed)
        for layer in range(target.config.n_layers):
            np.testing.assert_allclose(np.asarray(cache.keys[layer][row, :slots]),
                                       np.asarray(ref_cache.keys[layer][0, :slots]), atol=1e-5)
            np.testing.assert_allclose(np.asarray(cache.values[layer][row, :slots]),
                                       np.asarray(ref_cache.values[layer][0, :slots]), atol=1e-5)
        # scoring the correction token on top of the committed cache gives the reference next-token logits
        row_cache = jax.tree.map(lambda a: a[row:row + 1], cache)
        lg = target.forward(row_cache, Block.chain(jnp.asarray([[out[row, n]]], jnp.int32),
                                                   jnp.full((1,), slots, jnp.int32))).logits
        ref = _full(target, jnp.asarray(np.r_[committed, int(out[row, n])][None], jnp.int32)).logits
        np.testing.assert_allclose(np.asarray(lg[0, 0]), np.asarray(ref[0, -1]), atol=1e-4)


def test_jitted_steps_compose_into_a_round(tiny_pair):
    """The public jitted draft and verify steps (caches donated) give the same round as the traced functions."""
    target, draft = tiny_pair
    b = 3
    ctx = DecodeContext(prev=jnp.array([1, 2, 3]), pending=jnp.array([4, 5, 6]), position=jnp.array([1, 1, 1]),
                        features=jnp.zeros((b, 2, target.config.d_model)))
    sampling = SamplingConfig(temperature=0.0)
    results = []
    for draft_fn, verify_fn in [(draft_chain, verify_chain), (draft_step, verify_step)]:
        drafted = draft_fn(draft, draft.init_cache(b, 12), ctx, jax.random.key(0), 3, sampling)
        verdict = verify_fn(target, target.init_cache(b, 12), ctx, drafted.tokens, drafted.probs, jax.random.key(1),
                            sampling)
        results.append((np.asarray(drafted.tokens), np.asarray(verdict.num_accepted), np.asarray(verdict.tokens)))
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


def test_chunked_attention_equals_full_attention_and_reads_only_the_filled_chunks():
    """Over a long cache, attention runs chunk by chunk only as far as the last visible slot: the same output as
    attending every slot (random masks with whole chunks unseen, a softcap, a tail shorter than a chunk), and a
    chunk past the last visible slot is never read (NaNs there change nothing, while full attention turns NaN)."""
    from specjax.model.attention import ATTENTION_CHUNK, attend as _attend, attend_by_chunks as _attend_by_chunks

    rng = np.random.default_rng(0)
    b, t, hkv, g, dh = 2, 3, 2, 2, 8
    s = 4 * ATTENTION_CHUNK + 37                                  # 4 whole chunks and a tail
    q = jnp.asarray(rng.normal(size=(b, t, hkv, g, dh)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(b, s, hkv, dh)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(b, s, hkv, dh)), jnp.float32)
    for seen, softcap in ((ATTENTION_CHUNK + 5, None), (3 * ATTENTION_CHUNK, 30.0), (s, None)):
        mask = jnp.asarray(rng.random((b, t, s)) < 0.3) & (jnp.arange(s) < seen)
        mask = mask.at[:, :, 0].set(True)                        # every query sees the start of its prefix
        expected = _attend(q, k, v, mask, 0.3, softcap)
        out, k_back, v_back = _attend_by_chunks(q, k, v, mask, 0.3, softcap)
        np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-5, atol=1e-5)
        assert k_back is not None and np.array_equal(np.asarray(k_back), np.asarray(k))      # passed through
        np.testing.assert_array_equal(np.asarray(v_back), np.asarray(v))
    mask = (jnp.arange(s) < ATTENTION_CHUNK + 5)[None, None, :].repeat(b, 0).repeat(t, 1)
    poisoned = slice(2 * ATTENTION_CHUNK, 4 * ATTENTION_CHUNK)   # whole chunks past the last visible slot
    k_nan, v_nan = k.at[:, poisoned].set(jnp.nan), v.at[:, poisoned].set(jnp.nan)
    assert np.isfinite(np.asarray(_attend_by_chunks(q, k_nan, v_nan, mask, 0.3, None)[0])).all()
    assert not np.isfinite(np.asarray(_attend(q, k_nan, v_nan, mask, 0.3, None))).all()     # the control


def test_a_long_cache_decodes_as_a_short_one(tiny_pair):
    """A cache past CHUNKED_FROM slots (chunked attention) gives the logits of one under it (full attention)."""
    from specjax.model.attention import CHUNKED_FROM

    target, _ = tiny_pair
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, 16, (2, 9)), jnp.int32)
    short, _ = _decode_one_by_one(target, tokens, 16)
    long, _ = _decode_one_by_one(target, tokens, CHUNKED_FROM + 40)
    np.testing.assert_allclose(np.asarray(long), np.asarray(short), rtol=1e-5, atol=1e-5)
