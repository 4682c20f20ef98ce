"""SpecDec++'s acceptance-prediction head: a small MLP on the drafter that predicts, for each draft token, the
probability that the verifier accepts it given that its prefix was accepted; the `specdec++` draft-length policy
(`specjax.decode.policies.SpecDecPP`) stops drafting when the predicted probability of some rejection exceeds a threshold.

Training uses exact soft labels: the acceptance probability of a draft x drawn from q at a position whose target
law is p is exactly min(1, p(x)/q(x)), computed from real rounds (`acceptance_examples`), so the head regresses a
known probability with a cross-entropy loss instead of learning it from 0/1 outcomes.
Inputs: the drafter's hidden state where it produced the draft's law `[D]`, plus two statistics of that law (log of
its top probability, its entropy), which carry most of the signal for drafters without useful hidden states.
"""
from __future__ import annotations
from dataclasses import dataclass
from functools import partial
from typing import Any, Sequence
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct
from specjax.model.block import Block
from specjax.decode.batching import pad_prompts
from specjax.decode.chain import ChainSpeculator
from specjax.decode.loop import generate, needed_capacity, prefill
from specjax.decode.draft import draft_chain
from specjax.runners.acceptance_head import init_acceptance_head
from specjax.runners.base import Handle
from specjax.sampling import SamplingConfig, warp_logits
from specjax.validation import check_int


@struct.dataclass
class AcceptanceExamples:
    """features `[N, D]`, stats `[N, 2]` (`law_statistics` of the law each draft was judged by), labels `[N]` (exact
    acceptance probabilities min(1, p(x)/q(x)) of the drafted token, given its prefix)."""

    features: jax.Array
    stats: jax.Array
    labels: jax.Array

    def split(self, fraction: float) -> tuple["AcceptanceExamples", "AcceptanceExamples"]:
        """(first part, rest) at `fraction` of the examples (callers shuffle contexts, not positions)."""
        cut = int(round(self.labels.shape[0] * fraction))
        return (jax.tree.map(lambda a: a[:cut], self), jax.tree.map(lambda a: a[cut:], self))


def acceptance_examples(target: Handle, drafter: Handle, prompt_tokens: Any, prompt_lengths: Any, key: jax.Array,
                        sampling: SamplingConfig, num_draft: int) -> AcceptanceExamples:
    """One drafted chain of `num_draft` tokens per context (prompt_tokens `[B, L]` right-padded, lengths `[B]`),
    scored by the target: B * num_draft examples with their exact acceptance probabilities. At temperature 0 the
    label is 1 when the draft is the target's argmax, else 0."""
    check_int("num_draft", num_draft, low=1)
    tokens, lengths = jnp.asarray(prompt_tokens, jnp.int32), jnp.asarray(prompt_lengths, jnp.int32)
    return _examples(target, drafter, tokens, lengths, key, sampling, num_draft)


@partial(jax.jit, static_argnames=("sampling", "num_draft"))
def _examples(target, drafter, tokens, lengths, key, sampling, num_draft):
    k_prefill, k_draft = jax.random.split(key)
    start = prefill(target, drafter, tokens, lengths, k_prefill, sampling,
                    needed_capacity(tokens.shape[1], ChainSpeculator(num_draft)))
    caches, ctx = start.caches, start.ctx
    draft = draft_chain(drafter, caches.drafter, ctx, k_draft, num_draft, sampling)
    chain = jnp.concatenate([ctx.pending[:, None], draft.tokens], axis=1)
    p = warp_logits(target.forward(caches.target, Block.chain(chain, ctx.position)).logits[:, :-1], sampling)
    p_x = jnp.take_along_axis(p, draft.tokens[..., None], axis=-1)[..., 0]
    q_x = jnp.take_along_axis(draft.probs, draft.tokens[..., None], axis=-1)[..., 0]
    labels = jnp.minimum(1.0, p_x / jnp.maximum(q_x, 1e-30))
    flat = lambda a: a.reshape((-1,) + a.shape[2:])
    return AcceptanceExamples(flat(draft.features), flat(draft.stats), flat(labels))


def head_loss(head_state, graphdef, examples: AcceptanceExamples) -> jax.Array:
    """Mean cross-entropy between the exact acceptance probabilities and the head's predictions."""
    logits = nnx.merge(graphdef, head_state)(examples.features, examples.stats)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, examples.labels))


def train_acceptance_head(head: Handle, examples: AcceptanceExamples, *, steps: int = 300,
                          learning_rate: float = 3e-3, batch_size: int = 256, seed: int = 0
                          ) -> tuple[Handle, list[float]]:
    """Fit the head of `head` (from `init_acceptance_head`) with AdamW on minibatches; returns the trained handle
    and the loss per step. Minibatches are a pure function of (seed, step)."""
    check_int("steps", steps, low=1)
    runner, (drafter_params, state) = head.runner, head.params
    optimizer = optax.adamw(learning_rate)
    opt_state = optimizer.init(state)
    n = examples.labels.shape[0]

    @jax.jit
    def step(state, opt_state, idx):
        batch = jax.tree.map(lambda a: a[idx], examples)
        loss, grads = jax.value_and_grad(head_loss)(state, runner.head, batch)
        updates, opt_state = optimizer.update(grads, opt_state, state)
        return optax.apply_updates(state, updates), opt_state, loss

    losses = []
    for i in range(steps):
        idx = jax.random.choice(jax.random.fold_in(jax.random.key(seed), i), n, (min(batch_size, n),), replace=False)
        state, opt_state, loss = step(state, opt_state, idx)
        losses.append(float(loss))
    return Handle(runner, (drafter_params, state)), losses


@struct.dataclass
class Reliability:
    """Calibration of the head on examples: per bin of predicted probability, its mean prediction, the mean exact
    label and the count (`[M]` each); ece = Σ count · |prediction - label| / N."""

    predicted: np.ndarray
    observed: np.ndarray
    counts: np.ndarray
    ece: float


def reliability(head: Handle, examples: AcceptanceExamples, bins: int = 10) -> Reliability:
    """Reliability table of `head` on `examples` (bins of equal width over [0, 1])."""
    pred = np.asarray(head.runner.accept_prob(head.params, examples.features, examples.stats), np.float64)
    labels = np.asarray(examples.labels, np.float64)
    which = np.minimum((pred * bins).astype(int), bins - 1)
    counts = np.bincount(which, minlength=bins)
    safe = np.maximum(counts, 1)
    predicted = np.bincount(which, pred, bins) / safe
    observed = np.bincount(which, labels, bins) / safe
    return Reliability(predicted, observed, counts, float(np.sum(counts * np.abs(predicted - observed)) / len(pred)))


def fit_acceptance_head(target: Handle, drafter: Handle, prompts: Sequence[Sequence[int]], key: jax.Array,
                        sampling: SamplingConfig, *, num_draft: int = 4, continuation: int = 32, cuts: int = 2,
                        steps: int = 300, width: int = 64, seed: int = 0) -> "FittedHead":
    """Train an acceptance head for `drafter` on contexts like those it will meet while decoding: each prompt (token
    lists) followed by the target's own continuation (`continuation` tokens, autoregressive at `sampling`), cut at
    `cuts` random points; one drafted chain of `num_draft` tokens per context. A quarter of the prompts is held out.
    Give it prompts that are not the evaluation prompts."""
    check_int("cuts", cuts, low=1)
    check_int("continuation", continuation, low=1)
    if len(prompts) < 4:
        raise ValueError(f"fit_acceptance_head needs at least 4 prompts (a quarter is held out), got {len(prompts)}")
    k_gen, k_cut, k_draft = jax.random.split(key, 3)
    tokens, lengths = pad_prompts(prompts)
    out = generate(target, tokens, lengths, k_gen, max_new_tokens=continuation, sampling=sampling)
    generated, counts = np.asarray(out.tokens), np.asarray(out.lengths)
    rng = np.random.default_rng(int(jax.random.randint(k_cut, (), 0, 2**31 - 1)))
    contexts = []
    for prompt, row, n in zip(prompts, generated, counts):
        full = list(prompt) + row[:n].tolist()
        contexts += [full[:len(prompt) + int(c)] for c in rng.integers(0, n + 1, cuts)]
    held_from = cuts * (len(prompts) - len(prompts) // 4)          # contexts are grouped by prompt
    ctx_tokens, ctx_lengths = pad_prompts(contexts)
    examples = acceptance_examples(target, drafter, ctx_tokens, ctx_lengths, k_draft, sampling, num_draft)
    train, held = examples.split(held_from / len(contexts))
    head, _ = train_acceptance_head(init_acceptance_head(drafter, width, seed), train, steps=steps, seed=seed)
    return FittedHead(head, held, reliability(head, held))


@dataclass(frozen=True)
class FittedHead:
    """What `fit_acceptance_head` returns: the drafter with its trained head, the held-out examples and the head's
    reliability on them."""

    head: Handle
    held_out: AcceptanceExamples
    reliability: Reliability
