"""The chain draft step: a drafter proposes up to K tokens per row, with the distributions they were sampled from;
a draft-length policy (`specjax.decode.policies`) may stop each row early. `score_chain` is its teacher-forced twin: the
drafter's logits along a given chain, computed exactly as `draft_chain` would have drafted it."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from specjax.model.block import Block
from specjax.decode.policies import DraftPolicy, Fixed
from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig, law_statistics, sample_token, warp_logits
from specjax.decode.state import DecodeContext
from specjax.verify.coupled import race_winners


@struct.dataclass
class ChainDraft:
    """cache: the drafter's cache; tokens `[B, K]` int32; probs `[B, K, V]` float32, the warped law each draft was
    sampled from (what the verifier must be given); lengths `[B]` int32, how many of the K slots each row drafted
    (slots past it are absent); features `[B, K, D]`, the drafter's hidden state where it produced each law;
    stats `[B, K, 2]`, `law_statistics` of the law each draft was judged by (see `draft_chain`)."""

    cache: Any
    tokens: jax.Array
    probs: jax.Array
    lengths: jax.Array
    features: jax.Array
    stats: jax.Array


@struct.dataclass
class _Drafting:
    """The drafting loop's carry: step (the draft to make next), the draft so far, live `[B]` (rows still
    drafting), and the policy's per-round carry."""

    step: jax.Array
    draft: ChainDraft
    live: jax.Array
    policy_carry: Any


def draft_chain(drafter: Handle, cache: Any, ctx: DecodeContext, key: jax.Array, num_draft: int,
                sampling: SamplingConfig, policy: DraftPolicy = Fixed(), memory: Any = None,
                shares_target_cache: bool = False, races: jax.Array | None = None) -> ChainDraft:
    """Propose up to `num_draft` tokens per row: one drafter call over (prev, pending), then one per further draft,
    stopping as soon as the policy has stopped every row (a `lax.while_loop`: no host round-trip). A row the policy
    stops at draft 0 drafts nothing (length 0).

    The drafter's cache is valid below `position - 1`; the first call re-scores `prev` (at `position - 1`) with
    `pending` (at `position`), because after a fully accepted round the drafter never saw its own last draft. A
    drafter that reads features gets the target's hidden states for the first call and its own output after.
    `memory`: the policy's per-row memory (`policy.init`); a policy reading acceptance predictions needs a drafter
    with an acceptance head (`specjax.training.acceptance_head`). `shares_target_cache`: `cache` is the target's (an
    early-exit self-draft reading the target's own keys and values, valid below `position`): the first call scores
    `pending` alone, so the target's committed entries are never overwritten. races `[B, K, V]`: draft i of row b
    is the winner of race `races[b, i]` under its law (coupled drafting for a coupled verifier,
    `specjax.verify.coupled.round_races`) instead of a draw from `key`.
    """
    b = ctx.pending.shape[0]
    keys = jax.random.split(key, num_draft)
    reads = drafter.runner.reads_features

    def draw(key, step, q):
        """Draft `step` of every row from its law q `[B, V]`: a draw from `key`, or its race's winner."""
        if races is None:
            return sample_token(key, q)
        return race_winners(jax.lax.dynamic_index_in_dim(races, step, axis=1, keepdims=False), q)

    if shares_target_cache:
        first = drafter.forward(cache, Block.chain(ctx.pending[:, None], ctx.position,
                                                   ctx.features[:, 1:] if reads else None))
    else:
        first = drafter.forward(cache, Block.chain(jnp.stack([ctx.prev, ctx.pending], 1), ctx.position - 1,
                                                   ctx.features if reads else None))

    def law(out):
        """The warped law to sample from, the statistics of the law the policy judges confidence by (at
        temperature 0 the raw softmax: the warped law is one-hot), and the predicted acceptance if it is read."""
        q = warp_logits(out.logits[:, -1], sampling)
        stats = law_statistics(jax.nn.softmax(out.logits[:, -1], axis=-1) if sampling.greedy else q)
        accept = (drafter.runner.accept_prob(drafter.params, out.hidden[:, -1], stats) if policy.reads_acceptance
                  else None)
        return q, stats, accept

    q0, stats0, accept0 = law(first)
    # a row may decline even draft 0: its round is then an AR step (the drafter has seen `pending` all the same)
    keep0, policy_carry = policy.keep(policy.start(memory, b), jnp.int32(0), stats0, accept0)
    v, d = q0.shape[-1], first.hidden.shape[-1]
    draft = ChainDraft(cache=first.cache,
                       tokens=jnp.zeros((b, num_draft), jnp.int32).at[:, 0].set(draw(keys[0], 0, q0)),
                       probs=jnp.zeros((b, num_draft, v), q0.dtype).at[:, 0].set(q0),
                       lengths=keep0.astype(jnp.int32),
                       features=jnp.zeros((b, num_draft, d), first.hidden.dtype).at[:, 0].set(first.hidden[:, -1]),
                       stats=jnp.zeros((b, num_draft, 2), jnp.float32).at[:, 0].set(stats0))

    def cond(state: _Drafting):
        return (state.step < num_draft) & jnp.any(state.live)

    def body(state: _Drafting) -> _Drafting:
        step, draft = state.step, state.draft
        last = lambda a: jax.lax.dynamic_slice_in_dim(a, step - 1, 1, axis=1)            # the previous draft
        out = drafter.forward(draft.cache, Block.chain(last(draft.tokens), ctx.position + step,
                                                       last(draft.features) if reads else None))
        q, s, accept = law(out)
        keep, policy_carry = policy.keep(state.policy_carry, step, s, accept)
        live = state.live & keep
        token = draw(jax.random.fold_in(keys[-1], step), step, q)
        draft = ChainDraft(cache=out.cache, tokens=draft.tokens.at[:, step].set(token),
                           probs=draft.probs.at[:, step].set(q), lengths=draft.lengths + live.astype(jnp.int32),
                           features=draft.features.at[:, step].set(out.hidden[:, -1]),
                           stats=draft.stats.at[:, step].set(s))
        return _Drafting(step + 1, draft, live, policy_carry)

    return jax.lax.while_loop(cond, body, _Drafting(jnp.int32(1), draft, keep0, policy_carry)).draft


def score_chain(drafter: Handle, cache: Any, ctx: DecodeContext, tokens: jax.Array) -> jax.Array:
    """The drafter's logits `[B, K, V]` for drafting `tokens [B, K]` from `ctx` as `draft_chain` does (step k's
    law, whose draft is tokens[:, k], after tokens[:, :k]): one call over (prev, pending), then one per token, each
    reading the previous call's output as its feature. Differentiable in the drafter's parameters (a Python loop
    over the static K), for training on the chains a drafter drafts; `cache` as in `draft_chain`."""
    reads = drafter.runner.reads_features
    out = drafter.forward(cache, Block.chain(jnp.stack([ctx.prev, ctx.pending], 1), ctx.position - 1,
                                             ctx.features if reads else None))
    logits = [out.logits[:, -1]]
    for k in range(1, tokens.shape[1]):
        out = drafter.forward(out.cache, Block.chain(tokens[:, k - 1:k], ctx.position + k,
                                                     out.hidden[:, -1:] if reads else None))
        logits.append(out.logits[:, -1])
    return jnp.stack(logits, axis=1)


# the cache is donated: a Python loop over steps updates it in place instead of copying it every call
draft_step = jax.jit(draft_chain, static_argnames=("num_draft", "sampling", "policy", "shares_target_cache"),
                     donate_argnames=("cache",))
