"""Traversal verification (Weng et al., NeurIPS'25, arXiv 2505.12398): leaf-to-root, sequence-level acceptance of a
draft tree (transport/THEORY.md §5.2). Same contract as `trees.walk.walk_tree`; on a chain it is block
verification (same law, same acceptance).

State per node: the current target law P_v (initially target_probs[v]), the draft law Q_v its *current* child was
drawn from, and a weight w_v. w(root) = 1 and, down the path of remaining first children,
w(c) = min(1, w(u) P_u(t_c) / Q_u(t_c)). Repeat: take the first leaf of a post-order walk (descend through each
node's first remaining child, in sampling order); accept its path w.p. w(leaf) and emit one token from P_leaf;
otherwise delete the leaf and update its parent u:
    Z = Σ (w_u P_u − Q_u)_+,   P_u <- norm((w_u P_u − Q_u)_+),   w_u <- Z / (Z + 1 − w_u),
    Q_u <- Q_u without the deleted token, renormalised, iff u's children were drawn without replacement
    (i.i.d. siblings keep Q_u; deterministic children use a point mass on the current child).
A root left without children is accepted. Every detail above was settled by exact enumeration against the variants
ports ship (transport/exact/audit.py): deepest-leaf-first, level-order, renormalising i.i.d. siblings, not renormalising
without-replacement ones and emitting from the original target law are all lossy.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from specjax.sampling import sample_token
from specjax.validation import check_int, check_probs, default_tolerance, is_concrete
from specjax.verify.chain import PAD_TOKEN, residual_distribution
from trees.tree import LAW_DET, LAW_WOR, DraftTree, draft_laws, root_to_node_paths, validate_tree


class _State(NamedTuple):
    """Per-row loop state (N+1 nodes, V tokens)."""

    target: jax.Array      # [N+1, V] current P_v
    draft: jax.Array       # [N+1, V] current Q_v (i.i.d. / without replacement; unused for deterministic children)
    weight: jax.Array      # [N+1] w_v, meaningful where touched
    touched: jax.Array     # [N+1] bool: the root, and every node that lost a child (its w_v is stored)
    alive: jax.Array       # [N+1] bool
    leaf: jax.Array        # int32: the accepted node, -1 while undecided


def _first_children(children, valid, alive):
    """The first remaining child of every node `[N+1]` (-1 if none), in slot (sampling) order."""
    safe = jnp.clip(children, 0, None)
    ok = (children >= 0) & valid[safe] & alive[safe]
    return jnp.where(jnp.any(ok, -1), jnp.take_along_axis(children, jnp.argmax(ok, -1)[:, None], -1)[:, 0], -1)


def _step(state: _State, u, token, parent, valid, children, law, max_depth):
    """One check: descend to the first post-order leaf, accept it or delete it and update its parent."""
    fc = _first_children(children, valid, state.alive)
    node, w_node, w_par = jnp.int32(0), state.weight[0], state.weight[0]
    for _ in range(max_depth):                           # static depth bound: the walk down remaining first children
        nxt = fc[node]
        has = nxt >= 0
        nxt_s = jnp.maximum(nxt, 0)
        t = token[nxt_s]
        q_t = jnp.where(law[node] == LAW_DET, 1.0, state.draft[node, t])
        num = w_node * state.target[node, t]
        fresh = jnp.where(num >= q_t, 1.0, num / jnp.where(q_t > 0, q_t, 1.0))
        w_next = jnp.where(state.touched[nxt_s], state.weight[nxt_s], fresh)
        w_par = jnp.where(has, w_node, w_par)
        node, w_node = jnp.where(has, nxt_s, node), jnp.where(has, w_next, w_node)
    undecided = state.leaf < 0
    accept = undecided & ((node == 0) | (u < w_node))
    reject = undecided & ~accept
    par = jnp.maximum(parent[node], 0)
    v = state.target.shape[1]
    q_par = jnp.where(law[par] == LAW_DET, jax.nn.one_hot(token[node], v, dtype=state.draft.dtype), state.draft[par])
    scaled = w_par * state.target[par]
    z = jnp.sum(jnp.maximum(scaled - q_par, 0.0))
    new_target = jnp.where(z > 0, residual_distribution(scaled, q_par), state.target[par])
    den = z + 1.0 - w_par
    new_weight = jnp.where(den > 0, z / jnp.where(den > 0, den, 1.0), 1.0)
    dropped = jnp.where(jnp.arange(v) == token[node], 0.0, state.draft[par])
    mass = jnp.sum(dropped)
    new_draft = jnp.where((law[par] == LAW_WOR) & (mass > 0), dropped / jnp.where(mass > 0, mass, 1.0), state.draft[par])
    upd = lambda a, row: a.at[par].set(jnp.where(reject, row, a[par]))
    return _State(target=upd(state.target, new_target), draft=upd(state.draft, new_draft),
                  weight=upd(state.weight, new_weight), touched=upd(state.touched, reject | state.touched[par]),
                  alive=state.alive.at[node].set(state.alive[node] & ~reject),
                  leaf=jnp.where(accept, node, state.leaf).astype(jnp.int32))


def traversal_walk(key: jax.Array, tree: DraftTree, target_probs: jax.Array, max_depth: int
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Traversal verification per row (ragged across the batch), lossless w.r.t. `target_probs`.

    tree: a `DraftTree` whose node laws are LAW_IID, LAW_WOR or LAW_DET, every child slot pointing to a distinct
    node (a SpecInfer trie, which merges i.i.d. chains, is not a valid input: see `trees.multipath`);
    target_probs `[B, N+1, V]`; max_depth: static bound on the tree depth D. Returns path `[B, D+1]` (node ids,
    path[:, 0] = 0, -1 past the end), num_accepted `[B]`, tokens `[B, D+1]` (accepted tokens, the correction or bonus
    token, then PAD_TOKEN). Raises ValueError eagerly on malformed concrete inputs.
    """
    check_traversal_inputs(tree, target_probs, max_depth)
    return traversal_walk_unchecked(key, tree, target_probs, max_depth)


@partial(jax.jit, static_argnames="max_depth")
def traversal_walk_unchecked(key, tree: DraftTree, target_probs, max_depth: int):
    """`traversal_walk` without input checks (same contract), for use inside jitted loops."""
    b, n1 = tree.token.shape
    keys = jax.random.split(key, b)
    paths = root_to_node_paths(tree.parent, tree.depth, max_depth)              # [B, N+1, D+1]

    def one_row(key, token, parent, valid, children, law, probs, p_all, row_paths):
        init = _State(target=p_all, draft=probs.astype(p_all.dtype), weight=jnp.ones(n1, p_all.dtype),
                      touched=jnp.zeros(n1, bool).at[0].set(True), alive=valid, leaf=jnp.int32(-1))
        k_check, k_final = jax.random.split(key)
        u = jax.random.uniform(k_check, (n1,), p_all.dtype)

        def body(i, state):
            return _step(state, u[i], token, parent, valid, children, law, max_depth)

        state = jax.lax.fori_loop(0, n1, body, init)
        leaf = jnp.maximum(state.leaf, 0)
        last = sample_token(k_final, state.target[leaf])
        path = row_paths[leaf]
        n = jnp.sum(path >= 0).astype(jnp.int32) - 1
        slots = jnp.arange(max_depth + 1)
        drafted = token[jnp.clip(jnp.roll(path, -1), 0, None)]                # token of path[d + 1] at slot d
        out = jnp.where(slots < n, drafted, jnp.where(slots == n, last, PAD_TOKEN))
        return path, n, out.astype(jnp.int32)

    return jax.vmap(one_row)(keys, tree.token, tree.parent, tree.valid, tree.children, tree.law,
                             draft_laws(tree, target_probs), target_probs, paths)


def check_traversal_inputs(tree: DraftTree, target_probs, max_depth) -> None:
    """Eager ValueError checks: tree structure, target laws `[B, N+1, V]`, depth bound, distinct child slots, and
    that every drafted child of an i.i.d. / without-replacement node has q > 0."""
    check_int("max_depth", max_depth, low=1)
    check_probs("target_probs", target_probs, ndim=3)
    if np.shape(target_probs)[:2] != tuple(np.shape(tree.token)):
        raise ValueError(f"target_probs must be [B, N+1, V] with B, N+1 = {np.shape(tree.token)}, "
                         f"got {np.shape(target_probs)}")
    if not all(is_concrete(x) for x in (tree.token, tree.parent, tree.children, tree.probs, tree.depth, tree.law)):
        return
    validate_tree(tree, np.shape(target_probs)[2])
    depth, valid = np.asarray(tree.depth), np.asarray(tree.valid)
    if np.any(valid & (depth > max_depth)):
        raise ValueError(f"the tree is deeper ({depth[valid].max()}) than max_depth = {max_depth}")
    kids = np.asarray(tree.children)
    for r, i in zip(*np.nonzero((kids >= 0).sum(-1) > 1)):
        ids = kids[r, i][kids[r, i] >= 0]
        if len(set(ids.tolist())) < len(ids):
            raise ValueError(f"row {r}: node {i} lists child node {ids[0]} in several slots (a merged trie); "
                             "traversal needs distinct children: verify i.i.d. chains with trees.multipath")
    law, probs, token = np.asarray(tree.law), np.asarray(tree.probs, np.float64), np.asarray(tree.token)
    has = (kids >= 0) & np.take_along_axis(valid, np.clip(kids, 0, None).reshape(len(kids), -1), 1).reshape(kids.shape)
    rows, nodes, slots = np.nonzero(has & (law != LAW_DET)[..., None])
    if len(rows):
        qx = probs[rows, nodes, token[rows, kids[rows, nodes, slots]]]
        if np.any(qx <= 0):
            raise ValueError("a drafted child has q = 0 under its parent's probs: tree.probs must be the law the "
                             "children were drawn from")
        check_probs("tree.probs of sampled nodes", probs[rows, nodes], ndim=2, tol=default_tolerance(tree.probs))
