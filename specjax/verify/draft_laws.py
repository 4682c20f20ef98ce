"""Draft samplers for the multi-draft rules: each returns drafts `[k]` int32 in sampling order and valid `[k]` bool.
q `[V]` must be the exact law the verifier will be given (pitfall 6.2.1); k is static."""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from specjax.sampling import safe_log


@partial(jax.jit, static_argnums=2)
def sample_iid(key: jax.Array, q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """k i.i.d. draws from q."""
    drafts = jax.random.categorical(key, safe_log(q), shape=(k,)).astype(jnp.int32)
    return drafts, jnp.ones(k, bool)


@partial(jax.jit, static_argnums=2)
def sample_without_replacement(key: jax.Array, q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Gumbel-top-k: sequential sampling without replacement, in descending perturbed score (= sampling order).
    When k > |supp q| the extra slots are invalid (their ids are junk)."""
    scores = safe_log(q) + jax.random.gumbel(key, q.shape, q.dtype)
    top, drafts = jax.lax.top_k(scores, k)
    return drafts.astype(jnp.int32), top > -jnp.inf


@partial(jax.jit, static_argnums=2)
def sample_greedy_drafts(key: jax.Array, q: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """Hu et al.: the top-(k-1) tokens of q (ties to the smaller id), then one draw from q outside them."""
    _, g = jax.lax.top_k(q, k - 1)
    in_g = jnp.zeros(q.shape, bool).at[g].set(True)
    last = jax.random.categorical(key, jnp.where(in_g, -jnp.inf, safe_log(q)))
    return jnp.concatenate([g, last[None]]).astype(jnp.int32), jnp.ones(k, bool)


@jax.jit
def sample_spechub(key: jax.Array, q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """SpecHub's k = 2 law from one Gumbel vector: x1 ~ q; if x1 is the hub a = argmax q then x2 ~ q(·|V∖a),
    else x2 = a."""
    _, top2 = jax.lax.top_k(safe_log(q) + jax.random.gumbel(key, q.shape, q.dtype), 2)
    hub = jnp.argmax(q)
    second = jnp.where(top2[0] == hub, top2[1], hub)
    return jnp.stack([top2[0], second]).astype(jnp.int32), jnp.ones(2, bool)
