"""Greedy multi-path block verification (GBV, after Thomas & Pal, arXiv 2602.16961) on the trie of K i.i.d. chains
(the `trees.sampled_builders.SpecInferTree` layout: slot j of a node is chain j's next node), with the `walk_tree` contract
(transport/THEORY.md §5.4).

Select the lexicographically best chain Γ under a per-position ranking of tokens (`rank`: "ratio" p/q, "target" p,
"draft" q; ties to the smaller id), then run block verification on Γ with Γ's own autoregressive law q^Γ (the law of
the best of K i.i.d. chains, from order statistics; see `transport.exact.multipath`). q^Γ is evaluated in log space as a
sum of positive terms, so it stays accurate for K = 8 in float32 where upper^K − lower^K would cancel.
"""
from __future__ import annotations

from functools import partial
from math import comb

import jax
import jax.numpy as jnp
import numpy as np

from specjax.sampling import safe_log, sample_token
from specjax.validation import check_int, check_probs, default_tolerance, is_concrete
from specjax.verify.block import block_decision, emitted_tokens
from specjax.verify.importance import importance_keys, log_best_of_law, mass_below, xlogy
from trees.tree import LAW_IID, DraftTree, validate_tree

RANKS = ("ratio", "target", "draft")


def _keys(p, q, rank: str):
    """Ranking key `[..., V]` (higher = better); tokens with q = 0 last."""
    if rank == "ratio":
        return importance_keys(p, q)
    if rank == "target":
        return jnp.where(q > 0, p, -1.0)
    return q


def selected_path_law(path_tokens, p_path, q_path, k: int, rank: str):
    """log q^Γ `[L, V]` along a selected path of one row: tokens `[L]`, p_path `[L, V]`, q_path `[L, V]`."""
    m = jnp.arange(1, k + 1)[:, None]
    j = jnp.arange(1, k + 1)[None, :]
    log_binom = jnp.asarray(np.log([[comb(a, b) if b <= a else 1 for b in range(1, k + 1)] for a in range(1, k + 1)]))

    def step(log_pi, xs):
        y, p, q = xs
        below = mass_below(q, _keys(p, q, rank))
        log_law = log_best_of_law(q, below, log_pi)
        # posterior of the number of chains sharing Γ_≤d: ∝ Σ_m π_m C(m, j) q(y)^j below(y)^(m-j), j <= m
        upd = log_pi[:, None] + log_binom + xlogy(j, safe_log(q[y])) + xlogy(m - j, safe_log(below[y]))
        log_next = jax.nn.logsumexp(jnp.where(j <= m, upd, -jnp.inf), axis=0)
        return log_next - jax.nn.logsumexp(log_next), log_law

    log_pi0 = jnp.full((k,), -jnp.inf, p_path.dtype).at[k - 1].set(0.0)
    _, log_laws = jax.lax.scan(step, log_pi0, (path_tokens, p_path, q_path))
    return log_laws


def _best_chain(tokens, keys):
    """Index of the lexicographically best chain: tokens, keys `[K, L]` (key of each chain's token at its prefix)."""
    alive = jnp.ones(tokens.shape[0], bool)
    for d in range(tokens.shape[1]):
        best_key = jnp.max(jnp.where(alive, keys[:, d], -jnp.inf))
        cand = alive & (keys[:, d] == best_key)
        best_tok = jnp.min(jnp.where(cand, tokens[:, d], jnp.iinfo(jnp.int32).max))
        alive = cand & (tokens[:, d] == best_tok)
    return jnp.argmax(alive)


def gbv_walk(key: jax.Array, tree: DraftTree, target_probs: jax.Array, max_depth: int, rank: str = "ratio"
             ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """GBV per row; lossless w.r.t. `target_probs`.

    tree: K i.i.d. chains of L = max_depth tokens merged into a trie (SpecInferTree layout, LAW_IID, K =
    max_children); target_probs `[B, N+1, V]`. Returns path `[B, L+1]` (node ids of the accepted prefix of the
    selected chain, -1 after), num_accepted `[B]`, tokens `[B, L+1]` (accepted tokens, one correction or bonus token,
    PAD_TOKEN after). Raises ValueError eagerly on malformed concrete inputs.
    """
    check_gbv_inputs(tree, target_probs, max_depth, rank)
    return gbv_walk_unchecked(key, tree, target_probs, max_depth, rank)


@partial(jax.jit, static_argnames=("max_depth", "rank"))
def gbv_walk_unchecked(key, tree: DraftTree, target_probs, max_depth: int, rank: str = "ratio"):
    """`gbv_walk` without input checks (same contract), for use inside jitted loops."""
    b, k = tree.token.shape[0], tree.max_children
    keys = jax.random.split(key, b)

    def one_row(key, token, children, probs, p_all):
        nodes = [jnp.zeros(k, jnp.int32)]
        for _ in range(max_depth):                                   # chain j follows slot j from the root
            nodes.append(jnp.maximum(children[nodes[-1], jnp.arange(k)], 0))
        nodes = jnp.stack(nodes, axis=1)                              # [K, L+1]
        tok = token[nodes[:, 1:]]
        par = nodes[:, :-1]
        p_tok = jnp.take_along_axis(p_all[par], tok[..., None], -1)[..., 0]
        q_tok = jnp.take_along_axis(probs[par], tok[..., None], -1)[..., 0]
        best = _best_chain(tok, _keys(p_tok, q_tok, rank))
        path_nodes, path_tok = nodes[best], tok[best]
        q_sel = jnp.exp(selected_path_law(path_tok, p_all[path_nodes[:-1]], probs[path_nodes[:-1]].astype(p_all.dtype),
                                          k, rank))
        k_u, k_final = jax.random.split(key)
        u = jax.random.uniform(k_u, (1, max_depth), p_all.dtype)
        n, law = block_decision(u, path_tok[None], q_sel[None], p_all[path_nodes][None])
        out = emitted_tokens(path_tok[None], n, sample_token(k_final, law))[0]
        path = jnp.where(jnp.arange(max_depth + 1) <= n[0], path_nodes, -1)
        return path.astype(jnp.int32), n[0], out

    return jax.vmap(one_row)(keys, tree.token, tree.children, tree.probs, target_probs)


def check_gbv_inputs(tree: DraftTree, target_probs, max_depth, rank) -> None:
    """Eager ValueError checks: ranking name, depth, target laws `[B, N+1, V]`, and (concrete trees) that every slot
    j leads chain j down to depth L through i.i.d. nodes whose probs give each drafted token q > 0."""
    if rank not in RANKS:
        raise ValueError(f"unknown ranking {rank!r}; expected one of {RANKS}")
    check_int("max_depth", max_depth, low=1)
    check_probs("target_probs", target_probs, ndim=3)
    if np.shape(target_probs)[:2] != tuple(np.shape(tree.token)):
        raise ValueError(f"target_probs must be [B, N+1, V] with B, N+1 = {np.shape(tree.token)}, "
                         f"got {np.shape(target_probs)}")
    if not all(is_concrete(x) for x in (tree.token, tree.children, tree.probs, tree.law, tree.parent)):
        return
    validate_tree(tree, np.shape(target_probs)[2])
    kids, law, probs = np.asarray(tree.children), np.asarray(tree.law), np.asarray(tree.probs)
    token = np.asarray(tree.token)
    b, _, k = kids.shape
    node = np.zeros((b, k), np.int64)
    for d in range(max_depth):
        if np.any(law[np.arange(b)[:, None], node] != LAW_IID):
            raise ValueError("GBV needs i.i.d. chains: every inner node must have law LAW_IID")
        nxt = kids[np.arange(b)[:, None], node, np.arange(k)[None, :]]
        if np.any(nxt < 0):
            raise ValueError(f"chain slots must reach depth max_depth = {max_depth} (a trie of K full chains)")
        q_rows = probs[np.arange(b)[:, None], node]
        check_probs("tree.probs along the chains", q_rows, tol=default_tolerance(tree.probs))
        if np.any(np.take_along_axis(q_rows, token[np.arange(b)[:, None], nxt][..., None], -1) <= 0):
            raise ValueError("a drafted chain token has q = 0 under its parent's probs")
        node = nxt
