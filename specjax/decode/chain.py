"""Chain rounds: `verify_chain` (score `[pending, drafts]` in one target call and apply a chain rule),
`verify_ragged_chain` (the same for per-row draft lengths, at the narrowest compiled width), and `ChainSpeculator`,
which covers autoregressive decoding (`num_draft=0`) and chain speculative decoding verified token by token or as a
block.
"""
from __future__ import annotations
import functools
from dataclasses import dataclass
from typing import Any, Callable
import jax
import jax.numpy as jnp
from flax import struct
from specjax.model.block import Block
from specjax.decode.draft import draft_chain
from specjax.decode.policies import DraftPolicy, Fixed
from specjax.runners.base import Forward, Handle, Runner
from specjax.sampling import SamplingConfig, warp_logits
from specjax.decode.speculator import ChainShaped, check_pair
from specjax.decode.state import Caches, DecodeContext, RoundOutput
from specjax.validation import check_int
from specjax.verify.block import accept_block_unchecked
from specjax.verify.chain import PAD_TOKEN, accept_chain_unchecked
from specjax.verify.coupled import accept_coupled_chain_unchecked, round_races
from specjax.verify.hsd import accept_hsd_unchecked
from specjax.verify.lossy import accept_lossy_unchecked
from specjax.verify.names import COUPLED_CHAIN_VERIFIERS, check_chain_verifier


# lossless rules, then the lossy ones a speculator runs only when built with allow_lossy (specjax.verify.names)
CHAIN_RULES = {"token": accept_chain_unchecked, "block": accept_block_unchecked, "disd": accept_coupled_chain_unchecked,
               "hsd": accept_hsd_unchecked}


def chain_rule(verifier: str) -> Callable:
    """The jitted rule `(key, draft_tokens, draft_probs, target_probs, num_drafted) -> (num_accepted, tokens)` of a
    chain verifier: one of CHAIN_RULES, or a lossy rule of specjax.verify.lossy written NAME[:values]."""
    return CHAIN_RULES.get(verifier) or functools.partial(accept_lossy_unchecked, verifier)


@struct.dataclass
class ChainVerdict:
    """What `verify_chain` returns: the target cache with the block written at `position`; num_accepted `[B]`;
    tokens `[B, K+1]` (the accepted drafts, then the correction or bonus token, PAD after); hidden `[B, K+1, D]`
    (the target's hidden states over `[pending, drafts]`); observed: what the `observe` hook returned (None
    without)."""

    cache: Any
    num_accepted: jax.Array
    tokens: jax.Array
    hidden: jax.Array
    observed: Any = None


def verify_chain(target: Handle, target_cache: Any, ctx: DecodeContext, draft_tokens: jax.Array,
                 draft_probs: jax.Array, key: jax.Array, sampling: SamplingConfig, verifier: str = "token",
                 num_drafted: jax.Array | None = None,
                 observe: Callable[[Forward, jax.Array], Any] | None = None) -> ChainVerdict:
    """Verify step: score `[pending, drafts]` in one target call and apply the chain rule `verifier`
    (CHAIN_VERIFIERS: token by token, or block verification).

    draft_tokens `[B, K]`, draft_probs `[B, K, V]`, num_drafted `[B]` (default K: slots past it are absent).
    observe: called with the target's forward and its warped laws `[B, K+1, V]` (a policy learning from the
    verification pass, e.g. DEL's shadow tokens); what it returns must not depend on K. The committed path is the
    block prefix, so the cache needs no copy: slots past it are stale and invisible.
    """
    tokens = jnp.concatenate([ctx.pending[:, None], draft_tokens], axis=1)
    with jax.named_scope("score"):
        out = target.forward(target_cache, Block.chain(tokens, ctx.position))
    with jax.named_scope("verify"):
        target_probs = warp_logits(out.logits, sampling)
        num_accepted, emitted = chain_rule(verifier)(key, draft_tokens, draft_probs, target_probs, num_drafted)
    return ChainVerdict(out.cache, num_accepted, emitted, out.hidden,
                        None if observe is None else observe(out, target_probs))


def verify_widths(k_max: int) -> tuple[int, ...]:
    """The verification widths (drafts scored) compiled for adaptive drafting: 0 (every row declined to draft: an
    AR step), powers of two below K_max, and K_max."""
    widths, w = [0], 1
    while w < k_max:
        widths.append(w)
        w *= 2
    return tuple(widths) + (k_max,)


def verify_ragged_chain(target: Handle, target_cache: Any, ctx: DecodeContext, draft_tokens: jax.Array,
                        draft_probs: jax.Array, num_drafted: jax.Array, key: jax.Array, sampling: SamplingConfig,
                        verifier: str, observe: Callable[[Forward, jax.Array], Any] | None = None) -> ChainVerdict:
    """`verify_chain` for rows that drafted `num_drafted [B]` (0..K_max) of K_max slots: the target scores only the
    smallest compiled width that holds the longest row (`lax.switch` over `verify_widths`), so rounds where the
    policy stopped early cost a narrower target call, and a round where every row declined to draft costs an AR
    step. Outputs are padded to K_max + 1."""
    k = draft_tokens.shape[1]
    widths = verify_widths(k)

    def branch(w):
        # with nothing drafted every rule samples the target's own law; a coupled rule samples it from its race
        rule = verifier if w or verifier in COUPLED_CHAIN_VERIFIERS else "token"
        def run(cache):
            v = verify_chain(target, cache, ctx, draft_tokens[:, :w], draft_probs[:, :w], key, sampling, rule,
                             num_drafted, observe)
            pad = k - w
            return v.replace(tokens=jnp.pad(v.tokens, ((0, 0), (0, pad)), constant_values=PAD_TOKEN),
                             hidden=jnp.pad(v.hidden, ((0, 0), (0, pad), (0, 0))))
        return run

    index = jnp.searchsorted(jnp.asarray(widths), jnp.max(num_drafted))
    return jax.lax.switch(index, [branch(w) for w in widths], target_cache)


verify_step = jax.jit(verify_chain, static_argnames=("sampling", "verifier"), donate_argnames=("target_cache",))


@dataclass(frozen=True)
class ChainSpeculator(ChainShaped):
    """Chain speculative decoding with up to `num_draft` drafts per round (K_max), verified by `verifier`; each row's
    draft length chosen per round by `policy` (None: always K_max); `num_draft=0` is autoregressive decoding.
    allow_lossy: accept a lossy verifier (`specjax.verify.names.LOSSY_CHAIN_VERIFIERS`); refused without it."""

    num_draft: int
    verifier: str = "token"
    policy: DraftPolicy | None = None
    allow_lossy: bool = False

    def __post_init__(self):
        check_int("num_draft", self.num_draft, low=0)
        check_chain_verifier(self.verifier, self.allow_lossy)
        if self.policy is not None and self.num_draft < 1:
            raise ValueError("a draft-length policy needs K_max >= 1 drafts")
        if self.policy is not None and self.policy.self_drafting:
            raise ValueError(f"the {self.policy.name} policy drafts from the target itself: build it with "
                             "make_method('chain', policy=...)")

    def check(self, target, drafter, sampling) -> None:
        check_pair(self, target, drafter)
        if self.policy is not None and self.policy.reads_acceptance and not hasattr(drafter, "accept_prob"):
            raise ValueError(f"the {self.policy.name} policy reads predicted acceptances: give the drafter an "
                             "acceptance head (specjax.training.acceptance_head.fit_acceptance_head, or "
                             "specjax.runners.acceptance_head.init_acceptance_head to train one yourself)")

    def init_memory(self, batch: int, target: Runner) -> Any:
        return None if self.policy is None else self.policy.init(batch)

    @property
    def needs_drafter(self) -> bool:
        return self.num_draft > 0

    @property
    def keys_by_position(self) -> bool:
        return self.verifier in COUPLED_CHAIN_VERIFIERS

    def round(self, *, target, drafter, caches, ctx, key, sampling, memory=None):
        b = ctx.pending.shape[0]
        key_draft, key_verify = jax.random.split(key)
        races = None
        if self.keys_by_position:
            # a coupled rule: `key` is the run's (`keys_by_position`); drafts and verdicts share the race of each
            # output position (pending's successor at position + 1 onwards)
            races = round_races(key, ctx.position, self.num_draft + 1, target.config.vocab_size)
            key_verify = races
        if self.num_draft == 0:
            tokens = jnp.zeros((b, 0), jnp.int32)
            probs = jnp.zeros((b, 0, target.config.vocab_size), jnp.float32)
            v = verify_chain(target, caches.target, ctx, tokens, probs, key_verify, sampling, self.verifier)
            return RoundOutput(Caches(v.cache, caches.drafter), v.tokens, v.num_accepted, jnp.zeros((b,), jnp.int32),
                               v.hidden)
        with jax.named_scope("draft"):
            draft = draft_chain(drafter, caches.drafter, ctx, key_draft, self.num_draft, sampling,
                                self.policy or Fixed(), memory, races=None if races is None else races[:, :-1])
        if self.policy is None:
            v = verify_chain(target, caches.target, ctx, draft.tokens, draft.probs, key_verify, sampling,
                             self.verifier)
        else:
            v = verify_ragged_chain(target, caches.target, ctx, draft.tokens, draft.probs, draft.lengths, key_verify,
                                    sampling, self.verifier)
            memory = self.policy.update(memory, draft.lengths, v.num_accepted)
        return RoundOutput(Caches(v.cache, draft.cache), v.tokens, v.num_accepted, draft.lengths, v.hidden, memory)

