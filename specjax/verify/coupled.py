"""Coupled, drafter-invariant verifiers: the drafts and the target's token come from one race drawn from the PRNG key,
so the emitted token is a function of (key, p) alone, whatever the drafter (transport/THEORY.md §3.11).

* DISD (`disd`, one draft; Daliri, Musco & Suresh, arXiv 2408.07978): the draft is the Gumbel-max winner under q,
  x = argmax log q + g, the target's token the winner under p with the same noise, y = argmax log p + g; the draft is
  accepted iff x = y, else y is emitted. (Gumbel-max with g = −log E, E ~ Exp(1), is the exponential race
  argmin E/q of the paper.)
* Gumbel list (`gumbel_list`, k drafts): the drafts are the k best scores log q + g in decreasing order (Gumbel-top-k:
  a without-replacement sample of q in sampling order); the slot holding y is accepted, if any. k = 1 is DISD.

The rule always emits y, the target's own Gumbel-max sample for this key (`target_token`): the output law is p exactly
for any drafts (a wrong or stale drafter only lowers acceptance). The coupling lives in the key: a decode loop passes
the SAME key to the drafter (`coupled_drafts`) and to the verifier. With one key per output position (e.g.
`fold_in(base, position)`, never per round: different drafters end their rounds at different positions),
speculative decoding emits, token for token, the sequence `target_token` gives with those keys, whatever the drafter.
The race `[V]` is always drawn in float32 (`race_times`), whatever the dtypes of p and q, so a float32 drafter and
a float64 verifier share one race.

Shape contract as `specjax.verify.multi_draft`: rule(key, p[V], q[V], drafts[k] int, valid[k] bool) -> (slot int32,
token int32); `slot` is the first valid slot holding the token (-1 if none); a valid=False slot is never accepted.
Inputs are checked eagerly (ValueError on concrete inputs, shapes only under jit/vmap).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from specjax.validation import check_int, check_key, check_probs
from specjax.verify.chain import PAD_TOKEN
from specjax.verify.checks import check_distinct, check_rule_inputs
from specjax.verify.multi_draft import _slot_of

RACE_DTYPE = jnp.float32


@partial(jax.jit, static_argnums=1)
def race_times(key: jax.Array, vocab_size: int) -> jax.Array:
    """The shared race: Exp(1) times E `[V]` (float32) from `key`, E = −log u with u the uniform `jax.random.gumbel`
    draws from the same key (its noise is g = −log E)."""
    u = jax.random.uniform(key, (vocab_size,), RACE_DTYPE, minval=jnp.finfo(RACE_DTYPE).tiny, maxval=1.0)
    return -jnp.log(u)


def race_scores(key: jax.Array, probs: jax.Array) -> jax.Array:
    """probs / E `[..., V]` for the race E `[V]` of `key`, shared by every leading index of probs: the larger, the
    earlier the token arrives in that law's race (the order of log probs + g, the Gumbel-max scores, at one log per
    token instead of two; 0 where probs is 0). In probs' dtype widened to at least float32 (the race is never
    rounded below float32)."""
    dtype = jnp.promote_types(probs.dtype, RACE_DTYPE)
    return probs.astype(dtype) / race_times(key, probs.shape[-1]).astype(dtype)


@jax.jit
def _winner(key, p):
    return jnp.argmax(race_scores(key, p)).astype(jnp.int32)


def target_token(key: jax.Array, p: jax.Array) -> jax.Array:
    """The target's race winner for p `[V]` -> int32 `[]`: exactly a sample of p (Gumbel-max), and the token every
    coupled rule emits for this key."""
    check_key("key", key)
    check_probs("p", p, ndim=1)
    return _winner(key, jnp.asarray(p))


@partial(jax.jit, static_argnums=2)
def _coupled_drafts(key, q, k):
    top, drafts = jax.lax.top_k(race_scores(key, q), k)
    return drafts.astype(jnp.int32), top > 0


def coupled_drafts(key: jax.Array, q: jax.Array, k: int = 1) -> tuple[jax.Array, jax.Array]:
    """The drafter's side: drafts, valid `[k]` from q `[V]` and the race of `key`, 1 <= k <= V (k is static).
    The drafts are the k best of log q + g in decreasing order: a without-replacement sample of q in sampling order
    (k = 1: one draw from q). Slots beyond |supp q| are marked invalid (junk ids in [0, V)). For float32 q these are
    exactly `draft_laws.sample_without_replacement(key, q, k)`."""
    check_key("key", key)
    check_probs("q", q, ndim=1)
    k = check_int("k", k, low=1, high=jnp.shape(q)[0])
    return _coupled_drafts(key, jnp.asarray(q), k)


@jax.jit
def _coupled(key, p, drafts, valid):
    token = _winner(key, p)
    return _slot_of(token, drafts, valid), token


def gumbel_list_of_times(times: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """`gumbel_list` on a race already drawn (times `[V]`, a slot of `round_races`) and without input checks, for
    jitted loops (a coupled tree walk's per-node rule); q is unused (the race carries the coupling). The token is the
    target's race winner even when no slot is valid (a leaf's bonus)."""
    token = race_winners(times, p)
    return _slot_of(token, drafts, valid), token


def gumbel_list(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Gumbel list verification of k coupled drafts (`coupled_drafts(key, q, k)` with the SAME key); p, q `[V]`,
    drafts, valid `[k]` -> (slot, token). Emits y = `target_token(key, p)` and accepts the valid slot holding it.
    Lossless for any drafts; the acceptance P(y ∈ drafts) of `transport.exact.coupled` holds for coupled drafts. Valid
    drafts must be distinct and have q(x) > 0 (checked on concrete inputs, assumed under jit)."""
    check_key("key", key)
    check_distinct(check_rule_inputs(p, q, drafts, valid), "coupled (without-replacement)")
    return _coupled(key, jnp.asarray(p), jnp.asarray(drafts), jnp.asarray(valid))


def disd(key: jax.Array, p: jax.Array, q: jax.Array, drafts: jax.Array, valid: jax.Array):
    """Drafter-invariant speculative decoding for one coupled draft (`coupled_drafts(key, q, 1)` with the SAME key);
    p, q `[V]`, drafts, valid `[1]` -> (slot, token): accept the draft iff it is the target's race winner y, else emit
    y. Acceptance Σ_v 1 / Σ_j max(q_j/q_v, p_j/p_v), between (1 − TV)/(1 + TV) and 1 − TV (THEORY §3.11)."""
    check_key("key", key)
    check_rule_inputs(p, q, drafts, valid, max_slots=1)
    return _coupled(key, jnp.asarray(p), jnp.asarray(drafts), jnp.asarray(valid))


# ---- chains: one race per output position (the decode loop's `disd` chain verifier) --------------------------------

# the stream of the run's key the races are folded from (`fold_in(key, RACE_STREAM)`), apart from the streams the
# decode loop folds by round (0 = prefill, 1, 2, ... = rounds)
RACE_STREAM = 2**31 - 1

def position_keys(key: jax.Array, positions: jax.Array, width: int) -> jax.Array:
    """The race keys `[B, width]` of output positions `positions[b] + j` (j < width) of each row b: fold_in(fold_in(key,
    b), position). A function of (key, row, position) alone, never of the round, so every drafter (and AR) meets the
    same race at the same output position."""
    rows = jnp.arange(positions.shape[0])
    per_row = jax.vmap(lambda r: jax.random.fold_in(key, r))(rows)
    at = positions[:, None] + jnp.arange(width)[None, :]
    return jax.vmap(lambda k, ps: jax.vmap(lambda p: jax.random.fold_in(k, p))(ps))(per_row, at)


def output_races(key: jax.Array, position: jax.Array, width: int) -> jax.Array:
    """The race keys `[B, width]` of the tokens a round starting at `position [B]` (the pending token's) may emit:
    output positions position + 1 .., from the run's key `key` (its RACE_STREAM). What a coupled speculator's drafts
    and verdicts share."""
    return position_keys(jax.random.fold_in(key, RACE_STREAM), position + 1, width)


def round_races(key: jax.Array, position: jax.Array, width: int, vocab_size: int) -> jax.Array:
    """The race times `[B, width, V]` (float32) of the output positions a round starting at `position [B]` may emit
    (`output_races`), drawn once a round and shared by the drafter's draws and the verdicts (`race_winners`)."""
    keys = output_races(key, position, width)
    return jax.vmap(jax.vmap(lambda k: race_times(k, vocab_size)))(keys)


def race_winners(times: jax.Array, probs: jax.Array) -> jax.Array:
    """The winner of each slot's race: times `[..., V]` (`round_races`), probs `[..., V]` -> int32 `[...]`: argmax
    probs / E, a sample of each slot's law, coupled with every other law raced with the same times."""
    dtype = jnp.promote_types(probs.dtype, RACE_DTYPE)
    return jnp.argmax(probs.astype(dtype) / times.astype(dtype), axis=-1).astype(jnp.int32)


def accept_coupled_chain_unchecked(times: jax.Array, draft_tokens: jax.Array, draft_probs: jax.Array,
                                   target_probs: jax.Array, num_drafted: jax.Array | None = None):
    """DISD along a chain: times `[B, >= K+1, V]` (`round_races`: the races of the K drafts' and the bonus token's
    positions), draft_tokens `[B, K]` drafted as `race_winners(times[:, :K], draft_probs)` (the same races), target_probs
    `[B, K+1, V]`, num_drafted `[B]` (default K) -> (num_accepted `[B]`, tokens `[B, K+1]`, PAD after n + 1).
    y_i = the target's race winner at slot i; drafts are accepted while x_i = y_i, then y_n is emitted. The tokens are
    y_0..y_n whatever was drafted: each position's token is its race's winner under the target's law, a sample of it
    (independent races: exact joint law), and a function of the key alone (transport/THEORY.md §3.11). draft_probs
    is unused (the race carries the coupling); it is taken for the chain-rule contract."""
    b, k = draft_tokens.shape
    y = race_winners(times[:, :k + 1], target_probs)      # a narrower verification width uses the first races
    drafted = jnp.full((b,), k, jnp.int32) if num_drafted is None else num_drafted
    match = (draft_tokens == y[:, :k]) & (jnp.arange(k)[None, :] < drafted[:, None])
    n = jnp.sum(jnp.cumprod(match.astype(jnp.int32), axis=1), axis=1).astype(jnp.int32)
    tokens = jnp.where(jnp.arange(k + 1)[None, :] <= n[:, None], y, PAD_TOKEN)
    return n, tokens
