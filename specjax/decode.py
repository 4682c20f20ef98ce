"""The decode loop: prefill, then rounds of (draft, score, verify, commit, record) inside one jitted
`lax.while_loop` over preallocated buffers. No host round-trip until the loop ends.

A round is delegated to a *speculator* (a static, hashable object with a `round` method); `ChainSpeculator`
covers plain autoregressive decoding (`num_draft=0`) and chain speculative decoding. Tree speculators (package
`trees`) implement the same `round` contract, so every method shares this loop, its stopping rule and its stats.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh

from specjax.drafters import Drafter, ModelRunner, causal_mask, model_runner
from specjax.draft import draft_chain
from specjax.metrics import acceptance_length
from specjax.model import LlamaLM
from specjax.sampling import SamplingConfig, sample_token, warp_logits
from specjax.sharding import replicate, shard_batch
from specjax.validation import check_int
from specjax.verify.chain import PAD_TOKEN, accept_chain_unchecked


@struct.dataclass
class DecodeContext:
    """Per-row decode position. `pending` is the newest emitted token, not yet in any cache, at `position`;
    `prev` is the token before it; `features[B, 2, D]` the target hidden states at `position - 2, position - 1`."""

    prev: jax.Array
    pending: jax.Array
    position: jax.Array
    features: jax.Array


@struct.dataclass
class RoundOutput:
    """What one round produced. tokens `[B, M]`: accepted drafts then the correction/bonus token, PAD after;
    path_hidden `[B, M, D]`: target hidden states at `[pending, accepted...]` (positions `position + i`)."""

    target_cache: Any
    draft_cache: Any
    tokens: jax.Array
    num_accepted: jax.Array
    num_drafted: jax.Array
    path_hidden: jax.Array


class Speculator(Protocol):
    max_emit: int            # the most tokens one round can emit (static)
    capacity_margin: int     # cache slots a round may write past the committed prefix

    def round(self, target: Drafter, target_params: Any, drafter: Drafter | None, drafter_params: Any,
              target_cache: Any, draft_cache: Any, ctx: DecodeContext, key: jax.Array,
              sampling: SamplingConfig) -> RoundOutput: ...


def verify_chain(target: Drafter, target_params: Any, target_cache: Any, ctx: DecodeContext,
                 draft_tokens: jax.Array, draft_probs: jax.Array, key: jax.Array, sampling: SamplingConfig):
    """Verify step: score `[pending, drafts]` in one target call and apply the chain rule.

    draft_tokens `[B, K]`, draft_probs `[B, K, V]`. Returns (target_cache with the block written at `position`,
    num_accepted `[B]`, tokens `[B, K+1]`, hidden `[B, K+1, D]`). The committed path is the block prefix, so the
    cache needs no copy: slots past it are stale and invisible.
    """
    b, k = draft_tokens.shape
    tokens = jnp.concatenate([ctx.pending[:, None], draft_tokens], axis=1)
    positions = ctx.position[:, None] + jnp.arange(k + 1)[None, :]
    logits, hidden, target_cache = target.forward(target_params, target_cache, tokens, positions, ctx.position,
                                                  causal_mask(b, k + 1))
    target_probs = warp_logits(logits, sampling)
    num_accepted, out = accept_chain_unchecked(key, draft_tokens, draft_probs, target_probs)
    return target_cache, num_accepted, out, hidden


verify_step = jax.jit(verify_chain, static_argnames=("target", "sampling"), donate_argnames=("target_cache",))


@dataclass(frozen=True)
class ChainSpeculator:
    """Chain speculative decoding with `num_draft` drafts per round; `num_draft=0` is autoregressive decoding."""

    num_draft: int

    @property
    def max_emit(self) -> int:
        return self.num_draft + 1

    @property
    def capacity_margin(self) -> int:
        return self.num_draft + 1

    def round(self, target, target_params, drafter, drafter_params, target_cache, draft_cache, ctx, key, sampling):
        b = ctx.pending.shape[0]
        key_draft, key_verify = jax.random.split(key)
        if self.num_draft == 0:
            draft_tokens = jnp.zeros((b, 0), jnp.int32)
            draft_probs = jnp.zeros((b, 0, target.config.vocab_size), jnp.float32)
        else:
            draft_cache, draft_tokens, draft_probs, _ = draft_chain(
                drafter, drafter_params, draft_cache, ctx.prev, ctx.pending, ctx.position, ctx.features,
                key_draft, self.num_draft, sampling)
        target_cache, num_accepted, tokens, hidden = verify_chain(
            target, target_params, target_cache, ctx, draft_tokens, draft_probs, key_verify, sampling)
        return RoundOutput(target_cache, draft_cache, tokens, num_accepted,
                           jnp.full((b,), self.num_draft, jnp.int32), hidden)


@struct.dataclass
class GenerateResult:
    """tokens `[B, max_new_tokens]` (PAD_TOKEN = -1 after each row's end); lengths `[B]`; per-round logs
    accepted `[B, R]` (-1 where the row ran no round) and drafted `[B, R]`; num_rounds `[B]` target calls after
    prefill."""

    tokens: jax.Array
    lengths: jax.Array
    accepted: jax.Array
    drafted: jax.Array
    num_rounds: jax.Array

    @property
    def acceptance_length(self) -> float:
        """τ = tokens emitted per target call (see `specjax.metrics`)."""
        return acceptance_length(np.asarray(self.accepted))


def generate(target: LlamaLM | tuple[Drafter, Any], prompt_tokens: Any, prompt_lengths: Any, key: jax.Array, *,
             method: str = "ar", max_new_tokens: int = 32, sampling: SamplingConfig = SamplingConfig(),
             num_draft: int = 4, drafter: LlamaLM | tuple[Drafter, Any] | None = None,
             speculator: Speculator | None = None, eos_id: int | None = None,
             cache_capacity: int | None = None, mesh: Mesh | None = None) -> GenerateResult:
    """Decode `max_new_tokens` per row with method "ar" | "chain" (or any `speculator`, e.g. a tree builder's).

    target / drafter: a `LlamaLM`, or a `(runner, params)` pair such as `early_exit_drafter(target, L)`.
    prompt_tokens: `[B, L]` int, right-padded; prompt_lengths: `[B]` in `[1, L]`. key: PRNG key (the only source
    of randomness). cache_capacity: if given, the largest cache the caller allows (slots per row). mesh: shard the
    batch over its `data` axis (weights replicated); same tokens as one device for the same key.
    Input errors raise ValueError before anything is traced.
    """
    target_runner, target_params = target if isinstance(target, tuple) else model_runner(target)
    vocab = target_runner.config.vocab_size
    prompt_tokens = np.asarray(prompt_tokens)
    prompt_lengths = np.asarray(prompt_lengths)
    if prompt_tokens.ndim != 2 or not np.issubdtype(prompt_tokens.dtype, np.integer):
        raise ValueError(f"prompt_tokens must be an integer array [B, L], got {prompt_tokens.dtype} "
                         f"{prompt_tokens.shape}")
    batch, prompt_len = prompt_tokens.shape
    if prompt_lengths.shape != (batch,):
        raise ValueError(f"prompt_lengths must be [B] = [{batch}], got shape {prompt_lengths.shape}")
    if prompt_len < 1 or prompt_lengths.min() < 1 or prompt_lengths.max() > prompt_len:
        raise ValueError(f"prompt_lengths must lie in [1, {prompt_len}], got {prompt_lengths.tolist()}")
    valid = np.arange(prompt_len)[None, :] < prompt_lengths[:, None]
    if np.any((prompt_tokens < 0) | (prompt_tokens >= vocab)) and np.any(valid & ((prompt_tokens < 0) |
                                                                             (prompt_tokens >= vocab))):
        raise ValueError(f"prompt token ids must lie in [0, {vocab})")
    check_int("max_new_tokens", max_new_tokens, low=1)
    if not isinstance(sampling, SamplingConfig):
        raise ValueError("sampling must be a SamplingConfig")
    if sampling.top_k > vocab:
        raise ValueError(f"top_k ({sampling.top_k}) exceeds the vocabulary ({vocab})")
    if eos_id is not None:
        check_int("eos_id", eos_id, low=0, high=vocab - 1)

    if speculator is None:
        if method == "ar":
            speculator = ChainSpeculator(0)
        elif method == "chain":
            check_int("num_draft", num_draft, low=1)
            speculator = ChainSpeculator(num_draft)
        else:
            raise ValueError(f"unknown method {method!r}: use 'ar', 'chain', or pass a speculator (trees)")
    needs_drafter = not (isinstance(speculator, ChainSpeculator) and speculator.num_draft == 0)
    drafter_runner = drafter_params = None
    if needs_drafter:
        if drafter is None:
            raise ValueError(f"method {method!r} needs a drafter")
        drafter_runner, drafter_params = drafter if isinstance(drafter, tuple) else model_runner(drafter)
        if drafter_runner.config.vocab_size != vocab:
            raise ValueError(f"drafter vocabulary ({drafter_runner.config.vocab_size}) does not match the "
                             f"target's ({vocab})")
    capacity = prompt_len + max_new_tokens + speculator.capacity_margin + 1
    if cache_capacity is not None and capacity > cache_capacity:
        raise ValueError(f"prompt ({prompt_len}) + max_new_tokens ({max_new_tokens}) + draft margin "
                         f"({speculator.capacity_margin}) needs {capacity} cache slots, more than the allowed "
                         f"{cache_capacity}: lower num_draft / the tree budget or max_new_tokens")
    prompt_tokens, prompt_lengths = jnp.asarray(prompt_tokens, jnp.int32), jnp.asarray(prompt_lengths, jnp.int32)
    if mesh is not None:
        prompt_tokens, prompt_lengths = shard_batch(prompt_tokens, mesh), shard_batch(prompt_lengths, mesh)
        target_params, drafter_params = replicate(target_params, mesh), replicate(drafter_params, mesh)
    return _generate(target_runner, target_params, drafter_runner, drafter_params, prompt_tokens, prompt_lengths, key,
                     speculator=speculator, sampling=sampling, max_new_tokens=max_new_tokens, eos_id=eos_id,
                     capacity=capacity)


@partial(jax.jit, static_argnames=("target", "drafter", "speculator", "sampling", "max_new_tokens", "eos_id",
                                   "capacity"))
def _generate(target, target_params, drafter, drafter_params, prompt_tokens, prompt_lengths, key, *,
              speculator, sampling, max_new_tokens, eos_id, capacity):
    batch, prompt_len = prompt_tokens.shape
    rows = jnp.arange(batch)
    max_rounds = max_new_tokens - 1
    emit = speculator.max_emit

    # prefill: the whole prompt into both caches; the target's law at the last prompt token gives token 1
    positions = jnp.broadcast_to(jnp.arange(prompt_len), (batch, prompt_len))
    start = jnp.zeros((batch,), jnp.int32)
    mask = causal_mask(batch, prompt_len)
    target_cache = target.init_cache(target_params, batch, capacity)
    logits, hidden, target_cache = target.forward(target_params, target_cache, prompt_tokens, positions, start, mask)
    last = prompt_lengths - 1
    first = sample_token(jax.random.fold_in(key, 0), warp_logits(logits[rows, last], sampling))
    hidden_pad = jnp.concatenate([jnp.zeros_like(hidden[:, :1]), hidden], axis=1)   # index i+1 = position i
    features = jnp.stack([hidden_pad[rows, last], hidden_pad[rows, last + 1]], axis=1)
    draft_cache = None
    if drafter is not None:
        draft_cache = drafter.init_cache(drafter_params, batch, capacity)
        _, _, draft_cache = drafter.forward(drafter_params, draft_cache, prompt_tokens, positions, start, mask,
                                            hidden_pad[:, :-1])
    ctx = DecodeContext(prev=prompt_tokens[rows, last], pending=first, position=prompt_lengths, features=features)
    out = jnp.full((batch, max_new_tokens + emit), PAD_TOKEN, jnp.int32).at[:, 0].set(first)
    num_generated = jnp.ones((batch,), jnp.int32)
    done = num_generated >= max_new_tokens
    if eos_id is not None:
        done = done | (first == eos_id)
    accepted_log = jnp.full((batch, max(max_rounds, 1)), -1, jnp.int32)
    drafted_log = jnp.zeros((batch, max(max_rounds, 1)), jnp.int32)

    def cond(carry):
        r, done = carry[0], carry[4]
        return (r < max_rounds) & ~jnp.all(done)

    def body(carry):
        r, target_cache, draft_cache, ctx, done, out, num_generated, accepted_log, drafted_log = carry
        res = speculator.round(target, target_params, drafter, drafter_params, target_cache, draft_cache, ctx,
                               jax.random.fold_in(key, r + 1), sampling)
        n = res.num_accepted
        active = ~done
        # append the round's tokens at each row's write head (stale PADs beyond are overwritten next round)
        written = jax.vmap(lambda o, t, s: jax.lax.dynamic_update_slice_in_dim(o, t, s, axis=0))(
            out, res.tokens, num_generated)
        out = jnp.where(active[:, None], written, out)
        emitted = jnp.where(active, n + 1, 0)
        ext_tokens = jnp.concatenate([ctx.pending[:, None], res.tokens], axis=1)
        ext_hidden = jnp.concatenate([ctx.features[:, 1:2], res.path_hidden], axis=1)
        new_ctx = DecodeContext(prev=ext_tokens[rows, n], pending=ext_tokens[rows, n + 1],
                                position=ctx.position + n + 1,
                                features=jnp.stack([ext_hidden[rows, n], ext_hidden[rows, n + 1]], axis=1))
        ctx = jax.tree.map(lambda new, old: jnp.where(active.reshape((-1,) + (1,) * (new.ndim - 1)), new, old),
                           new_ctx, ctx)
        hit_eos = jnp.zeros_like(done)
        if eos_id is not None:
            slots = jnp.arange(emit)[None, :]
            hit_eos = jnp.any((res.tokens == eos_id) & (slots <= n[:, None]), axis=1)
        num_generated = num_generated + emitted
        accepted_log = accepted_log.at[:, r].set(jnp.where(active, n, -1))
        drafted_log = drafted_log.at[:, r].set(jnp.where(active, res.num_drafted, 0))
        done = done | (active & hit_eos) | (num_generated >= max_new_tokens)
        return (r + 1, res.target_cache, res.draft_cache, ctx, done, out, num_generated, accepted_log, drafted_log)

    carry = (jnp.int32(0), target_cache, draft_cache, ctx, done, out, num_generated, accepted_log, drafted_log)
    carry = jax.lax.while_loop(cond, body, carry)
    _, _, _, _, _, out, num_generated, accepted_log, drafted_log = carry

    out = out[:, :max_new_tokens]
    lengths = jnp.minimum(num_generated, max_new_tokens)
    if eos_id is not None:
        is_eos = out == eos_id
        first_eos = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, max_new_tokens)
        lengths = jnp.minimum(lengths, first_eos)
    out = jnp.where(jnp.arange(max_new_tokens)[None, :] < lengths[:, None], out, PAD_TOKEN)
    num_rounds = jnp.sum(accepted_log >= 0, axis=1)
    return GenerateResult(out, lengths, accepted_log, drafted_log, num_rounds)
