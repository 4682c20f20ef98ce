"""String-level exact match (SLEM): a drafter of another tokenizer drafts *text*; the text is re-encoded by the
target's tokenizer and verified by exact match (transport/THEORY.md §5.7). One row at a time, with a host step per
round: re-encoding is a tokenizer's job, not an array program's.

A round: the drafter samples K tokens of its own from its own law; their bytes (an incomplete UTF-8 tail waits for a
later round) are encoded by the target's tokenizer and cut to K target tokens x; the target scores (pending, x) in
one call and samples y_i from its law at each position, accepting while y_i = x_i; the first y that differs (or the
bonus after all K) is the next pending token. Every emitted token is the target's own sample, so the output law is
the target's at every temperature whatever was drafted. The drafter then re-reads the committed text in its own
tokenization, re-scoring only from the first token that changed (a merge across the old boundary can change it).

The device calls (the K drafter tokens of a round in one call, a padded drafter re-read, a padded target
verification) are jitted once per shape; the host step (tokenizing, comparing) is timed on its own and reported
as `host_seconds`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from specjax.model.block import Block
from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig, sample_token, warp_logits


@dataclass(frozen=True)
class TextCodec:
    """A model's view of text: the bytes each id spells (None for special tokens, which spell nothing) and how its
    tokenizer encodes bytes."""

    spellings: Sequence[bytes | None]
    encode: Callable[[bytes], list[int]]

    def decode(self, ids: Sequence[int]) -> bytes:
        return b"".join(self.spellings[i] or b"" for i in ids)


def tokenizer_codec(tokenizer, spellings: Sequence[bytes | None]) -> TextCodec:
    """The codec of a `specjax.model.io.tokenizer.Tokenizer`: bytes decoded as UTF-8 up to the last complete
    character (a draft ending inside a character keeps its tail for a later round), then encoded."""
    def encode(data: bytes) -> list[int]:
        return tokenizer.encode(data.decode("utf-8", errors="ignore")) if data else []
    return TextCodec(spellings, encode)


@dataclass
class SlemResult:
    """One row: tokens (the generated target ids), accepted (drafts accepted per round), drafted (target tokens
    drafted per round), and seconds spent in the host step (re-encoding) and in all."""

    tokens: list[int]
    accepted: list[int] = field(default_factory=list)
    drafted: list[int] = field(default_factory=list)
    host_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def acceptance_length(self) -> float:
        """τ: tokens emitted per target call."""
        return len(self.tokens) / max(len(self.accepted), 1)


@partial(jax.jit, static_argnames=("runner",), donate_argnames=("cache",))
def _score(runner, params, cache, tokens, start):
    """Logits `[1, T, V]` of a chain `tokens [1, T]` written at `start [1]`, and the cache."""
    out = runner.forward(params, cache, Block.chain(tokens, start))
    return out.logits, out.cache


def _bucket(n: int) -> int:
    """Pad a re-read of n tokens to a power of two (at least 8): a handful of compiled shapes."""
    return max(8, 1 << (n - 1).bit_length())


def slem_generate(target: Handle, drafter: Handle, target_codec: TextCodec, drafter_codec: TextCodec,
                  prompt: Sequence[int], key: jax.Array, *, num_draft: int = 4, max_new_tokens: int = 64,
                  sampling: SamplingConfig = SamplingConfig(), eos_id: int | None = None) -> SlemResult:
    """Generate up to `max_new_tokens` target tokens after `prompt` (target ids) by SLEM. The drafter first reads
    the prompt's text in its own tokenization. ValueError for K < 1, an empty prompt, or a budget past either
    model's context."""
    if num_draft < 1 or not prompt or max_new_tokens < 1:
        raise ValueError(f"need num_draft >= 1, a prompt and max_new_tokens >= 1 (got {num_draft}, "
                         f"{len(prompt)} tokens, {max_new_tokens})")
    start_time = time.perf_counter()
    text = b""                                       # the generated text so far
    prompt_bytes = target_codec.decode(prompt)
    t_cap = len(prompt) + max_new_tokens + num_draft + 2
    d_ids = drafter_codec.encode(prompt_bytes)
    d_cap = _bucket(4 * (len(d_ids) + 2 * (max_new_tokens + num_draft)) + 8)
    t_cache = target.init_cache(1, t_cap)
    d_cache = drafter.init_cache(1, d_cap)
    logits, t_cache = _score(target.runner, target.params, t_cache, jnp.asarray([prompt[:-1] or prompt[:1]]),
                             jnp.zeros((1,), jnp.int32))
    position, pending = len(prompt) - 1, prompt[-1]         # pending: the last token, not yet scored
    d_logits, d_cache, d_valid = _reread(drafter, d_cache, d_ids, 0)
    result = SlemResult(tokens=[])
    while len(result.tokens) < max_new_tokens and (eos_id is None or eos_id not in result.tokens):
        key, draft_key, verify_key = jax.random.split(key, 3)
        drafted, d_cache = _draft(drafter, d_cache, d_logits, len(d_ids), num_draft, sampling, draft_key)
        host = time.perf_counter()
        x = target_codec.encode(drafter_codec.decode(drafted))[:num_draft]
        result.host_seconds += time.perf_counter() - host
        block = [pending] + x + [0] * (num_draft - len(x))             # padding after the drafts: never seen
        logits, t_cache = _score(target.runner, target.params, t_cache, jnp.asarray([block]),
                                 jnp.asarray([position]))
        y = np.asarray(sample_token(verify_key, warp_logits(logits[0], sampling)))   # the target's samples [K+1]
        accepted = 0
        while accepted < len(x) and int(y[accepted]) == x[accepted]:
            accepted += 1
        emitted = x[:accepted] + [int(y[accepted])]
        result.accepted.append(accepted)
        result.drafted.append(len(x))
        result.tokens += emitted
        position, pending = position + accepted + 1, emitted[-1]
        host = time.perf_counter()
        text += target_codec.decode(emitted)
        new_ids = drafter_codec.encode(prompt_bytes + text)
        same = next((i for i, (a, b) in enumerate(zip(d_valid, new_ids)) if a != b), min(len(d_valid), len(new_ids)))
        result.host_seconds += time.perf_counter() - host
        d_ids = new_ids
        d_logits, d_cache, d_valid = _reread(drafter, d_cache, d_ids, same, d_valid)
    result.tokens = result.tokens[:max_new_tokens]
    if eos_id is not None and eos_id in result.tokens:
        result.tokens = result.tokens[:result.tokens.index(eos_id) + 1]
    result.seconds = time.perf_counter() - start_time
    return result


def _reread(drafter: Handle, cache, ids: list[int], same: int, valid: list[int] | None = None):
    """Score drafter ids[same:] on top of the cached ids[:same] (padded to a bucket): the law after the last id,
    the cache, and the ids the cache now holds."""
    start = min(same, len(ids) - 1)                  # at least the last id is re-scored: its logits are needed
    new = ids[start:]
    padded = new + [0] * (_bucket(len(new)) - len(new))
    logits, cache = _score(drafter.runner, drafter.params, cache, jnp.asarray([padded]), jnp.asarray([start]))
    return logits[0, len(new) - 1], cache, list(ids)


@partial(jax.jit, static_argnames=("runner", "num_draft", "sampling"), donate_argnames=("cache",))
def _draft_tokens(runner, params, cache, logits, length, key, num_draft: int, sampling: SamplingConfig):
    """K drafter tokens `[K]` sampled from the drafter's own law in one device call (no host sync per token): the
    first from `logits [V_d]`, each later one after scoring the previous at slot `length + i`."""
    def step(i, carry):
        cache, logits, tokens = carry
        token = sample_token(jax.random.fold_in(key, i), warp_logits(logits[None], sampling))[0]
        out = runner.forward(params, cache, Block.chain(token[None, None], (length + i)[None]))
        return out.cache, out.logits[0, -1], tokens.at[i].set(token)

    tokens = jnp.zeros((num_draft,), jnp.int32)
    cache, logits, tokens = jax.lax.fori_loop(0, num_draft - 1, step, (cache, logits, tokens))
    last = sample_token(jax.random.fold_in(key, num_draft - 1), warp_logits(logits[None], sampling))[0]
    return tokens.at[num_draft - 1].set(last), cache


def _draft(drafter: Handle, cache, logits, length: int, num_draft: int, sampling: SamplingConfig, key):
    """K drafter tokens sampled from the drafter's own law (one jitted call), as a list, and the cache."""
    tokens, cache = _draft_tokens(drafter.runner, drafter.params, cache, logits, jnp.int32(length), key,
                                  num_draft=num_draft, sampling=sampling)
    return np.asarray(tokens).tolist(), cache
