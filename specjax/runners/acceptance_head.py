"""SpecDec++'s acceptance-prediction head as a runner wrapper: a small MLP on the drafter that predicts, for each
draft token, the probability that the verifier accepts it given that its prefix was accepted (trained by
`specjax.training.acceptance_head`).
"""
from __future__ import annotations
from dataclasses import dataclass
from typing import Any
import jax
import jax.numpy as jnp
from flax import nnx
from specjax.runners.base import Handle, WrappingRunner
from specjax.validation import check_int


class AcceptanceHead(nnx.Module):
    """MLP `[D + 2] -> width -> 1` (logit of the acceptance probability)."""

    def __init__(self, d_model: int, width: int, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(d_model + 2, width, rngs=rngs)
        self.out = nnx.Linear(width, 1, rngs=rngs)

    def __call__(self, features: jax.Array, stats: jax.Array) -> jax.Array:
        """features `[..., D]`, stats `[..., 2]` (`law_statistics` of the draft's law) -> logits `[...]`."""
        x = jnp.concatenate([features.astype(jnp.float32), stats], axis=-1)
        return self.out(jax.nn.gelu(self.hidden(x)))[..., 0]


@dataclass(frozen=True)
class AcceptanceHeadRunner(WrappingRunner):
    """A drafter with an acceptance head: params `(drafter params, head state)`; everything else is the drafter's."""

    head: Any                  # the head's nnx graph definition

    @property
    def name(self) -> str:
        return f"{self.inner.name}+acceptance-head"

    def inner_params(self, params):
        return params[0]

    def accept_prob(self, params, features: jax.Array, stats: jax.Array) -> jax.Array:
        """Predicted acceptance probability `[B]` of drafts with features `[B, D]` and law statistics `[B, 2]`."""
        return jax.nn.sigmoid(nnx.merge(self.head, params[1])(features, stats))


def init_acceptance_head(drafter: Handle, width: int = 64, seed: int = 0) -> Handle:
    """`drafter` with a freshly initialised acceptance head (train it with `train_acceptance_head`)."""
    check_int("width", width, low=1)
    graphdef, state = nnx.split(AcceptanceHead(drafter.config.d_model, width, rngs=nnx.Rngs(seed)))
    return Handle(AcceptanceHeadRunner(drafter.runner, graphdef), (drafter.params, state))
