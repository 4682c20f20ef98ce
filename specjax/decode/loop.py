"""The decode loop: `prefill`, then rounds of (draft, score, verify, commit, record) inside one jitted
`lax.while_loop` over preallocated buffers, with no host round-trip until the loop ends.

A round is delegated to a speculator (`specjax.decode.chain`): chains here, trees from the `trees` package, all under
one contract, so every method shares this loop, its stopping rule and its statistics. Static in the compiled loop:
the runners, the speculator, the sampling warps and the buckets of the prompt width and of `max_new_tokens`; traced:
everything else, `max_new_tokens` and `eos_id` included, so a new value within a bucket does not recompile.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh

from specjax.constrain.automaton import TokenAutomaton
from specjax.constrain.checks import check_constraint
from specjax.constrain.runner import constrain
from specjax.decode.batching import bucket_size
from specjax.parallel.memory import check_budget, plan_generate
from specjax.metrics import acceptance_length, acceptance_per_position
from specjax.runners.base import Forward, Handle, shifted_features
from specjax.sampling import SamplingConfig, sample_token, warp_logits
from specjax.parallel.sharding import shard_decode
from specjax.decode.speculator import Speculator
from specjax.decode.chain import ChainSpeculator
from specjax.decode.state import Caches, DecodeContext, LoopState, select_rows
from specjax.validation import check_int
from specjax.verify.chain import PAD_TOKEN

NO_EOS = -1


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

    @property
    def acceptance_per_position(self) -> list[float]:
        """Entry i: the fraction of rounds whose draft i + 1 was accepted (trees: whose path reached depth i + 1),
        vLLM's convention; τ = 1 + sum (see `specjax.metrics`). As long as the longest accepted run."""
        return acceptance_per_position(np.asarray(self.accepted))

    @property
    def drafted_per_round(self) -> float:
        """Mean drafted tokens per round over the rounds that ran."""
        acc, drafted = np.asarray(self.accepted), np.asarray(self.drafted)
        ran = acc >= 0
        return float(drafted[ran].mean()) if ran.any() else float("nan")


@struct.dataclass
class Prefilled:
    """What `prefill` leaves: caches (both runners' over the prompt; padding slots stale and invisible), ctx (the
    first round's `DecodeContext`) and hidden `[B, L, D]`, the target's hidden states over the prompt (what a second
    drafter's `prefill_drafter` reads, so it can share this target pass)."""

    caches: Caches
    ctx: DecodeContext
    hidden: jax.Array


def prefill(target: Handle, drafter: Handle | None, prompt_tokens: jax.Array, prompt_lengths: jax.Array,
            key: jax.Array, sampling: SamplingConfig, capacity: int, pending: jax.Array | None = None) -> Prefilled:
    """Both caches over the prompt, and the first token sampled from the target's law at the last prompt token.

    prompt_tokens `[B, L]` right-padded, prompt_lengths `[B]`, capacity: cache slots per row (static, see
    `needed_capacity`). pending `[B]`: the first token given instead of sampled (a text's own next token: a
    teacher-forced round at a cut of a text). Jittable; `generate` calls it inside its loop's jit.
    """
    rows = jnp.arange(prompt_tokens.shape[0])
    out = target.score(prompt_tokens, capacity=capacity)
    last = prompt_lengths - 1
    if pending is None:
        pending = sample_token(key, warp_logits(out.logits[rows, last], sampling))
    # the features of prev and pending: the target's states at last - 1 and last (zeros before position 0)
    features = jnp.stack([shifted_features(out.hidden)[rows, last], out.hidden[rows, last]], axis=1)
    ctx = DecodeContext(prev=prompt_tokens[rows, last], pending=pending.astype(jnp.int32), position=prompt_lengths,
                        features=features)
    draft_cache = None if drafter is None else prefill_drafter(drafter, prompt_tokens, out.hidden, capacity).cache
    if drafter is not None:
        draft_cache = drafter.runner.begin(draft_cache, prompt_lengths)
    return Prefilled(Caches(target.runner.begin(out.cache, prompt_lengths), draft_cache), ctx, out.hidden)


def prefill_drafter(drafter: Handle, prompt_tokens: jax.Array, target_hidden: jax.Array, capacity: int) -> Forward:
    """The drafter's pass over the prompt `[B, L]` (right-padded), given the target's hidden states over it
    `target_hidden [B, L, D]` (an EAGLE-style drafter reads the state one position earlier at each token, zeros at
    0): its `Forward`, whose cache is what `prefill` keeps for its drafter. A second drafter (a frozen reference,
    say) can share one target pass; a trainer can read the drafter's hidden states (unused outputs cost nothing
    under jit)."""
    features = shifted_features(target_hidden) if drafter.runner.reads_features else None
    return drafter.score(prompt_tokens, features, capacity)


def needed_capacity(prompt_width: int, speculator: Speculator, new_tokens: int = 0) -> int:
    """Cache slots per row for a prompt bucket of `prompt_width` tokens and up to `new_tokens` generated ones (0: one
    round after the prompt): the prompt, the `max_new_tokens` bucket, the slots one round may write past the
    committed prefix, and the pending token. The one rule `generate`, its memory plan, profiles and one-round probes
    share."""
    return prompt_width + (bucket_size(new_tokens) if new_tokens else 0) + speculator.capacity_margin + 1


def generate(target: Handle, prompt_tokens: Any, prompt_lengths: Any, key: jax.Array, *,
             method: Speculator = ChainSpeculator(0), drafter: Handle | None = None, max_new_tokens: int = 32,
             sampling: SamplingConfig = SamplingConfig(), eos_id: int | None = None, verifier: str | None = None,
             allow_lossy: bool = False, cache_capacity: int | None = None, mesh: Mesh | None = None,
             memory_budget_bytes: int | None = None, constraint: TokenAutomaton | None = None) -> GenerateResult:
    """Decode `max_new_tokens` per row.

    target, drafter: handles (`specjax.runners.model.model_handle(model)`, `early_exit(target, L)`, `init_eagle(...)`,
    `lookup_handle(config)`, ...). prompt_tokens `[B, L]` int, right-padded; prompt_lengths `[B]` in `[1, L]`.
    key: PRNG key (the only source of randomness). method: the speculator that runs each round (default: AR;
    `specjax.methods.make_method("chain", num_draft=4)` builds one by name, `trees.make_speculator(...)` a tree one).
    verifier: how the method verifies ("token" | "block" | "disd" for chains, "token" | "traversal" | "gbv" |
    "gumbel_list" (coupled RSD-C) for trees; "disd" and "gumbel_list" make the output a function of `key` alone,
    whatever the drafter; default:
    the method's own, "token" unless it was built with another). allow_lossy: let `verifier` be a lossy chain rule
    (`specjax.verify.names.LOSSY_CHAIN_VERIFIERS`, e.g. "hsd"; refused without it). cache_capacity: the largest cache the caller
    allows (slots per row). mesh: a `specjax.model.layout.make_mesh(data=, model=)` mesh: the batch split over `data`,
    the target over `model` (heads, MLP, vocabulary, KV cache), the drafter by its own rule; same tokens as one
    device for the same key. memory_budget_bytes: refuse (ValueError with the figure, `specjax.parallel.memory`) a
    run that needs more per device. constraint: a `specjax.constrain.TokenAutomaton` (a regex or JSON schema,
    `specjax.constrain.compile_regex`): both the target's and the drafter's laws are constrained along every
    draft's path, masked (the locally projected law) or Doob-transformed by its h (faithful modes,
    `specjax.constrain.validity`); eos_id defaults to the automaton's.
    Input errors, an impossible (method, target, drafter) combination included, raise ValueError before tracing.
    """
    if not isinstance(target, Handle) or not (drafter is None or isinstance(drafter, Handle)):
        raise ValueError("target and drafter must be Handles: wrap a model with "
                         "specjax.runners.model.model_handle(model)")
    speculator = _with_verifier(method, verifier, allow_lossy)
    if not isinstance(sampling, SamplingConfig):
        raise ValueError("sampling must be a SamplingConfig")
    if constraint is not None:
        check_constraint(constraint, sampling, max_new_tokens, eos_id, mesh)
        eos_id = constraint.eos_id
        target, drafter = constrain(target, constraint), None if drafter is None else constrain(drafter, constraint)
    vocab = target.config.vocab_size
    prompt_tokens, prompt_lengths = _check_prompts(prompt_tokens, prompt_lengths, vocab)
    check_length(target.config.max_positions, int(prompt_lengths.max()), max_new_tokens)
    if sampling.top_k > vocab:
        raise ValueError(f"top_k ({sampling.top_k}) exceeds the vocabulary ({vocab})")
    if eos_id is not None:
        check_int("eos_id", eos_id, low=0, high=vocab - 1)
    speculator.check(target.runner, None if drafter is None else drafter.runner, sampling)

    batch, prompt_len = prompt_tokens.shape
    width, new_bucket = bucket_size(prompt_len), bucket_size(max_new_tokens)
    capacity = needed_capacity(width, speculator, max_new_tokens)
    if cache_capacity is not None and capacity > cache_capacity:
        raise ValueError(f"prompt ({prompt_len} -> bucket {width}) + max_new_tokens ({max_new_tokens} -> bucket "
                         f"{new_bucket}) + draft margin ({speculator.capacity_margin}) needs {capacity} cache slots, "
                         f"more than the allowed {cache_capacity}: lower the draft length / tree budget or "
                         "max_new_tokens")
    if memory_budget_bytes is not None:
        check_int("memory_budget_bytes", memory_budget_bytes, low=1)
        check_budget(plan_generate(target, drafter, batch=batch, capacity=capacity, prompt_len=width, mesh=mesh,
                                   round_tokens=speculator.capacity_margin), memory_budget_bytes)
    tokens = np.zeros((batch, width), np.int32)
    tokens[:, :prompt_len] = prompt_tokens
    tokens, lengths = jnp.asarray(tokens), jnp.asarray(prompt_lengths, jnp.int32)
    if mesh is not None:
        target, drafter, tokens, lengths = shard_decode(target, drafter, tokens, lengths, mesh)
    out = _generate(target, drafter, tokens, lengths, key, jnp.int32(max_new_tokens),
                    jnp.int32(NO_EOS if eos_id is None else eos_id), speculator=speculator, sampling=sampling,
                    new_bucket=new_bucket, capacity=capacity)
    rounds = max(max_new_tokens - 1, 1)
    return out.replace(tokens=out.tokens[:, :max_new_tokens], accepted=out.accepted[:, :rounds],
                       drafted=out.drafted[:, :rounds])


def _with_verifier(method: Any, verifier: str | None, allow_lossy: bool = False) -> Speculator:
    """The speculator `method`, verified by `verifier` when one is given (ValueError for a method that has no
    choice of verifier, or already verifies with another rule: never silently ignored)."""
    if not isinstance(method, Speculator):
        raise ValueError(f"method must be a Speculator, got {type(method).__name__} {method!r}: build one by name "
                         "with specjax.methods.make_method(name, **options)")
    current = getattr(method, "verifier", None)
    if verifier is None or verifier == current:
        return method
    if current is None:
        return method.with_verifier(verifier, allow_lossy)     # raises: the method takes no verifier
    if current != "token":
        raise ValueError(f"the method already verifies with {current!r}; pass verifier={verifier!r} to only one of "
                         "them")
    return method.with_verifier(verifier, allow_lossy)


def check_length(max_positions: int | None, longest_prompt: int, max_new_tokens: int) -> None:
    """ValueError unless 1 <= max_new_tokens and the longest row stays within the context the target was trained
    for (positions past it were never trained: refuse rather than decode garbage slowly)."""
    check_int("max_new_tokens", max_new_tokens, low=1)
    if max_positions is not None and longest_prompt + max_new_tokens > max_positions:
        raise ValueError(f"prompt ({longest_prompt} tokens) + max_new_tokens ({max_new_tokens}) passes the context "
                         f"the target was trained for ({max_positions} positions): lower max_new_tokens to at most "
                         f"{max(max_positions - longest_prompt, 0)}")


def _check_prompts(prompt_tokens: Any, prompt_lengths: Any, vocab: int) -> tuple[np.ndarray, np.ndarray]:
    prompt_tokens, prompt_lengths = np.asarray(prompt_tokens), np.asarray(prompt_lengths)
    if prompt_tokens.ndim != 2 or not np.issubdtype(prompt_tokens.dtype, np.integer):
        raise ValueError(f"prompt_tokens must be an integer array [B, L], got {prompt_tokens.dtype} "
                         f"{prompt_tokens.shape}")
    batch, prompt_len = prompt_tokens.shape
    if prompt_lengths.shape != (batch,) or not np.issubdtype(prompt_lengths.dtype, np.integer):
        raise ValueError(f"prompt_lengths must be integers [B] = [{batch}], got shape {prompt_lengths.shape}")
    if prompt_len < 1 or prompt_lengths.min() < 1 or prompt_lengths.max() > prompt_len:
        raise ValueError(f"prompt_lengths must lie in [1, {prompt_len}], got {prompt_lengths.tolist()}")
    valid = np.arange(prompt_len)[None, :] < prompt_lengths[:, None]
    if np.any(valid & ((prompt_tokens < 0) | (prompt_tokens >= vocab))):
        raise ValueError(f"prompt token ids must lie in [0, {vocab})")
    return np.where(valid, prompt_tokens, 0), prompt_lengths


@partial(jax.jit, static_argnames=("speculator", "sampling", "new_bucket", "capacity"))
def _generate(target, drafter, prompt_tokens, prompt_lengths, key, max_new_tokens, eos_id, *, speculator,
              sampling, new_bucket, capacity) -> GenerateResult:
    batch = prompt_tokens.shape[0]
    emit = speculator.max_emit
    start = prefill(target, drafter, prompt_tokens, prompt_lengths, jax.random.fold_in(key, 0), sampling, capacity)
    caches, ctx = start.caches, start.ctx
    num_generated = jnp.ones((batch,), jnp.int32)
    state = LoopState(
        round=jnp.int32(0), caches=caches, ctx=ctx,
        done=(num_generated >= max_new_tokens) | (ctx.pending == eos_id),
        tokens=jnp.full((batch, new_bucket + emit), PAD_TOKEN, jnp.int32).at[:, 0].set(ctx.pending),
        num_generated=num_generated,
        accepted=jnp.full((batch, new_bucket), -1, jnp.int32), drafted=jnp.zeros((batch, new_bucket), jnp.int32),
        memory=speculator.init_memory(batch, target.runner))

    def cond(state: LoopState):
        return (state.round < max_new_tokens - 1) & ~jnp.all(state.done)

    def body(state: LoopState) -> LoopState:
        round_key = key if speculator.keys_by_position else jax.random.fold_in(key, state.round + 1)
        res = speculator.round(target=target, drafter=drafter, caches=state.caches, ctx=state.ctx, key=round_key,
                               sampling=sampling, memory=state.memory)
        with jax.named_scope("record"):
            n, active = res.num_accepted, ~state.done
            # append the round's tokens at each row's write head (stale PADs beyond are overwritten next round)
            written = jax.vmap(lambda o, t, s: jax.lax.dynamic_update_slice_in_dim(o, t, s, axis=0))(
                state.tokens, res.tokens, state.num_generated)
            slots = jnp.arange(emit)[None, :]
            hit_eos = (eos_id >= 0) & jnp.any((res.tokens == eos_id) & (slots <= n[:, None]), axis=1)
            num_generated = state.num_generated + jnp.where(active, n + 1, 0)
            return LoopState(
                round=state.round + 1, caches=res.caches, ctx=select_rows(active, res.advance(state.ctx), state.ctx),
                done=state.done | (active & hit_eos) | (num_generated >= max_new_tokens),
                tokens=jnp.where(active[:, None], written, state.tokens), num_generated=num_generated,
                accepted=state.accepted.at[:, state.round].set(jnp.where(active, n, -1)),
                drafted=state.drafted.at[:, state.round].set(jnp.where(active, res.num_drafted, 0)),
                memory=select_rows(active, res.memory, state.memory))

    state = jax.lax.while_loop(cond, body, state)
    out = state.tokens[:, :new_bucket]
    lengths = jnp.minimum(state.num_generated, max_new_tokens)
    is_eos = (out == eos_id) & (eos_id >= 0)
    lengths = jnp.minimum(lengths, jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, new_bucket))
    out = jnp.where(jnp.arange(new_bucket)[None, :] < lengths[:, None], out, PAD_TOKEN)
    return GenerateResult(out, lengths, state.accepted, state.drafted, jnp.sum(state.accepted >= 0, axis=1))
