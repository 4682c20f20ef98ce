"""Drafter distillation with optax: the student matches the target's next-token law on the target's own inputs.

Loss = mean over positions of KL(p_target || q_student) (forward KL, which is what raises acceptance of
speculative sampling). Batches are a pure function of (seed, step), so a run resumed from an orbax checkpoint
reproduces the uninterrupted run exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from specjax.io.checkpoint import restore_checkpoint, save_checkpoint
from specjax.validation import check_int

# student_apply(params, tokens[B, T], target_hidden[B, T, D]) -> logits[B, T, V]
StudentApply = Callable[[Any, jax.Array, jax.Array], jax.Array]
# target_apply(tokens[B, T]) -> (logits[B, T, V], hidden[B, T, D] final-normed)
TargetApply = Callable[[jax.Array], tuple[jax.Array, jax.Array]]
# batch_fn(step) -> tokens[B, T] int32 (must depend only on step and a fixed seed)
BatchFn = Callable[[int], np.ndarray]


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 100
    learning_rate: float = 1e-3
    warmup_steps: int = 10
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    checkpoint_every: int = 0          # 0 = only at the end (when a checkpoint directory is given)

    def __post_init__(self) -> None:
        check_int("steps", self.steps, low=1)
        check_int("warmup_steps", self.warmup_steps, low=0)
        check_int("checkpoint_every", self.checkpoint_every, low=0)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay over `cfg.steps`, and global-norm clipping."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, max(cfg.warmup_steps, 1),
                                                  max(cfg.steps, cfg.warmup_steps + 1))
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adamw(schedule, weight_decay=cfg.weight_decay))


def distill_loss(student_logits: jax.Array, target_logits: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Mean KL(p || q) over positions; logits `[B, T, V]`, mask `[B, T]` (1 = counted)."""
    logp = jax.nn.log_softmax(target_logits.astype(jnp.float32), -1)
    logq = jax.nn.log_softmax(student_logits.astype(jnp.float32), -1)
    kl = jnp.sum(jnp.exp(logp) * (logp - logq), -1)
    if mask is None:
        return jnp.mean(kl)
    return jnp.sum(kl * mask) / jnp.maximum(jnp.sum(mask), 1)


def make_train_step(student_apply: StudentApply, target_apply: TargetApply, optimizer: optax.GradientTransformation):
    """Jitted `(params, opt_state, tokens) -> (params, opt_state, loss)`; params/opt_state are donated."""
    def step(params, opt_state, tokens):
        target_logits, hidden = target_apply(tokens)
        target_logits, hidden = jax.lax.stop_gradient(target_logits), jax.lax.stop_gradient(hidden)

        def loss_fn(p):
            return distill_loss(student_apply(p, tokens, hidden), target_logits)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return jax.jit(step, donate_argnums=(0, 1))


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The `step_*` sub-directory with the highest step, or None."""
    directory = Path(directory)
    steps = sorted((int(p.name.split("_")[1]), p) for p in directory.glob("step_*") if p.name.split("_")[1].isdigit())
    return steps[-1][1] if steps else None


def train_distill(params: Any, student_apply: StudentApply, target_apply: TargetApply, batch_fn: BatchFn,
                  cfg: TrainConfig, *, checkpoint_dir: str | Path | None = None, stop_after: int | None = None,
                  log_every: int = 0) -> tuple[Any, Any, list[float]]:
    """Train `params` for `cfg.steps` steps; returns (params, opt_state, losses of the steps run here).

    With `checkpoint_dir`, resumes from its latest `step_N` checkpoint and saves every `cfg.checkpoint_every` steps
    and at the end. `stop_after` ends early after that global step (to test or split resumption).
    """
    optimizer = make_optimizer(cfg)
    opt_state = optimizer.init(params)
    start = 0
    if checkpoint_dir is not None and (ckpt := latest_checkpoint(checkpoint_dir)) is not None:
        params, opt_state, start = restore_checkpoint(ckpt, params, opt_state)
    step_fn = make_train_step(student_apply, target_apply, optimizer)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    losses = []
    for step in range(start, end):
        params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(batch_fn(step), jnp.int32))
        losses.append(float(loss))
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{cfg.steps} loss {float(loss):.4f}", flush=True)
        done = step + 1
        if checkpoint_dir is not None and ((cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
                                           or done == end):
            path = Path(checkpoint_dir) / f"step_{done}"
            if not path.exists():
                save_checkpoint(path, params, opt_state, step=done)
    return params, opt_state, losses


def random_token_batches(vocab_size: int, batch_size: int, seq_len: int, seed: int) -> BatchFn:
    """Batch function for tests: uniform random tokens, a pure function of (seed, step)."""
    def batch(step: int) -> np.ndarray:
        return np.random.default_rng([seed, step]).integers(0, vocab_size, (batch_size, seq_len), dtype=np.int32)
    return batch


def corpus_batches(token_ids: np.ndarray, batch_size: int, seq_len: int, seed: int) -> BatchFn:
    """Batch function over a long 1-D token stream: random windows, a pure function of (seed, step)."""
    token_ids = np.asarray(token_ids, np.int32)
    if token_ids.ndim != 1 or token_ids.size <= seq_len:
        raise ValueError(f"token_ids must be a 1-D stream longer than seq_len ({seq_len}), got {token_ids.shape}")

    def batch(step: int) -> np.ndarray:
        starts = np.random.default_rng([seed, step]).integers(0, token_ids.size - seq_len, batch_size)
        return np.stack([token_ids[s:s + seq_len] for s in starts])
    return batch
