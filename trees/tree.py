"""A draft tree as a fixed-capacity pytree, and the helpers one target call needs to score it.

Node 0 is the root: the pending token (the newest emitted token, not yet in any cache). Nodes `1..N` are drafted
tokens, stored in topological order (`parent[i] < i`). Each node also records how its *children* were drawn:
the law code (`LAW_DET` deterministic, `LAW_IID` i.i.d., `LAW_WOR` without replacement) and the distribution
`probs[i]` they were drawn from, so the verifier can apply the matching multi-draft rule. `children[i, :]` lists
the node's child slots in sampling order (-1 = empty); i.i.d. duplicates may repeat a node index. A chain is a tree
whose nodes each have one child.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from specjax.verify.names import TREE_LAWS

LAW_DET, LAW_IID, LAW_WOR = 0, 1, 2
LAW_NAMES = TREE_LAWS            # law code c is the law named TREE_LAWS[c] (the shared vocabulary)


@struct.dataclass
class DraftTree:
    """Fields (B = batch, N+1 = nodes including the root, K = max child slots, V = vocabulary):
    token `[B, N+1]` int32 (root = pending), parent `[B, N+1]` int32 (-1 at the root), depth `[B, N+1]` int32,
    valid `[B, N+1]` bool, children `[B, N+1, K]` int32 (sampling order, -1 empty), law `[B, N+1]` int32,
    probs `[B, N+1, V]` float32 (the law the node's children were drawn from; unused at leaves), or `[B, N+1, 1]`
    when every node's children are deterministic (point-mass verification never reads a draft law, so builders of
    such trees do not store one; see `draft_laws`)."""

    token: jax.Array
    parent: jax.Array
    depth: jax.Array
    valid: jax.Array
    children: jax.Array
    law: jax.Array
    probs: jax.Array

    @property
    def batch_size(self) -> int:
        return self.token.shape[0]

    @property
    def stores_laws(self) -> bool:
        return self.probs.shape[-1] > 1

    @property
    def num_nodes(self) -> int:
        """N: drafted node capacity (the root is not counted)."""
        return self.token.shape[1] - 1

    @property
    def max_children(self) -> int:
        return self.children.shape[2]


def draft_laws(tree: DraftTree, target_probs: jax.Array) -> jax.Array:
    """The draft law of every node `[B, N+1, V]` for the rules: `tree.probs`, or, for a tree of deterministic
    children that stores none, the target law itself (any `[V]` law does: point-mass rules never read it)."""
    return tree.probs if tree.stores_laws else target_probs


def ancestor_mask(parent: jax.Array, max_depth: int) -> jax.Array:
    """Ancestor-or-self visibility `[..., N+1, N+1]` (row i sees column j iff j is on the root-to-i path).

    parent: `[..., N+1]` int (-1 at the root). Pointer jumping over the static depth bound, no loop over nodes.
    """
    n1 = parent.shape[-1]
    up = jnp.where(parent < 0, jnp.arange(n1), parent)       # the root is its own parent (a fixed point)
    cur = jnp.broadcast_to(jnp.arange(n1), parent.shape)
    mask = jax.nn.one_hot(cur, n1, dtype=bool)
    for _ in range(max_depth):
        cur = jnp.take_along_axis(up, cur, axis=-1)
        mask = mask | jax.nn.one_hot(cur, n1, dtype=bool)
    return mask


def depth_positions(depth: jax.Array, position: jax.Array) -> jax.Array:
    """Rotary positions `[B, N+1]` of the nodes: the root sits at `position[B]`, a node at depth d at `position + d`."""
    return position[:, None] + depth


def root_to_node_paths(parent: jax.Array, depth: jax.Array, max_depth: int) -> jax.Array:
    """paths `[..., N+1, max_depth+1]`: `paths[..., i, d]` = node index of i's ancestor at depth d (i itself at
    d = depth[i]), -1 for d > depth[i]."""
    n1 = parent.shape[-1]
    up = jnp.where(parent < 0, jnp.arange(n1), parent)
    cur = jnp.broadcast_to(jnp.arange(n1), parent.shape)
    ancestors = [cur]                                         # ancestors[k] = k-th ancestor
    for _ in range(max_depth):
        cur = jnp.take_along_axis(up, cur, axis=-1)
        ancestors.append(cur)
    anc = jnp.stack(ancestors, axis=-1)                       # [..., N+1, D+1]
    d = jnp.arange(max_depth + 1)
    k = depth[..., None] - d                                  # which ancestor sits at depth d
    picked = jnp.take_along_axis(anc, jnp.clip(k, 0, max_depth), axis=-1)
    return jnp.where(k >= 0, picked, -1)


def children_from_parent(parent: jax.Array, valid: jax.Array, max_children: int) -> jax.Array:
    """children `[..., N+1, K]`: the valid nodes whose parent is i, in increasing index order, -1 padded.

    Builders lay children out contiguously in sampling order, so index order is sampling order.
    """
    n1 = parent.shape[-1]
    idx = jnp.arange(n1)
    is_child = (parent[..., None, :] == idx[:, None]) & valid[..., None, :]     # [..., i, j]
    keyed = jnp.where(is_child, idx, n1)
    first = jnp.sort(keyed, axis=-1)[..., :max_children]
    return jnp.where(first < n1, first, -1).astype(jnp.int32)


def validate_tree(tree: DraftTree, vocab_size: int | None = None) -> None:
    """Eager structural checks on a concrete tree; ValueError on the first problem found.

    Checks shapes, parent-before-child order, depth = parent depth + 1, that every child slot points to a valid
    node whose parent is the slot's owner, and token ids.
    """
    token = np.asarray(tree.token)
    if token.ndim != 2:
        raise ValueError(f"tree.token must be [B, N+1], got shape {token.shape}")
    b, n1 = token.shape
    for name in ("parent", "depth", "valid", "law"):
        if np.shape(getattr(tree, name)) != (b, n1):
            raise ValueError(f"tree.{name} must be [B, N+1] = [{b}, {n1}], got {np.shape(getattr(tree, name))}")
    if np.ndim(tree.children) != 3 or np.shape(tree.children)[:2] != (b, n1):
        raise ValueError(f"tree.children must be [B, N+1, K] with B, N+1 = {b}, {n1}, got {np.shape(tree.children)}")
    if np.ndim(tree.probs) != 3 or np.shape(tree.probs)[:2] != (b, n1):
        raise ValueError(f"tree.probs must be [B, N+1, V] with B, N+1 = {b}, {n1}, got {np.shape(tree.probs)}")
    parent, depth, valid = np.asarray(tree.parent), np.asarray(tree.depth), np.asarray(tree.valid)
    if np.any(parent[:, 0] != -1) or np.any(depth[:, 0] != 0) or not np.all(valid[:, 0]):
        raise ValueError("node 0 must be the root: parent -1, depth 0, valid")
    idx = np.arange(n1)[None, 1:]
    child_parent = parent[:, 1:]
    bad = valid[:, 1:] & ((child_parent < 0) | (child_parent >= idx))
    if np.any(bad):
        r, i = np.argwhere(bad)[0]
        raise ValueError(f"row {r}: node {i + 1} has parent {child_parent[r, i]}, which is not before it "
                         "(nodes must be in topological order: parent index < child index)")
    par_depth = np.take_along_axis(depth, np.clip(parent, 0, None), axis=1)
    if np.any(valid[:, 1:] & (depth[:, 1:] != par_depth[:, 1:] + 1)):
        raise ValueError("a node's depth must be its parent's depth + 1")
    par_valid = np.take_along_axis(valid, np.clip(parent, 0, None), axis=1)
    if np.any(valid[:, 1:] & ~par_valid[:, 1:]):
        raise ValueError("a valid node has an invalid parent")
    kids = np.asarray(tree.children)
    has = kids >= 0
    if np.any(kids >= n1):
        raise ValueError(f"tree.children holds node ids >= N+1 = {n1}")
    safe = np.clip(kids, 0, None)
    kid_parent = np.take_along_axis(parent, safe.reshape(b, -1), axis=1).reshape(kids.shape)
    kid_valid = np.take_along_axis(valid, safe.reshape(b, -1), axis=1).reshape(kids.shape)
    if np.any(has & ((kid_parent != np.arange(n1)[None, :, None]) | ~kid_valid)):
        raise ValueError("a child slot points to a node that is invalid or whose parent is a different node")
    if vocab_size is not None:
        if np.any(valid & ((token < 0) | (token >= vocab_size))):
            raise ValueError(f"tree tokens must lie in [0, {vocab_size})")
        if np.shape(tree.probs)[2] not in (1, vocab_size):
            raise ValueError(f"tree.probs vocabulary {np.shape(tree.probs)[2]} != {vocab_size}")
        if np.shape(tree.probs)[2] == 1 and np.any(valid & (np.asarray(tree.law) != LAW_DET)):
            raise ValueError("a tree without stored draft laws (probs [B, N+1, 1]) must have deterministic nodes only")
    law = np.asarray(tree.law)
    if np.any((law < 0) | (law >= len(LAW_NAMES))):
        raise ValueError(f"tree.law codes must be in [0, {len(LAW_NAMES)})")


def tree_from_parents(tokens, parents, law: int = LAW_DET, probs=None, vocab_size: int | None = None,
                      max_children: int | None = None) -> DraftTree:
    """Build (and validate) a concrete batch-1 tree from Python lists: tokens/parents over nodes 0..N (root first,
    parents[0] = -1). probs `[N+1, V]` defaults to uniform. Used by tests and the reward simulator."""
    tokens = np.asarray(tokens, np.int32)
    parents = np.asarray(parents, np.int32)
    if tokens.shape != parents.shape or tokens.ndim != 1:
        raise ValueError("tokens and parents must be 1-D lists of the same length (root first)")
    n1 = tokens.size
    bad = [i for i in range(1, n1) if not 0 <= parents[i] < i]
    if parents[0] != -1 or bad:
        raise ValueError(f"parents must have parents[0] = -1 and parents[i] < i (a parent after its child at "
                         f"nodes {bad})")
    depth = np.zeros(n1, np.int32)
    for i in range(1, n1):                       # host-side construction of a small concrete tree
        depth[i] = depth[parents[i]] + 1
    v = vocab_size or int(tokens.max()) + 1
    kmax = max_children or max(1, int(np.bincount(parents[1:], minlength=n1).max()))
    probs = np.full((n1, v), 1.0 / v, np.float32) if probs is None else np.asarray(probs, np.float32)
    valid = np.ones(n1, bool)
    children = children_from_parent(jnp.asarray(parents), jnp.asarray(valid), kmax)
    tree = DraftTree(token=jnp.asarray(tokens)[None], parent=jnp.asarray(parents)[None],
                     depth=jnp.asarray(depth)[None], valid=jnp.asarray(valid)[None], children=children[None],
                     law=jnp.full((1, n1), law, jnp.int32), probs=jnp.asarray(probs)[None])
    validate_tree(tree, vocab_size)
    return tree
