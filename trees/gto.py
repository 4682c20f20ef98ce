"""Group Tree Optimization (GTO, Hu et al. 2025, arXiv 2509.22134): fine-tune a drafter on the reward of the trees
it drafts, not only on the target's next-token laws along one greedy path.

One step, at B contexts cut from the target's own text:

1. `rollout` (no gradient): the target prefills every context once; the drafter being trained and a frozen
   reference drafter (the head training started from) each draft a tree with the decode loop's own builder; the
   target scores both trees; each tree's reward is its exact E[accepted drafts | tree] (`trees.reward.tree_reward`:
   the sampling-free draft tree reward for deterministic EAGLE-2 children), and the verifier's walk on it gives the
   drafts a decode round would accept there.
2. `group_advantages`: each context's group is its two trees. A tree's advantage is its reward minus the group's
   mean (which takes out how easy the context is), divided by the batch's standard deviation of those differences.
3. `gto_surrogate`: PPO's clipped surrogate on the drafter's log-probability of each tree's accepted drafts (its
   longest accepted sequence), computed as a decode round drafts that chain (`specjax.decode.draft.score_chain` after the
   drafter's prefill of the context); the ratio is taken to the drafter that drafted the tree (the trained one,
   held constant, for its own tree; the reference for the reference's tree, where the clip binds).

At temperature 0 both accepted sequences are prefixes of the target's greedy continuation, so the shared prefix's
terms cancel and the step raises the drafter's probability of the tokens the better of the two trees accepted and
the worse one missed: it keeps what training gained over the reference and repairs what it lost. Where the two
trees earn the same reward (at the start, when the drafter is the reference) the surrogate is zero: the caller's
anchor loss (the distillation loss on the same contexts; the drafter's prefill `Forward` is returned so it costs no
extra drafter pass) is what first moves the drafter away from the reference.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from specjax.decode.loop import needed_capacity, prefill, prefill_drafter
from specjax.decode.draft import score_chain
from specjax.runners.base import Forward, Handle
from specjax.sampling import SamplingConfig
from specjax.decode.state import Caches, DecodeContext
from trees.level_loop import TreeBuilder
from trees.reward import tree_reward
from trees.speculator import TreeSpeculator
from trees.walk import RuleSet


@dataclass(frozen=True)
class GTOConfig:
    """clip: PPO's ratio clip; eps: floor of the standard deviation of the reward differences (a batch whose two
    drafters earn equal rewards everywhere gets advantage 0, not a division by zero)."""

    clip: float = 0.2
    eps: float = 1e-4

    def __post_init__(self):
        if not 0 < self.clip < 1:
            raise ValueError(f"clip must be in (0, 1), got {self.clip}")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")


@struct.dataclass
class TreeOutcome:
    """One drafter's tree at each of B contexts (depth D): reward `[B]` (E[accepted drafts | tree]); path `[B, D+1]`
    (node ids of the accepted path, root first, -1 after), num_accepted `[B]` and emitted `[B, D+1]` (the accepted
    drafts, then the correction or bonus token, -1 after) of the verifier's walk on it."""

    reward: jax.Array
    path: jax.Array
    num_accepted: jax.Array
    emitted: jax.Array


@struct.dataclass
class Rollout:
    """What one GTO rollout measured at B contexts of W tokens. contexts `[B, W]` int32; ctx: the round's
    `DecodeContext` (pending = the text's next token, the trees' root); hidden `[B, W, Dm]`: the target's hidden
    states over the contexts (the features the drafter reads, and what an anchor loss distils); capacity: the
    drafter cache's slots (static); current, reference: the trees of the trained and of the reference drafter."""

    contexts: jax.Array
    ctx: DecodeContext
    hidden: jax.Array
    current: TreeOutcome
    reference: TreeOutcome
    capacity: int = struct.field(pytree_node=False, default=0)


def check_contexts(contexts, pending, vocab_size: int) -> None:
    """Eager checks (ValueError) of a rollout's inputs: contexts `[B, W]` and pending `[B]` ids in the vocabulary."""
    contexts, pending = np.asarray(contexts), np.asarray(pending)
    if contexts.ndim != 2 or contexts.shape[1] < 1 or pending.shape != contexts.shape[:1]:
        raise ValueError(f"contexts must be [B, W] with W >= 1 and pending [B], got {contexts.shape} and "
                         f"{pending.shape}")
    for name, ids in (("contexts", contexts), ("pending", pending)):
        if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"{name} hold ids outside the vocabulary [0, {vocab_size})")


def rollout(target: Handle, drafter: Handle, reference: Handle, builder: TreeBuilder, contexts: jax.Array,
            pending: jax.Array, key: jax.Array, sampling: SamplingConfig, rules: RuleSet | None = None) -> Rollout:
    """One tree round of `drafter` and of `reference` at each context (`contexts [B, W]`, root `pending [B]`),
    scored by the target (one prefill shared by both); see `Rollout`. Traceable (jit it, or call it inside a jitted
    loss); no gradient is meant to flow through it (the tree's node choice is discrete)."""
    b, w = contexts.shape
    spec = TreeSpeculator(builder, rules)
    capacity = needed_capacity(w, spec)
    # one target pass over the contexts, shared by both drafters; the text's next token is the trees' root
    prefix = prefill(target, None, contexts, jnp.full((b,), w, jnp.int32), key, sampling, capacity, pending=pending)

    def one_tree(handle):
        caches = Caches(prefix.caches.target, prefill_drafter(handle, contexts, prefix.hidden, capacity).cache)
        v = spec.propose_and_verify(target=target, drafter=handle, caches=caches, ctx=prefix.ctx, key=key,
                                    sampling=sampling)
        reward = tree_reward(v.built.tree, v.target_probs, builder.max_depth)
        return TreeOutcome(reward, v.path, v.num_accepted, v.tokens)

    return Rollout(contexts=contexts, ctx=prefix.ctx, hidden=prefix.hidden, current=one_tree(drafter),
                   reference=one_tree(reference), capacity=capacity)


def group_advantages(reward: jax.Array, reference_reward: jax.Array, eps: float = 1e-4
                     ) -> tuple[jax.Array, jax.Array]:
    """(advantage of the trained drafter's tree, of the reference's) `[B]` each: a tree's reward minus its
    context's group mean (the two trees), over the batch's standard deviation of those deviations (floor eps)."""
    half = (reward - reference_reward) / 2
    scale = jnp.maximum(jnp.sqrt(jnp.mean(half ** 2)), eps)
    return half / scale, -half / scale


def accepted_log_probs(drafter: Handle, cache, out: Rollout, tree: TreeOutcome) -> tuple[jax.Array, jax.Array]:
    """The drafter's log-probability of each draft `tree` accepted, computed as a decode round drafts that chain
    from the rollout's context (`cache`: the drafter's prefill of the contexts): (logq `[B, D]`, mask `[B, D]`, 1 =
    an accepted draft). Differentiable in the drafter's parameters."""
    depth = tree.emitted.shape[1] - 1
    drafts = jnp.maximum(tree.emitted[:, :depth], 0)
    logits = score_chain(drafter, cache, out.ctx, drafts)                               # [B, D, V]
    logq = jnp.take_along_axis(jax.nn.log_softmax(logits.astype(jnp.float32), -1), drafts[..., None], -1)[..., 0]
    mask = jnp.arange(depth)[None, :] < tree.num_accepted[:, None]
    return jnp.where(mask, logq, 0.0), mask.astype(jnp.float32)


def ppo_surrogate(logq: jax.Array, logq_old: jax.Array, advantage: jax.Array, mask: jax.Array, clip: float
                  ) -> jax.Array:
    """PPO's clipped surrogate, to minimise: -mean over masked tokens of min(r A, clip(r, 1 - clip, 1 + clip) A)
    with r = exp(logq - logq_old); logq, logq_old, mask `[B, T]`, advantage `[B]` (one per sequence)."""
    ratio = jnp.exp(logq - logq_old)
    a = advantage[:, None]
    per_token = jnp.minimum(ratio * a, jnp.clip(ratio, 1 - clip, 1 + clip) * a)
    return -jnp.sum(per_token * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def gto_surrogate(drafter: Handle, reference: Handle, out: Rollout, cfg: GTOConfig) -> tuple[jax.Array, Forward]:
    """(surrogate loss, the trained drafter's prefill `Forward` over the contexts) of one rollout, for one gradient
    step per rollout: the trained drafter's tree is its own (ratio 1, held constant), the reference's tree is
    weighed by the ratio to the reference."""
    adv_current, adv_reference = jax.lax.stop_gradient(group_advantages(out.current.reward, out.reference.reward,
                                                                        cfg.eps))
    prefix = prefill_drafter(drafter, out.contexts, out.hidden, out.capacity)
    logq_c, mask_c = accepted_log_probs(drafter, prefix.cache, out, out.current)
    logq_r, mask_r = accepted_log_probs(drafter, prefix.cache, out, out.reference)
    ref_cache = prefill_drafter(reference, out.contexts, out.hidden, out.capacity).cache
    old_r = jax.lax.stop_gradient(accepted_log_probs(reference, ref_cache, out, out.reference)[0])
    cat = lambda a, b: jnp.concatenate([a, b], axis=0)
    loss = ppo_surrogate(cat(logq_c, logq_r), cat(jax.lax.stop_gradient(logq_c), old_r),
                         cat(adv_current, adv_reference), cat(mask_c, mask_r), cfg.clip)
    return loss, prefix
