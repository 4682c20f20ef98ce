"""Drafter distillation with optax: the student matches the target's next-token law on the target's own inputs.

Loss = mean over positions of KL(p_target || q_student) (forward KL, which is what raises acceptance of
speculative sampling); `unrolled_distill_loss` puts it on every depth of a drafter unrolled on its own outputs
(EAGLE-3's training-time test). Batches are a pure function of (seed, step), so a run resumed from an orbax checkpoint
reproduces the uninterrupted run exactly.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from specjax.model.io.checkpoint import restore_checkpoint, save_checkpoint
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


def unrolled_distill_loss(student_logits: Sequence[jax.Array], target_logits: jax.Array,
                          mask: jax.Array | None = None, decay: float = 1.0) -> jax.Array:
    """The training-time-test loss (EAGLE-3): sum_d w_d KL_d / sum_d w_d with w_d = decay^(d-1), where KL_d is
    `distill_loss` of the drafter's depth-d logits, unrolled on its own outputs (`specjax.training.unrolled.unrolled_drafts`:
    query s of depth d predicts z[s+1] from the chain started at s - d + 1), against the target's logits at s.
    student_logits: one `[B, M, V]` per depth; target_logits `[B, M, V]`; mask `[B, M]` (1 = counted). Depth d
    counts only queries s >= d - 1 (chains that start inside the text). One depth is `distill_loss`."""
    if not student_logits:
        raise ValueError("unrolled_distill_loss needs the logits of at least one depth")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1], got {decay}")
    b, m = target_logits.shape[:2]
    mask = jnp.ones((b, m), jnp.float32) if mask is None else mask
    total, norm = 0.0, 0.0
    for d, logits in enumerate(student_logits, 1):
        inside = mask * (jnp.arange(m) >= d - 1)[None, :]
        total += decay ** (d - 1) * distill_loss(logits, target_logits, inside)
        norm += decay ** (d - 1)
    return total / norm


def distill_loss_fn(student_apply: StudentApply, target_apply: TargetApply) -> Callable[[Any, jax.Array], jax.Array]:
    """`loss_fn(params, tokens)`: KL(target || student) on the target's own scoring of `tokens[B, T]`."""
    def loss_fn(params, tokens):
        target_logits, hidden = jax.lax.stop_gradient(target_apply(tokens))
        return distill_loss(student_apply(params, tokens, hidden), target_logits)
    return loss_fn


def make_train_step(loss_fn: Callable[[Any, Any], jax.Array], optimizer: optax.GradientTransformation):
    """Jitted `(params, opt_state, batch) -> (params, opt_state, loss)` for any `loss_fn(params, batch)`;
    params/opt_state are donated."""
    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
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
    """Train `params` for `cfg.steps` steps on KL(target || student) over token batches; returns (params,
    opt_state, losses of the steps run here). Checkpointing and resumption as in `train_with_loss`."""
    return train_with_loss(params, distill_loss_fn(student_apply, target_apply),
                           lambda step: jnp.asarray(batch_fn(step), jnp.int32), cfg, checkpoint_dir=checkpoint_dir,
                           stop_after=stop_after, log_every=log_every)


@functools.lru_cache(maxsize=8)
def _optimizer_and_step(loss_fn: Callable[[Any, Any], jax.Array], cfg: TrainConfig):
    """The optimizer and the jitted step of (loss_fn, cfg), kept for the next run with the same pair: a run resumed
    in the same process (or split with `stop_after`) reuses the compiled step instead of compiling it again."""
    optimizer = make_optimizer(cfg)
    return optimizer, make_train_step(loss_fn, optimizer)


def train_with_loss(params: Any, loss_fn: Callable[[Any, Any], jax.Array], batch_fn: Callable[[int], Any],
                    cfg: TrainConfig, *, checkpoint_dir: str | Path | None = None, stop_after: int | None = None,
                    log_every: int = 0, on_step: Callable[[int, Any], None] | None = None
                    ) -> tuple[Any, Any, list[float]]:
    """Train `params` for `cfg.steps` steps of `loss_fn(params, batch_fn(step))`; returns (params, opt_state,
    losses of the steps run here).

    `batch_fn(step)` must depend only on the step (and fixed data / seed). With `checkpoint_dir`, resumes from its
    latest `step_N` checkpoint and saves every `cfg.checkpoint_every` steps and at the end; `stop_after` ends early
    after that global step (to test or split resumption). `on_step(global step done, params)` runs after every
    step (an evaluation hook: it decides itself when to evaluate).
    """
    optimizer, step_fn = _optimizer_and_step(loss_fn, cfg)
    opt_state = optimizer.init(params)
    start = 0
    if checkpoint_dir is not None and (ckpt := latest_checkpoint(checkpoint_dir)) is not None:
        params, opt_state, start = restore_checkpoint(ckpt, params, opt_state)
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    losses = []
    t0 = time.perf_counter()
    for step in range(start, end):
        params, opt_state, loss = step_fn(params, opt_state, batch_fn(step))
        losses.append(float(loss))
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{cfg.steps} loss {float(loss):.4f} ({time.perf_counter() - t0:.0f}s)", flush=True)
        done = step + 1
        if on_step is not None:
            on_step(done, params)
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
