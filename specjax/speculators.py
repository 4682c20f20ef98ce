"""Speculators: what one decode round does (draft, score, verify, commit), behind one narrow contract, and the
registry that names them.

A speculator is a frozen (hashable) object, the static key of the jitted loop. Its contract:
- `max_emit` (the most tokens a round emits) and `capacity_margin` (cache slots a round may write past the
  committed prefix), both static;
- `check(target, drafter, sampling)`: eager, plain-Python validation of the combination; raises ValueError for a
  combination that cannot work, before anything is traced;
- `init_memory(batch, target)`: per-row state carried between rounds (a draft-length policy's), or None;
- `round(target, drafter, caches, ctx, key, sampling, memory) -> RoundOutput` (`specjax.state`).

`ChainSpeculator` covers autoregressive decoding (`num_draft=0`) and chain speculative decoding, verified token by
token or as a block (`verifier`). Tree methods live
in the `trees` package and register themselves here when it is imported, so the core never imports them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from specjax.block import Block
from specjax.draft import draft_chain
from specjax.policies import DraftPolicy, Fixed, check_k_max, parse_policy
from specjax.runners import Forward, Handle, Runner
from specjax.sampling import SamplingConfig, warp_logits
from specjax.state import Caches, DecodeContext, RoundOutput
from specjax.validation import check_int
from specjax.verify.block import accept_block_unchecked
from specjax.verify.chain import PAD_TOKEN, accept_chain_unchecked
from specjax.verify.names import CHAIN_VERIFIERS, check_name



class Speculator:
    """Base class of the round contract (see the module docstring)."""

    @property
    def max_emit(self) -> int:
        raise NotImplementedError

    @property
    def capacity_margin(self) -> int:
        raise NotImplementedError

    @property
    def needs_drafter(self) -> bool:
        return True

    def check(self, target: Runner, drafter: Runner | None, sampling: SamplingConfig) -> None:
        check_pair(self, target, drafter)

    def with_verifier(self, verifier: str) -> "Speculator":
        """This method verified by `verifier` (ValueError if the method cannot use it)."""
        raise ValueError(f"{self!r} takes no verifier")

    def init_memory(self, batch: int, target: Runner) -> Any:
        """What the method remembers per row between rounds (a pytree of `[B, ...]` arrays), or None."""
        return None

    def round(self, target: Handle, drafter: Handle | None, caches: Caches, ctx: DecodeContext, key: jax.Array,
              sampling: SamplingConfig, memory: Any = None) -> RoundOutput:
        raise NotImplementedError


class ChainShaped(Speculator):
    """A speculator whose rounds are chains of up to `num_draft` (K) drafts verified by `verifier` (fields of the
    dataclass that subclasses it): a round emits at most K + 1 tokens and writes K + 1 cache slots."""

    @property
    def max_emit(self) -> int:
        return self.num_draft + 1

    @property
    def capacity_margin(self) -> int:
        return self.num_draft + 1

    def with_verifier(self, verifier: str) -> "ChainShaped":
        return dataclasses.replace(self, verifier=verifier)


def check_pair(method: Speculator, target: Runner, drafter: Runner | None) -> None:
    """The checks every method shares: the target is a model (it emits the features EAGLE-style drafters read), a
    drafter iff the method drafts, the same vocabulary, and features of the right width for a drafter that reads
    them. ValueError names what is wrong."""
    if not target.emits_features:
        raise ValueError(f"{target.name} cannot be a target: a target is a model that emits its hidden states")
    if not method.needs_drafter:
        if drafter is not None:
            raise ValueError(f"{method!r} drafts nothing: pass no drafter")
        return
    if drafter is None:
        raise ValueError(f"{method!r} needs a drafter")
    if drafter.config.vocab_size != target.config.vocab_size:
        raise ValueError(f"drafter vocabulary ({drafter.config.vocab_size}) does not match the target's "
                         f"({target.config.vocab_size})")
    if drafter.reads_features and drafter.feature_width != target.feature_width:
        raise ValueError(f"drafter {drafter.name} reads features of width {drafter.feature_width}, the target's "
                         f"are {target.feature_width} (a drafter of fused features decodes with the target handle "
                         f"it was built from: specjax.runners.fused_features)")


CHAIN_RULES = {"token": accept_chain_unchecked, "block": accept_block_unchecked}


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
        num_accepted, emitted = CHAIN_RULES[verifier](key, draft_tokens, draft_probs, target_probs, num_drafted)
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
        rule = verifier if w else "token"         # with nothing drafted every rule samples the target's own law
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
    draft length chosen per round by `policy` (None: always K_max); `num_draft=0` is autoregressive decoding."""

    num_draft: int
    verifier: str = "token"
    policy: DraftPolicy | None = None

    def __post_init__(self):
        check_int("num_draft", self.num_draft, low=0)
        check_name(self.verifier, CHAIN_VERIFIERS, "chain verifier")
        if self.policy is not None and self.num_draft < 1:
            raise ValueError("a draft-length policy needs K_max >= 1 drafts")
        if self.policy is not None and self.policy.self_drafting:
            raise ValueError(f"the {self.policy.name} policy drafts from the target itself: build it with "
                             "make_method('chain', policy=...)")

    def check(self, target, drafter, sampling) -> None:
        check_pair(self, target, drafter)
        if self.policy is not None and self.policy.reads_acceptance and not hasattr(drafter, "accept_prob"):
            raise ValueError(f"the {self.policy.name} policy reads predicted acceptances: give the drafter an "
                             "acceptance head (specjax.acceptance_head.with_acceptance_head)")

    def init_memory(self, batch: int, target: Runner) -> Any:
        return None if self.policy is None else self.policy.init(batch)

    @property
    def needs_drafter(self) -> bool:
        return self.num_draft > 0

    def round(self, target, drafter, caches, ctx, key, sampling, memory=None):
        b = ctx.pending.shape[0]
        key_draft, key_verify = jax.random.split(key)
        if self.num_draft == 0:
            tokens = jnp.zeros((b, 0), jnp.int32)
            probs = jnp.zeros((b, 0, target.config.vocab_size), jnp.float32)
            v = verify_chain(target, caches.target, ctx, tokens, probs, key_verify, sampling, self.verifier)
            return RoundOutput(Caches(v.cache, caches.drafter), v.tokens, v.num_accepted, jnp.zeros((b,), jnp.int32),
                               v.hidden)
        with jax.named_scope("draft"):
            draft = draft_chain(drafter, caches.drafter, ctx, key_draft, self.num_draft, sampling,
                                self.policy or Fixed(), memory)
        if self.policy is None:
            v = verify_chain(target, caches.target, ctx, draft.tokens, draft.probs, key_verify, sampling,
                             self.verifier)
        else:
            v = verify_ragged_chain(target, caches.target, ctx, draft.tokens, draft.probs, draft.lengths, key_verify,
                                    sampling, self.verifier)
            memory = self.policy.update(memory, draft.lengths, v.num_accepted)
        return RoundOutput(Caches(v.cache, draft.cache), v.tokens, v.num_accepted, draft.lengths, v.hidden, memory)


# --- the registry: method name -> factory(**options) -> Speculator --------------------------------------------

METHODS: dict[str, Callable[..., Speculator]] = {}


def register_method(name: str, factory: Callable[..., Speculator]) -> None:
    """Make `make_method(name, **options)` build `factory(**options)` (re-registering a name replaces it)."""
    METHODS[name] = factory


def make_method(name: str, **options: Any) -> Speculator:
    """The speculator registered as `name`, built with `options` (e.g. `make_method("chain", num_draft=4)`,
    `make_method("rsd-c", budget=16)` once `trees` is imported). ValueError on an unknown name or option."""
    if name not in METHODS:
        hint = "" if "eagle" in METHODS else " (tree methods register when the `trees` package is imported)"
        raise ValueError(f"unknown method {name!r}; registered: {sorted(METHODS)}{hint}")
    try:
        return METHODS[name](**options)
    except TypeError as e:                  # an option the factory does not take
        raise ValueError(f"method {name!r}: {e}") from None


register_method("ar", lambda: ChainSpeculator(0))


def _chain(num_draft: int = 4, verifier: str = "token", policy: str | DraftPolicy | None = None) -> Speculator:
    check_k_max(num_draft)
    if isinstance(policy, str):
        policy = parse_policy(policy)
    if policy is not None and policy.self_drafting:
        from specjax.dynamic_exit import DynamicExitSpeculator     # it builds on this module: imported on demand
        return DynamicExitSpeculator(num_draft, verifier, policy)
    return ChainSpeculator(num_draft, verifier, None if isinstance(policy, Fixed) else policy)


register_method("chain", _chain)
