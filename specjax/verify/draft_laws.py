"""Draft samplers for the multi-draft rules: each returns drafts `[k]` int32 in sampling order and valid `[k]` bool.

q `[V]` must be the exact law the verifier will be given (pitfall 6.2.1); k is static. Public samplers check their
inputs eagerly (ValueError: q a probability vector, k an int >= 1, the law's support constraint) and then call a
jitted core, so they also run under jit/vmap, where only shapes are checked. A slot is valid iff its draft has
q(x) > 0 (and is a real draw of the law); the cores mark slots invalid rather than emit zero-probability drafts, which
the rules' padding contracts (`specjax.verify.multi_draft`) verify losslessly: i.i.d. and without-replacement masks
leave a draw of the same law with fewer drafts; greedy and SpecHub masks are read in the law's own slot layout.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from specjax.sampling import safe_log
from specjax.validation import check_int, check_key, check_probs, is_concrete


def _check_sampler_inputs(key: Any, q: Any, k: Any, *, max_k_is_vocab: bool = False, min_support: int = 0) -> int:
    """Check a draft sampler's key, q `[V]` and k (an int >= 1; <= V when `max_k_is_vocab`); on concrete q, require
    |supp q| >= min_support. Returns k as int."""
    check_key("key", key)
    check_probs("q", q, ndim=1)
    v = np.shape(q)[0]
    k = check_int("k", k, low=1)
    if max_k_is_vocab and k > v:
        raise ValueError(f"k = {k} drafts exceed the vocabulary size V = {v} for this draft law")
    if min_support and is_concrete(q):
        support = int(np.count_nonzero(np.asarray(q, np.float64) > 0))
        if support < min_support:
            raise ValueError(f"q has {support} token(s) with positive probability; this draft law needs at least "
                             f"{min_support}")
    return k


@partial(jax.jit, static_argnums=1)
def greedy_set(q: jax.Array, size: int) -> jax.Array:
    """The top-`size` token ids of q `[V]` -> `[size]` int32, in decreasing q, ties to the smaller id (the G of Hu
    et al.; `lax.top_k` puts the lower index first among equal values)."""
    return jax.lax.top_k(q, size)[1].astype(jnp.int32)


def sample_iid(key: jax.Array, q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """k i.i.d. draws from q `[V]` -> drafts, valid `[k]` (any k >= 1)."""
    k = _check_sampler_inputs(key, q, k)
    return _sample_iid(key, jnp.asarray(q), k)


@partial(jax.jit, static_argnums=2)
def _sample_iid(key, q, k):
    drafts = jax.random.categorical(key, safe_log(q), shape=(k,)).astype(jnp.int32)
    return drafts, q[drafts] > 0


def sample_without_replacement(key: jax.Array, q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Gumbel-top-k: sequential sampling without replacement from q `[V]`, in descending perturbed score (= sampling
    order), 1 <= k <= V. When k > |supp q| only |supp q| drafts exist: the extra slots are marked invalid (their
    ids are junk in [0, V)), which is the law's own k_eff = |supp q| (THEORY §0)."""
    k = _check_sampler_inputs(key, q, k, max_k_is_vocab=True)
    return _sample_without_replacement(key, jnp.asarray(q), k)


@partial(jax.jit, static_argnums=2)
def _sample_without_replacement(key, q, k):
    scores = safe_log(q) + jax.random.gumbel(key, q.shape, q.dtype)
    top, drafts = jax.lax.top_k(scores, k)
    return drafts.astype(jnp.int32), top > -jnp.inf


def sample_greedy_drafts(key: jax.Array, q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Hu et al.: the top-(k-1) tokens of q `[V]` (`greedy_set`), then one draw from q outside them. Needs
    |supp q| >= k (checked on concrete q; under jit a smaller support marks the impossible slots invalid, the draw
    among them, leaving deterministic top tokens that the greedy verifier checks by point mass)."""
    k = _check_sampler_inputs(key, q, k, max_k_is_vocab=True, min_support=k)
    return _sample_greedy_drafts(key, jnp.asarray(q), k)


@partial(jax.jit, static_argnums=2)
def _sample_greedy_drafts(key, q, k):
    g = greedy_set(q, k - 1)
    in_g = jnp.zeros(q.shape, bool).at[g].set(True)
    rest = jnp.where(in_g, -jnp.inf, safe_log(q))
    last = jax.random.categorical(key, rest).astype(jnp.int32)
    valid = jnp.concatenate([q[g] > 0, jnp.any(rest > -jnp.inf)[None]])   # no mass left outside G: no last draft
    return jnp.concatenate([g, last[None]]), valid


def sample_spechub(key: jax.Array, q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SpecHub's k = 2 law from one Gumbel vector over q `[V]`: x1 ~ q; if x1 is the hub a = argmax q then
    x2 ~ q(·|V∖a), else x2 = a. Needs |supp q| >= 2 (checked on concrete q; under jit a one-token support leaves
    only x1 valid)."""
    _check_sampler_inputs(key, q, 2, max_k_is_vocab=True, min_support=2)
    return _sample_spechub(key, jnp.asarray(q))


@jax.jit
def _sample_spechub(key, q):
    _, top2 = jax.lax.top_k(safe_log(q) + jax.random.gumbel(key, q.shape, q.dtype), 2)
    hub = jnp.argmax(q)
    drafts = jnp.stack([top2[0], jnp.where(top2[0] == hub, top2[1], hub)]).astype(jnp.int32)
    return drafts, q[drafts] > 0
