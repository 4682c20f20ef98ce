"""DEL-style dynamic self-speculation: the target drafts from its own first E layers, the exit E and each row's
draft length chosen every round inside the jitted loop (`specjax.decode.policies.DynamicExit`, `--draft-policy del`).

A round: choose (exit, lengths) from the per-row acceptance estimates; draft with the chosen early exit
(`lax.switch` over the candidate exits, each an `early_exit(target, E)` drafter) reading and writing the target's
own cache (LayerSkip-style: the target's keys and values of the first E layers are exactly what the exit-E
drafter would compute, so committed entries serve every exit and no drafter cache is kept); verify with the
target, which also returns its hidden states after every candidate exit (`runners.with_exits`); learn.

What each candidate would have drafted is read off that one verification pass (DEL's shadow tokens): at the first
`probes` positions of the accepted path, exit E's warped law q_E is compared with the target's warped law p, and
sum_x min(p(x), q_E(x)) is exactly the probability that a draft from exit E is accepted there (at temperature 0,
whether its argmax is the target's). The drafted tokens go through the unchanged chain verifier, so the method is
lossless whatever it chooses.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from specjax.decode.draft import draft_chain
from specjax.decode.policies import DynamicExit, ExitMemory
from specjax.costs.roofline import model_shape
from specjax.runners.base import Forward, Handle, Runner
from specjax.runners.model import early_exit, with_exits
from specjax.sampling import SamplingConfig, warp_logits
from specjax.decode.speculator import ChainShaped, check_pair
from specjax.decode.chain import verify_ragged_chain
from specjax.decode.state import Caches, RoundOutput
from specjax.validation import check_int
from specjax.verify.names import COUPLED_CHAIN_VERIFIERS, check_chain_verifier


def exit_costs(runner: Runner, exits: tuple[int, ...]) -> tuple[tuple[float, ...], float]:
    """(cost of one draft step at each exit, cost of the target's pass), in weights read per token (decoding at
    small batch reads every weight once per call): E / L of the layers plus the head, against all layers plus the
    head."""
    shape = model_shape(runner.config)
    head = shape.head_rows * shape.d_model
    return tuple(shape.layer_params * e / shape.layers + head for e in exits), float(shape.params)


def shadow_acceptance(scorer: Handle, sampling: SamplingConfig, probes: int, out: Forward,
                      target_probs: jax.Array) -> jax.Array:
    """`[B, probes, C]`: at each of the first `probes` scored positions, the probability that a draft from each
    exit of `scorer` (a `with_exits` target) would be accepted, sum_x min(p(x), q_E(x)); -1 past the block."""
    t = min(probes, target_probs.shape[1])
    q = warp_logits(scorer.runner.head(scorer.params, out.exit_hidden[:, :t]), sampling)         # [B, t, C, V]
    accept = jnp.sum(jnp.minimum(target_probs[:, :t, None, :], q), axis=-1)
    return jnp.pad(accept, ((0, 0), (0, probes - t), (0, 0)), constant_values=-1.0)


@dataclass(frozen=True)
class DynamicExitSpeculator(ChainShaped):
    """Chains of up to `num_draft` (K_max) self-drafted tokens from an exit chosen per round by `policy`, verified
    by `verifier`. Needs no drafter: the target is a full model (`runners.ModelRunner`)."""

    num_draft: int
    verifier: str = "token"
    policy: DynamicExit = DynamicExit()
    allow_lossy: bool = False

    def __post_init__(self):
        check_int("num_draft (K_max)", self.num_draft, low=1)
        check_chain_verifier(self.verifier, self.allow_lossy)
        if self.verifier in COUPLED_CHAIN_VERIFIERS:
            raise ValueError(f"the coupled verifier {self.verifier!r} needs drafts drawn from its races; dynamic exit "
                             "drafts from the target's own exits by its own keys: use another verifier, or a chain "
                             "with a drafter (make_method('chain', verifier='disd'))")
        if not isinstance(self.policy, DynamicExit):
            raise ValueError(f"DynamicExitSpeculator needs a DynamicExit policy, got {self.policy!r}")

    @property
    def needs_drafter(self) -> bool:
        return False

    def check(self, target, drafter, sampling) -> None:
        check_pair(self, target, drafter)
        if not target.emits_exit_hidden:
            raise ValueError(f"the del policy drafts from the target's early exits: {target.name} is not a full model")
        self.policy.exits(target.config.n_layers)

    def init_memory(self, batch: int, target: Runner) -> ExitMemory:
        return self.policy.init_exits(batch, len(self.policy.exits(target.config.n_layers)))

    def round(self, *, target, drafter, caches, ctx, key, sampling, memory=None):
        key_draft, key_verify = jax.random.split(key)
        exits = self.policy.exits(target.config.n_layers)
        draft_costs, verify_cost = exit_costs(target.runner, exits)
        exit_index, memory = self.policy.choose(memory, jnp.asarray(draft_costs), verify_cost, self.num_draft)

        def drafts_from(e):
            return lambda cache: draft_chain(early_exit(target, e), cache, ctx, key_draft, self.num_draft, sampling,
                                             self.policy, memory, shares_target_cache=True)

        with jax.named_scope("draft"):
            draft = jax.lax.switch(exit_index, [drafts_from(e) for e in exits], caches.target)
        scorer = with_exits(target, exits)
        observe = lambda out, target_probs: shadow_acceptance(scorer, sampling, self.policy.probes, out,
                                                              target_probs)
        v = verify_ragged_chain(scorer, draft.cache, ctx, draft.tokens, draft.probs, draft.lengths, key_verify,
                                sampling, self.verifier, observe)
        # only positions on the accepted path (pending, then the accepted drafts) saw the context a draft would see
        on_path = (jnp.arange(self.policy.probes)[None, :] <= v.num_accepted[:, None]) & (v.observed[..., 0] >= 0)
        weight = on_path.astype(jnp.float32)[..., None]
        observed = jnp.sum(weight * v.observed, axis=1) / jnp.sum(weight, axis=1)          # [B, C]; >= 1 position
        return RoundOutput(Caches(v.cache, caches.drafter), v.tokens, v.num_accepted, draft.lengths, v.hidden,
                           self.policy.learn(memory, observed))
