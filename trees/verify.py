"""One public entry to verify any draft tree with any applicable rule (`transport/THEORY.md` §4-§5):

- "token": the per-node multi-draft rule of each node's law, walking from the root (`trees.walk.walk_tree`);
- "traversal": leaf-to-root, sequence-level acceptance (`trees.traversal`), for trees whose child slots point to
  distinct nodes (not a merged SpecInfer trie);
- "gbv": greedy multi-path block verification of K i.i.d. chains (`trees.multipath`), for the SpecInfer trie;
- "gumbel_list": the coupled Gumbel list at every node (`specjax.verify.coupled`), for trees whose children are the
  Gumbel-top-k of their output position's race (a coupled RSD-C tree): `key` is then the races `[B, D+1, V]`
  (`specjax.verify.coupled.round_races`), and the output is a function of them whatever the drafter.
"""
from __future__ import annotations

import jax
import numpy as np

from specjax.validation import check_int, check_probs, is_concrete
from specjax.verify.names import TREE_VERIFIERS, check_name
from trees.multipath import check_gbv_inputs, gbv_walk_unchecked
from trees.traversal import check_traversal_inputs, traversal_walk_unchecked
from trees.tree import LAW_DET, LAW_IID, LAW_WOR, DraftTree, validate_tree
from trees.walk import RuleSet, coupled_rules, default_rules, walk_tree

ALL_LAWS = (LAW_DET, LAW_IID, LAW_WOR)


def verify_tree(key: jax.Array, tree: DraftTree, target_probs: jax.Array, *, verifier: str = "token",
                max_depth: int | None = None, rules: RuleSet | None = None
                ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Verify a tree per row; lossless w.r.t. `target_probs [B, N+1, V]` (the warped target law at every node).

    verifier: one of TREE_VERIFIERS; max_depth: static bound on the depth D (default: the tree's, read from a
    concrete tree; N under a trace); rules: the per-law rules of "token" (default: the core's). Returns path
    `[B, D+1]` (node ids, path[:, 0] = 0, -1 past the end), num_accepted `[B]`, tokens `[B, D+1]` (accepted tokens,
    the correction or bonus token, then PAD_TOKEN). Malformed trees or laws (NaN, unnormalised, a child whose
    parent is another node, a rule the tree's layout does not allow) raise ValueError before anything is traced.
    """
    check_name(verifier, TREE_VERIFIERS, "tree verifier")
    check_probs("target_probs", target_probs, ndim=3)
    if np.shape(target_probs)[:2] != tuple(np.shape(tree.token)):
        raise ValueError(f"target_probs must be [B, N+1, V] with B, N+1 = {np.shape(tree.token)}, "
                         f"got {np.shape(target_probs)}")
    if max_depth is None:
        concrete = is_concrete(tree.depth) and is_concrete(tree.valid)
        max_depth = int(np.max(np.where(tree.valid, tree.depth, 0))) if concrete else tree.num_nodes
        max_depth = max(max_depth, 1)
    check_int("max_depth", max_depth, low=1)
    races_shape = (np.shape(tree.token)[0], max_depth + 1, np.shape(target_probs)[2])
    if verifier == "gumbel_list" and np.shape(key) != races_shape:
        raise ValueError(f"gumbel_list verifies with the races of the output positions: key must be "
                         f"specjax.verify.coupled.round_races(key, position, {max_depth + 1}, V), shape "
                         f"{races_shape}, got shape {np.shape(key)}")
    if all(is_concrete(x) for x in jax.tree.leaves(tree)):
        validate_tree(tree, np.shape(target_probs)[2])
        depth = np.asarray(tree.depth)[np.asarray(tree.valid)]
        if depth.max() > max_depth:
            raise ValueError(f"the tree is deeper ({depth.max()}) than max_depth = {max_depth}")
    if verifier == "traversal":
        check_traversal_inputs(tree, target_probs, max_depth)
    elif verifier == "gbv":
        check_gbv_inputs(tree, target_probs, max_depth, "ratio")
    return verify_tree_unchecked(key, tree, target_probs, verifier, max_depth, rules)


def verify_tree_unchecked(key, tree: DraftTree, target_probs, verifier: str, max_depth: int,
                          rules: RuleSet | None = None, laws: tuple[int, ...] = ALL_LAWS):
    """`verify_tree` without input checks, for jitted loops (`laws`: the static law codes the tree uses, so
    "token" compiles only their rules)."""
    if verifier == "traversal":
        return traversal_walk_unchecked(key, tree, target_probs, max_depth)
    if verifier == "gbv":
        return gbv_walk_unchecked(key, tree, target_probs, max_depth)
    if verifier == "gumbel_list":
        return walk_tree(key, tree, target_probs, coupled_rules(), max_depth, laws, races=True)
    return walk_tree(key, tree, target_probs, rules if rules is not None else default_rules(), max_depth, laws)
