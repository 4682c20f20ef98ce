"""The acceptance profile of a drafter for a target at temperature 0, measured teacher-forced on the target's own
greedy text: for every start t and depth d, the rank of the target's token z[t+d] in the drafter's depth-d law
along the true path (what the drafter would have drafted, at that depth, in a round starting at t).

Under greedy verification a round starting at t accepts a static tree's path p iff ranks[t, :len(p)] == p, so these
ranks give a chain's or a static tree's τ on the text exactly (`trees.sequoia.empirical_reward`) and the positional
rates Sequoia's dynamic program needs (`AcceptanceProfile.from_ranks`).

One drafter call per depth scores every start at once (`specjax.training.unrolled.unrolled_drafts`: the drafter unrolled
on its own outputs along the text, as a decode runs it past its first draft).

The same unrolled laws give a training-time estimate of a chain's τ at any temperature (`chain_terms`,
`estimated_chain_tau`, `text_chain_tau`): along text the target sampled, P(the first k drafts accepted) =
E_z[prod_{d<k} min(1, q_d(z_d) / p(z_d)) * sum_x min(p, q_k)(x)], so the quantities drafter training already has
(the target's teacher-forced laws and the head unrolled on its own outputs, as in EAGLE-3's training-time test)
estimate τ without decoding.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from specjax.model.block import Block
from specjax.runners.base import Handle
from specjax.runners.base import shifted_features
from specjax.training.unrolled import unrolled_drafts
from specjax.sampling import SamplingConfig, warp_logits


def _rank_of(logits: jax.Array, token: jax.Array) -> jax.Array:
    """Rank of `token [M]` in each row of `logits [M, V]` (top_k order: larger first, ties to the smaller id); V
    when its logit is -inf (a VocabTrim head never drafts it)."""
    x = jnp.take_along_axis(logits, token[:, None], axis=1)
    ids = jnp.arange(logits.shape[1])[None, :]
    rank = jnp.sum((logits > x) | ((logits == x) & (ids < token[:, None])), axis=1)
    return jnp.where(jnp.isfinite(x[:, 0]), rank, logits.shape[1])


def teacher_forced_ranks(target: Handle, drafter: Handle, text: Sequence[int], prompt_len: int, depth: int
                         ) -> np.ndarray:
    """ranks `[starts, depth]` int: rank of z[t+d] under the drafter at depth d (1-based d = column + 1), for every
    start t in [prompt_len, len(text) - depth - 1]. text: the prompt then the target's greedy continuation."""
    z = np.asarray(text, np.int32)
    m = z.size
    if not 1 <= prompt_len < m - depth:
        raise ValueError(f"text of {m} tokens leaves no start after a prompt of {prompt_len} for depth {depth}")
    return np.asarray(_ranks(target, drafter, jnp.asarray(z)[None], depth=depth))[prompt_len:m - depth]


def next_token_logits(target: Handle, drafter: Handle, texts: np.ndarray, rows: np.ndarray, cols: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Teacher-forced next-token logits of the target and of the drafter's first draft, one forward each over the
    whole batch: texts `[B, M]` int (right-padded; padding is never seen by an earlier position), rows, cols `[N]`
    int: the contexts texts[r, :c + 1]. Returns (target logits `[N, V]`, drafter logits `[N, V]`) float32; -inf
    where the drafter never drafts (VocabTrim). EAGLE heads read the target's features along the text, as in the
    first draft of a round (the committed prefix re-scored with the target's features, see the module docstring)."""
    z = jnp.asarray(texts, jnp.int32)
    p_logits, hidden = _target_out(target, z)
    feats = shifted_features(hidden) if drafter.runner.reads_features else None
    cache = drafter.init_cache(z.shape[0], z.shape[1])
    q_logits = _forward(drafter, cache, Block.chain(z, jnp.zeros((z.shape[0],), jnp.int32), feats)).logits
    rows, cols = jnp.asarray(rows), jnp.asarray(cols)
    return np.asarray(p_logits[rows, cols]), np.asarray(q_logits[rows, cols])


@jax.jit
def _target_out(target, z):
    out = target.score(z)
    return out.logits, out.hidden


def _ranks(target: Handle, drafter: Handle, z: jax.Array, depth: int) -> jax.Array:
    """ranks `[M, depth]`: column d-1 at row t is the depth-d rank of z[t+d] (rows past M - d - 1 are junk)."""
    hidden = _target_out(target, z)[1]                                            # [1, M, D]
    nxt = _next_tokens(z)[0]
    return jnp.stack([_by_start(_rank_of(logits[0], nxt), d)
                      for d, logits in enumerate(_unrolled_logits(drafter, z, hidden, depth), 1)], axis=1)


def _next_tokens(z: jax.Array) -> jax.Array:
    """`[B, M]`: the token each query predicts, z[s+1] (wrapped at the end: junk there)."""
    return jnp.concatenate([z[:, 1:], z[:, :1]], axis=1)


def _by_start(values: jax.Array, d: int) -> jax.Array:
    """A depth-d column indexed by query s (`[..., M]`) re-indexed by the chain's start t = s - d + 1."""
    pad = jnp.zeros(values.shape[:-1] + (d - 1,), values.dtype)
    return jnp.concatenate([values[..., d - 1:], pad], axis=-1)


# --- the training-time τ estimate -------------------------------------------------------------------------------

@struct.dataclass
class ChainTerms:
    """Per text b, start t and depth d (column d-1), along texts the target sampled: weight `[B, M, D]` =
    min(1, q_d(z) / p(z)) at the text's token z[t+d] (q_d: the drafter's depth-d law, p: the target's, both
    warped); accept `[B, M, D]` = sum_x min(p, q_d)(x), the probability that the depth-d draft is accepted given
    the chain so far; valid `[B, M]`: start t lies in [first, length - D - 1]."""

    weight: jax.Array
    accept: jax.Array
    valid: jax.Array


def chain_terms(drafter: Handle, z: jax.Array, target_logits: jax.Array, hidden: jax.Array, depth: int,
                sampling: SamplingConfig, lengths: jax.Array | None = None, first: int | jax.Array = 1
                ) -> ChainTerms:
    """The terms of the chain estimate along texts z `[B, M]` (lengths `[B]`, default M) from what drafter training
    already has: the target's logits `[B, M, V]` and hidden states `[B, M, D]` over z, and the drafter unrolled on
    its own outputs (`specjax.training.unrolled.unrolled_drafts`). `first` (int or `[B]`): the earliest start (a chain's
    pending token z[t] must be the target's, e.g. the first answer token after a prompt; 1 at least: position 0
    has no feature)."""
    b, m = z.shape
    lengths = jnp.full((b,), m, jnp.int32) if lengths is None else jnp.asarray(lengths, jnp.int32)
    first = jnp.broadcast_to(jnp.asarray(first, jnp.int32), (b,))
    nxt = _next_tokens(z)
    p = warp_logits(target_logits, sampling)                                      # [B, M, V]
    p_next = jnp.take_along_axis(p, nxt[..., None], axis=-1)[..., 0]
    weights, accepts = [], []
    for d, logits in enumerate(_unrolled_logits(drafter, z, hidden, depth), 1):
        q = warp_logits(logits, sampling)
        q_next = jnp.take_along_axis(q, nxt[..., None], axis=-1)[..., 0]
        # where the target could not have sampled the text's token (p = 0) the text is not its: weight 0
        w = jnp.where(p_next > 0, jnp.minimum(1.0, q_next / jnp.where(p_next > 0, p_next, 1.0)), 0.0)
        weights.append(_by_start(w, d))
        accepts.append(_by_start(jnp.sum(jnp.minimum(p, q), axis=-1), d))
    t = jnp.arange(m)[None, :]
    valid = (t >= first[:, None]) & (t <= lengths[:, None] - depth - 1)
    return ChainTerms(jnp.stack(weights, -1), jnp.stack(accepts, -1), valid)


def estimated_chain_tau(terms: ChainTerms, sample_weights: jax.Array | None = None) -> np.ndarray:
    """`[D]`: the estimated τ (tokens per round) of chains of K = 1..D drafts,
    τ(K) = 1 + sum_{k<=K} E_t[ prod_{d<k} weight_d * accept_k ].

    Unbiased for the expected accepted length of a round when the texts were sampled from the target under the
    same sampling (E_{z~p} prod_{d<k} min(1, q_d/p)(z_d) * sum min(p, q_k) = sum_z prod_{d<=k} min(p, q_d)(z_d),
    the probability that the first k drafts are accepted); at temperature 0 on greedy text it is the exact chain
    τ on that text. sample_weights `[B]`: weights of the texts (default equal)."""
    survive = jnp.cumprod(jnp.concatenate([jnp.ones_like(terms.weight[..., :1]), terms.weight[..., :-1]], -1), -1)
    reach = survive * terms.accept                                                # P(draft k accepted) per start
    mask = terms.valid.astype(jnp.float32)
    if sample_weights is not None:
        mask = mask * jnp.asarray(sample_weights, jnp.float32)[:, None]
    mean = jnp.sum(reach * mask[..., None], axis=(0, 1)) / jnp.sum(mask)
    return 1.0 + np.cumsum(np.asarray(mean, np.float64))


def text_chain_tau(target: Handle, drafter: Handle, texts: Sequence[Sequence[int]], prompt_lengths: Sequence[int],
                   depth: int, sampling: SamplingConfig, chunk: int = 8) -> np.ndarray:
    """`[depth]`: the estimated τ of chains of K = 1..depth drafts (`estimated_chain_tau`) over starts in the
    answers of `texts` (each a prompt of `prompt_lengths[i]` tokens, then the target's own answer sampled under
    `sampling`): one target forward, then `hidden_chain_tau`."""
    lengths = np.array([len(t) for t in texts], np.int32)
    _check_answers(lengths, prompt_lengths, depth)                       # before the target runs
    z = np.zeros((len(texts), int(lengths.max())), np.int32)
    for i, t in enumerate(texts):
        z[i, :len(t)] = t
    hidden = np.concatenate([np.asarray(_target_out(target, jnp.asarray(z[i:i + chunk]))[1])
                             for i in range(0, len(z), chunk)])
    return hidden_chain_tau(target, drafter, z, hidden, lengths, prompt_lengths, depth, sampling, chunk)


def hidden_chain_tau(target: Handle, drafter: Handle, tokens: np.ndarray, hidden: np.ndarray, lengths: Sequence[int],
                     prompt_lengths: Sequence[int], depth: int, sampling: SamplingConfig, chunk: int = 8
                     ) -> np.ndarray:
    """`text_chain_tau` from what drafter training stores: tokens `[N, M]` (right-padded to `lengths [N]`) and the
    target's final-normed hidden states over them `[N, M, D]` (its logits are its head applied to them); `chunk`
    texts at a time (a chunk's laws are `[chunk, M, V]`)."""
    tokens, hidden = np.asarray(tokens, np.int32), np.asarray(hidden)
    lengths, first = np.asarray(lengths, np.int32), np.asarray(prompt_lengths, np.int32)
    if not (len(tokens) == len(hidden) == len(lengths) == len(first)) or hidden.shape[:2] != tokens.shape:
        raise ValueError(f"tokens {tokens.shape}, hidden {hidden.shape}, lengths and prompt lengths disagree")
    _check_answers(lengths, first, depth)
    parts = []
    for i in range(0, len(tokens), chunk):
        z, h = jnp.asarray(tokens[i:i + chunk]), jnp.asarray(hidden[i:i + chunk])
        parts.append(chain_terms(drafter, z, _head(target, h), h, depth, sampling, lengths[i:i + chunk],
                                 first[i:i + chunk]))
    return estimated_chain_tau(jax.tree.map(lambda *a: jnp.concatenate(a), *parts))


def _check_answers(lengths: np.ndarray, prompt_lengths, depth: int) -> None:
    """ValueError unless each text has a prompt of >= 1 token and an answer of more than `depth` tokens."""
    first = np.asarray(prompt_lengths, np.int32)
    if first.shape != lengths.shape or np.any(first < 1) or np.any(first > lengths - depth - 1):
        raise ValueError(f"every text needs a prompt of >= 1 token and an answer of more than {depth} tokens "
                         f"(text lengths {lengths.tolist()}, prompt lengths {first.tolist()})")


@jax.jit
def _head(target, hidden):
    return target.runner.head(target.params, hidden)


@jax.jit
def _forward(drafter, cache, block):
    return drafter.forward(cache, block)


def _unrolled_logits(drafter: Handle, z: jax.Array, hidden: jax.Array, depth: int):
    """The depth-d logits `[B, M, V]` of `unrolled_drafts`, d = 1..depth, each depth one jitted call."""
    return (out.logits for out in unrolled_drafts(drafter, z, hidden, depth, partial(_forward, drafter)))
