"""Training the EAGLE head (`specjax.runners.eagle`): its loss, and the checkpoint that `load_eagle` reads.

`head_loss` is what the head is trained on (by `specjax.training.distill.train_with_loss`): forward KL from the
target's next-token law to the head's over the VocabTrim set, at each depth of the head unrolled on its own outputs
(`unrolled_distill_loss`: one depth is EAGLE-1's teacher-forced training, several EAGLE-3's training-time test),
plus EAGLE's feature regression at depth 1, which makes the head's own output a stand-in for the target's feature
when it drafts past its first token.

`ship_head` writes a trained head in the format `load_eagle` restores: bf16 parameters (half the size; the head is
read back in float32), the VocabTrim set, optionally the feature moment of the data-aware low-rank head
(`with_low_rank_head`), and metadata that must name what `load_eagle` rebuilds the head from.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from specjax.model.config import ModelConfig
from specjax.model.io.checkpoint import read_meta, save_checkpoint
from specjax.training.distill import unrolled_distill_loss


def head_loss(head_hidden: Sequence[jax.Array], target_hidden: jax.Array, mask: jax.Array,
              embedding_kept: jax.Array, decay: float = 1.0, feature_weight: float = 1.0) -> jax.Array:
    """The head's training loss, a scalar: `unrolled_distill_loss` of the kept-vocabulary logits at each depth
    plus `feature_weight` times the masked mean smooth-L1 (Huber, delta 1) between the head's depth-1 and the
    target's hidden states.

    head_hidden: the head's normed hidden states `[B, T, D]`, one per unrolled depth (depth d at query s predicts
    the token at s + 1 of the chain started at s - d + 1, `specjax.training.unrolled.unrolled_drafts`);
    target_hidden `[B, T, D]`: the target's final normed hidden states over the same text; mask `[B, T]` (1 =
    counted); embedding_kept `[N, D]`: the tied embedding's rows of the VocabTrim set, so both laws are over the
    same N tokens; decay: depth d weighs decay^(d-1). Zero exactly where every depth reproduces the target's states.
    """
    kl = unrolled_distill_loss([h @ embedding_kept.T for h in head_hidden], target_hidden @ embedding_kept.T, mask,
                               decay)
    huber = optax.huber_loss(head_hidden[0] - target_hidden, delta=1.0).mean(-1)
    return kl + feature_weight * jnp.sum(huber * mask) / jnp.maximum(mask.sum(), 1)


def ship_head(out: str | Path, head, keep_ids, target_config: ModelConfig, step: int, extra: dict,
              moment: jax.Array | None = None) -> Path:
    """Write the trained head's parameters `head` (an nnx state) to the directory `out`, replacing a checkpoint
    there: bf16 parameters, the VocabTrim ids `keep_ids [N]`, the feature moment `moment [D, D]` (E[h h^T] of the
    features the head learnt to emit) when given, and `extra` in the metadata.

    `extra["train"]` must hold the head's `d_ff` and `trim` = N, and `extra["feature_layers"]` (default none) the
    target layers of EAGLE-3's fused features it reads: `load_eagle` rebuilds the head from them, so a checkpoint
    without them would not load. ValueError when they are missing or disagree with `keep_ids`, or when `out`
    exists and is not a specjax checkpoint (it is never deleted then)."""
    out = Path(out)
    keep = np.asarray(keep_ids)
    train = extra.get("train", {})
    if "d_ff" not in train or train.get("trim") != keep.size:
        raise ValueError(f"extra['train'] must name the head's d_ff and trim = {keep.size} (the VocabTrim set's "
                         f"size): load_eagle rebuilds the head from them; got {train}")
    if out.exists():
        read_meta(out)                                          # ValueError unless a checkpoint: never rmtree others
        shutil.rmtree(out)
    state = {"head": jax.tree.map(lambda x: x.astype(jnp.bfloat16), head), "keep_ids": jnp.asarray(keep, jnp.int32)}
    if moment is not None:
        state["feature_moment"] = jnp.asarray(moment, jnp.float32)
    return save_checkpoint(out, state, step=step, config=target_config,
                           extra={**extra, "feature_moment": moment is not None})
