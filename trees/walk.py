"""The token-level tree walk: the target scores every node in one call (`score_tree`), and the acceptance walks from
the root applying at each node the multi-draft rule matching how its children were drawn (`walk_tree`); committing
the accepted path is the speculator's (`trees.speculator.TreeSpeculator.round`).

Rules share the core's signature `rule(key, p[V], q[V], drafts[k], valid[k]) -> (accepted_slot | -1, token)`.
i.i.d. children use `rrs_iid`, children drawn without replacement `rrs_without_replacement` (both from
`specjax.verify.multi_draft`); deterministic children use its `point_mass_rule`. At temperature 0 every rule
accepts exactly the target argmax when it is a child, so greedy tree decoding equals greedy AR decoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from specjax.model.block import Block
from specjax.runners.base import Forward, Handle
from specjax.sampling import sample_token
from specjax.verify.chain import PAD_TOKEN
from specjax.verify.multi_draft import point_mass_rule
from trees.tree import LAW_DET, LAW_IID, LAW_WOR, DraftTree, ancestor_mask, depth_positions, draft_laws

Rule = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@dataclass(frozen=True)
class RuleSet:
    """The per-law rules (hashable, so a speculator holding one stays a static jit argument)."""

    iid: Rule
    wor: Rule
    det: Rule = point_mass_rule


def default_rules() -> RuleSet:
    """The core's shared multi-draft rules (`specjax.verify.multi_draft`): RRS for i.i.d. children, RRS without
    replacement for children drawn by Gumbel-top-k."""
    from specjax.verify.multi_draft import rrs_iid, rrs_without_replacement
    return RuleSet(iid=rrs_iid, wor=rrs_without_replacement)


def tree_block(tree: DraftTree, position: jax.Array, max_depth: int) -> Block:
    """The target's block for a whole tree: node i at slot `position + i`, rotary position `position + depth`,
    seeing the committed prefix and its ancestors-or-self (`max_depth`: static bound on the depth)."""
    n1 = tree.token.shape[1]
    return Block(tokens=tree.token, positions=depth_positions(tree.depth, position),
                 slots=position[:, None] + jnp.arange(n1, dtype=jnp.int32)[None, :], window=position,
                 visible=ancestor_mask(tree.parent, max_depth))


def score_tree(target: Handle, target_cache: Any, tree: DraftTree, position: jax.Array, max_depth: int) -> Forward:
    """One target call over all N+1 nodes (root first) at slots `position + i`; logits `[B, N+1, V]`."""
    return target.forward(target_cache, tree_block(tree, position, max_depth))


@struct.dataclass
class _Walk:
    """One row's walk so far: node (the current node), alive (every node so far accepted), num_accepted, path
    `[D+1]` (node ids, -1 past the end) and tokens `[D+1]` (emitted, PAD after)."""

    node: jax.Array
    alive: jax.Array
    num_accepted: jax.Array
    path: jax.Array
    tokens: jax.Array


def coupled_rules() -> RuleSet:
    """The rule of a coupled tree (`specjax.verify.coupled`): the Gumbel list at every node, whose children are the
    Gumbel-top-k of the race its verdict reads."""
    from specjax.verify.coupled import gumbel_list_of_times
    return RuleSet(iid=gumbel_list_of_times, wor=gumbel_list_of_times, det=gumbel_list_of_times)


def walk_tree(key: jax.Array, tree: DraftTree, target_probs: jax.Array, rules: RuleSet, max_depth: int,
              laws: tuple[int, ...] = (LAW_DET, LAW_IID, LAW_WOR), races: bool = False
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Acceptance walk from the root, per row (ragged across the batch).

    target_probs: `[B, N+1, V]` the warped target law at each node. laws: the static set of law codes the tree
    uses (only those rules are compiled). races: `key` is not one key but the races `[B, max_depth+1, V]` of the
    output positions (`specjax.verify.coupled.round_races`): the node at depth d is verified with race d, and a leaf's
    bonus token is the rule's own (a coupled rule emits its race's winner). Returns path `[B, max_depth+1]` (node
    ids, path[:, 0] = 0, -1 past the end), num_accepted `[B]`, tokens `[B, max_depth+1]` (accepted tokens, then the
    correction or bonus token, PAD after).
    """
    b = tree.token.shape[0]
    keys = key if races else jax.random.split(key, b)
    by_code = {LAW_DET: rules.det, LAW_IID: rules.iid, LAW_WOR: rules.wor}
    laws = tuple(sorted(set(laws)))
    branches = [by_code[c] for c in laws]
    code_to_branch = jnp.zeros(3, jnp.int32).at[jnp.array(laws)].set(jnp.arange(len(laws), dtype=jnp.int32))

    def one_row(key, token, valid, children, law, probs, p_all):
        def step(walk: _Walk, d):
            node = walk.node
            if races:
                k_rule = key[d]
            else:
                k_rule, k_bonus = jax.random.split(jax.random.fold_in(key, d))
            kids = children[node]
            safe = jnp.clip(kids, 0, None)
            kvalid = (kids >= 0) & valid[safe]
            drafts = token[safe]
            p, q = p_all[node], probs[node]
            if len(branches) == 1:
                slot, tok = branches[0](k_rule, p, q, drafts, kvalid)
            else:
                slot, tok = jax.lax.switch(code_to_branch[law[node]], branches, k_rule, p, q, drafts, kvalid)
            leaf = ~jnp.any(kvalid)
            slot = jnp.where(leaf, -1, slot)
            if not races:                                          # no children: the bonus token from p
                tok = jnp.where(leaf, sample_token(k_bonus, p), tok)
            accepted = walk.alive & (slot >= 0)
            nxt = kids[jnp.clip(slot, 0, None)]
            below = jnp.minimum(d + 1, max_depth)
            return _Walk(node=jnp.where(accepted, nxt, node), alive=accepted,
                         num_accepted=walk.num_accepted + accepted.astype(jnp.int32),
                         path=walk.path.at[below].set(jnp.where(accepted, nxt, walk.path[below])),
                         tokens=walk.tokens.at[d].set(jnp.where(walk.alive, tok, PAD_TOKEN))), None

        start = _Walk(node=jnp.int32(0), alive=jnp.bool_(True), num_accepted=jnp.int32(0),
                      path=jnp.full((max_depth + 1,), -1, jnp.int32).at[0].set(0),
                      tokens=jnp.full((max_depth + 1,), PAD_TOKEN, jnp.int32))
        walk, _ = jax.lax.scan(step, start, jnp.arange(max_depth + 1))
        return walk.path, walk.num_accepted, walk.tokens

    return jax.vmap(one_row)(keys, tree.token, tree.valid, tree.children, tree.law, draft_laws(tree, target_probs),
                             target_probs)


def check_tree_batch(tree: DraftTree, batch: int) -> None:
    """Eager shape check: ValueError when a tree and a batch disagree."""
    if tree.token.shape[0] != batch:
        raise ValueError(f"the tree has batch {tree.token.shape[0]} but the decode state has batch {batch}")
