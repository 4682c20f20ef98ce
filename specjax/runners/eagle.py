"""EAGLE-style drafter for a Llama-family target: one decoder layer over [token embedding ; target feature].

Token t is paired with the target's final-normed hidden state at t-1 (the block's `features`,
`specjax.runners.base.shifted_features`); the layer's final-normed output stands in for the target feature at t
when drafting further. The target's embedding (frozen, shared) embeds tokens and, tied, serves as the head.
VocabTrim (`with_vocab_trim`): the head scores only the N most frequent target tokens (`EagleParams.keep_ids`) and
the rest get probability exactly zero, so the draft law stays an exact distribution over the full vocabulary for
the verifier. Low-rank head (SlimSpec): the
head is factorised as `hidden @ A @ B` (`A [D, r]`, `B [r, V]`, from a truncated SVD of the embedding weighted by
the second moment of the head's hidden states, see `with_low_rank_head`), which cuts its cost from D·V to
r·(D + V); the softmax still runs over the full vocabulary (or the VocabTrim set), so the draft law is again exact
for the verifier, only a different (cheaper) law than the full head's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from flax import struct

from specjax.model.block import Block, causal_mask
from specjax.model.cache import KVCache, init_cache
from specjax.model.config import ModelConfig
from specjax.model.decoder import DecoderLayer, RMSNorm
from specjax.runners.base import Forward, Handle, Runner
from specjax.runners.model import as_model, fused_features
from specjax.validation import check_int


def eagle_layer_config(target: ModelConfig, d_ff: int | None = None) -> ModelConfig:
    """Config of the head's single decoder layer: the target's attention shape, an optionally narrower MLP."""
    return target.replace(n_layers=1, d_ff=d_ff or target.d_ff)


class EagleHead(nnx.Module):
    """fc `[2D -> D]` on [embedding ; feature], one decoder layer, a final RMSNorm (head = target embedding). With
    `feature_width` F > D (EAGLE-3's fused low/mid/high target features), `fuse` `[F -> D]` first maps the target's
    features to D; the head's own outputs, which it reads deeper in a chain, are D wide already."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs, feature_width: int | None = None):
        self.config = config
        init = nnx.initializers.normal(config.init_std)
        wide = feature_width is not None and feature_width != config.d_model
        self.fuse = nnx.Linear(feature_width, config.d_model, use_bias=False, kernel_init=init, rngs=rngs) if wide \
            else None
        self.fc = nnx.Linear(2 * config.d_model, config.d_model, use_bias=False, kernel_init=init, rngs=rngs)
        self.layer = DecoderLayer(config, rngs)
        self.norm = RMSNorm(config.d_model, config.rms_eps)

    def fused(self, features):
        """Features `[..., F or D]` -> `[..., D]`: the target's fused features through `fuse`, D-wide ones as they
        are (the width is static, so this is a trace-time choice)."""
        return features if features.shape[-1] == self.config.d_model else self.fuse(features)

    def __call__(self, embedded, features, positions, cache: KVCache | None = None, slots=None, mask=None):
        """embedded `[B, T, D]`, features `[B, T, D or F]`, positions `[B, T]` -> (normed hidden `[B, T, D]`,
        cache). Without a cache: causal attention among the T tokens (training); with one: write at slots `[B, T]`,
        see mask `[B, T, S]`."""
        b, t, _ = embedded.shape
        features = self.fused(features.astype(embedded.dtype))
        x = self.fc(jnp.concatenate([embedded, features], axis=-1))
        if cache is None:
            x, _, _ = self.layer(x, positions, None, None, None, causal_mask(b, t) if mask is None else mask)
        else:
            x, k, v = self.layer(x, positions, cache.keys[0], cache.values[0], slots, mask)
            cache = KVCache(keys=(k,), values=(v,))
        return self.norm(x), cache


def head_logits(hidden: jax.Array, embedding: jax.Array, keep_ids: jax.Array | None,
                factors: tuple[jax.Array, jax.Array] | None = None) -> jax.Array:
    """Logits `[B, T, V]` f32 from normed hidden `[B, T, D]`; with `keep_ids [N]` only those ids get finite
    logits (the others -inf, i.e. draft probability exactly 0). With `factors = (A [D, r], B [r, V'])` the head is
    `hidden @ A @ B` (V' = N when `keep_ids` is given: B's columns are already the kept ids)."""
    if factors is not None:
        scores = ((hidden @ factors[0]) @ factors[1]).astype(jnp.float32)
    else:
        weight = embedding if keep_ids is None else embedding[keep_ids]
        scores = (hidden @ weight.T).astype(jnp.float32)                              # [B, T, V or N]
    if keep_ids is None:
        return scores
    full = jnp.full(hidden.shape[:-1] + (embedding.shape[0],), -jnp.inf, jnp.float32)
    return full.at[..., keep_ids].set(scores)


@struct.dataclass
class EagleParams:
    """The head's parameters. head: the `EagleHead` state; embedding `[V, D]`: the target's (frozen, shared);
    keep_ids `[N]` int32: the VocabTrim set (None = full vocabulary); head_factors `(A [D, r], B [r, V or N])`: the
    low-rank head (None = full head); feature_moment `[D, D]`: E[h h^T] of the head's hidden states, stored with a
    trained head for `with_low_rank_head` (None if unknown). Which options are on is the pytree's structure, so the
    jitted loop specialises on it without flags that could disagree with the arrays."""

    head: Any
    embedding: jax.Array
    keep_ids: jax.Array | None = None
    head_factors: tuple[jax.Array, jax.Array] | None = None
    feature_moment: jax.Array | None = None


@dataclass(frozen=True)
class EagleRunner(Runner):
    """EAGLE-style drafter over `EagleParams`; reads the target's features."""

    graphdef: Any
    config: ModelConfig           # the target's config (vocabulary and width)
    reads_features: bool = True
    fused_width: int = 0          # the width of the target's fused features it reads (0: D, EAGLE-1's feature)

    @property
    def name(self) -> str:
        return "eagle" if not self.fused_width else "eagle3"

    @property
    def feature_width(self) -> int:
        return self.fused_width or self.config.d_model

    def fuse_features(self, params: EagleParams, features):
        if not self.fused_width:
            return features
        return nnx.merge(self.graphdef, params.head).fused(features.astype(params.embedding.dtype))

    def init_cache(self, params, batch_size, capacity) -> KVCache:
        return init_cache(self.config, batch_size, capacity, num_layers=1)

    def hidden(self, params: EagleParams, tokens, positions, features, cache=None, slots=None, mask=None):
        """Normed head output `[B, T, D]` and cache for tokens/positions `[B, T]`, features `[B, T, D]`."""
        head = nnx.merge(self.graphdef, params.head)
        embedded = jnp.take(params.embedding, tokens, axis=0)
        return head(embedded, features, positions, cache, slots, mask)

    def forward(self, params: EagleParams, cache, block: Block) -> Forward:
        if block.features is None:
            raise ValueError("the EAGLE drafter needs the target's features in its blocks")
        hidden, cache = self.hidden(params, block.tokens, block.positions, block.features, cache, block.slots,
                                    block.cache_mask(cache.capacity))
        return Forward(head_logits(hidden, params.embedding, params.keep_ids, params.head_factors), hidden, cache)


def init_eagle(target: Handle, *, d_ff: int | None = None, seed: int = 0) -> Handle:
    """A randomly initialised EAGLE head for the model handle `target` (its embedding shared, not trained). Built
    from `specjax.runners.model.fused_features(target, layers)`, it reads EAGLE-3's fused features (and decodes with that
    handle as its target)."""
    width = target.runner.feature_width
    head = EagleHead(eagle_layer_config(target.config, d_ff), rngs=nnx.Rngs(seed), feature_width=width)
    graphdef, state = nnx.split(head)
    embedding = as_model(target).embed.embedding[...]
    fused = width if width != target.config.d_model else 0
    return Handle(EagleRunner(graphdef, target.config, fused_width=fused), EagleParams(state, embedding))


def with_vocab_trim(eagle: Handle, keep_ids: np.ndarray) -> Handle:
    """VocabTrim variant: the head scores only `keep_ids` (sorted, unique, in-vocabulary)."""
    keep_ids = np.unique(np.asarray(keep_ids, np.int64))
    if keep_ids.size < 1 or keep_ids[0] < 0 or keep_ids[-1] >= eagle.config.vocab_size:
        raise ValueError(f"keep_ids must be non-empty ids in [0, {eagle.config.vocab_size})")
    if eagle.params.head_factors is not None:
        raise ValueError("apply with_vocab_trim before with_low_rank_head (the factors are cut to the kept ids)")
    return eagle.replace(params=eagle.params.replace(keep_ids=jnp.asarray(keep_ids, jnp.int32)))


def with_low_rank_head(eagle: Handle, rank: int) -> Handle:
    """Low-rank (SlimSpec-style) variant: the head `hidden @ W` (W = E.T `[D, V]`, only the VocabTrim columns when
    the drafter is trimmed) becomes `hidden @ A @ B`, `A [D, r]`, `B [r, V or N]`, computed in float64.

    With `EagleParams.feature_moment` (M = E[h h^T] `[D, D]` of the hidden states the head sees, stored with a
    trained head), the factors minimise the expected logit error E||h W - h A B||^2 =
    ||M^(1/2) (W - A B)||_F^2: the truncated SVD of M^(1/2) W, mapped back by M^(-1/2). Without it, the plain
    truncated SVD of W (every direction of h weighted alike). `rank = D` reproduces the full head up to rounding.
    """
    params = eagle.params
    check_int("rank", rank, low=1, high=eagle.config.d_model)
    if params.head_factors is not None:
        raise ValueError("the drafter already has a low-rank head")
    weight = np.asarray(params.embedding, np.float64)
    if params.keep_ids is not None:
        weight = weight[np.asarray(params.keep_ids)]
    weight = weight.T                                                      # [D, V or N]
    moment = params.feature_moment
    if moment is None:
        root, inv_root = np.eye(weight.shape[0]), np.eye(weight.shape[0])
    else:
        lam, vec = np.linalg.eigh(np.asarray(moment, np.float64))
        lam = np.maximum(lam, 1e-9 * lam.max())                            # directions h never takes: kept, tiny
        root, inv_root = (vec * np.sqrt(lam)) @ vec.T, (vec / np.sqrt(lam)) @ vec.T
    u, s, vt = np.linalg.svd(root @ weight, full_matrices=False)          # M^(1/2) W = u diag(s) vt
    a = (inv_root @ (u[:, :rank] * s[:rank])).astype(np.float32)          # [D, r]
    b = vt[:rank].astype(np.float32)                                       # [r, V or N]
    return eagle.replace(params=params.replace(head_factors=(jnp.asarray(a), jnp.asarray(b))))


def frequent_token_ids(token_stream: np.ndarray, vocab_size: int, size: int, always: tuple[int, ...] = ()
                       ) -> np.ndarray:
    """The `size` most frequent ids of a token stream (plus `always`, e.g. EOS), sorted."""
    counts = np.bincount(np.asarray(token_stream).ravel(), minlength=vocab_size)
    counts[list(always)] = counts.max() + 1
    return np.sort(np.argsort(-counts, kind="stable")[:size])


def load_eagle(directory, target: Handle, *, trim: bool = False) -> Handle:
    """The trained head saved by `experiments/train_eagle.py` (bf16 on disk, float32 here) for `target` (the handle
    `eagle_target(directory, model_handle)` gives: a head of fused features needs the target that emits them);
    `trim=True` gives its VocabTrim variant (the stored frequent-token set). ValueError names any parameter that
    does not match the target's config, or features the target does not emit."""
    from specjax.model.io.checkpoint import read_meta, restore_checkpoint

    meta = read_meta(directory)
    layers = tuple(meta["extra"].get("feature_layers", ()))
    if getattr(target.runner, "layers", ()) != layers:
        raise ValueError(f"the head at {directory} reads the target's features of layers {list(layers)} (+ the last),"
                         f" but the target handle emits those of {list(getattr(target.runner, 'layers', ()))}: "
                         "load it with eagle_target(directory, target)")
    d_ff = meta["extra"].get("train", {}).get("d_ff")
    width = target.runner.feature_width
    # the head's shapes only (nothing initialised): every parameter is restored from the checkpoint
    abstract = nnx.eval_shape(lambda: EagleHead(eagle_layer_config(target.config, d_ff), rngs=nnx.Rngs(0),
                                                feature_width=width))
    graphdef, shapes = nnx.split(abstract)
    n_keep = meta["extra"].get("train", {}).get("trim", 0)
    like = {"head": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16), shapes),
            "keep_ids": jax.ShapeDtypeStruct((n_keep,), jnp.int32)}
    d = target.config.d_model
    if meta["extra"].get("feature_moment", False):
        like["feature_moment"] = jax.ShapeDtypeStruct((d, d), jnp.float32)
    saved, _, _ = restore_checkpoint(directory, like)
    moment = saved.get("feature_moment")
    params = EagleParams(head=jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), saved["head"]),
                         embedding=as_model(target).embed.embedding[...],
                         feature_moment=None if moment is None else jnp.asarray(moment, jnp.float32))
    runner = EagleRunner(graphdef, target.config, fused_width=width if width != d else 0)
    eagle = Handle(runner, params)
    return with_vocab_trim(eagle, np.asarray(saved["keep_ids"])) if trim else eagle


def eagle_target(directory, target: Handle) -> Handle:
    """The target handle the head saved at `directory` drafts for: the model handle `target` itself, or, for a head
    trained on EAGLE-3's fused features (`feature_layers` in its metadata), `fused_features(target, layers)` (same
    logits, wider features)."""
    from specjax.model.io.checkpoint import read_meta

    layers = tuple(read_meta(directory)["extra"].get("feature_layers", ()))
    return fused_features(target, layers) if layers else target


def default_eagle_path():
    """Where the shipped SmolLM2 head lives (inside the package)."""
    from pathlib import Path
    return Path(__file__).resolve().parents[1] / "data" / "eagle_smollm2"
