"""Tree pytree helpers: ancestor mask, paths, children, validation."""
import jax.numpy as jnp
import numpy as np
import pytest

from trees.tree import (LAW_WOR, ancestor_mask, children_from_parent, depth_positions, root_to_node_paths,
                        tree_from_parents, validate_tree)

PARENTS = [-1, 0, 0, 1, 1, 2, 3, 6]          # irregular tree, depth 4


def _brute_ancestors(parents):
    n = len(parents)
    m = np.zeros((n, n), bool)
    for i in range(n):
        j = i
        while j >= 0:
            m[i, j] = True
            j = parents[j]
    return m


def test_ancestor_mask_matches_brute_force_and_chain_is_causal():
    par = jnp.asarray([PARENTS, [-1, 0, 1, 2, 3, 4, 5, 6]])
    mask = np.asarray(ancestor_mask(par, 7))
    np.testing.assert_array_equal(mask[0], _brute_ancestors(PARENTS))
    np.testing.assert_array_equal(mask[1], np.tril(np.ones((8, 8), bool)))   # a chain = causal mask


def test_paths_depths_children():
    tree = tree_from_parents([0, 5, 6, 7, 8, 9, 10, 11], PARENTS, vocab_size=16)
    np.testing.assert_array_equal(np.asarray(tree.depth[0]), [0, 1, 1, 2, 2, 2, 3, 4])
    paths = np.asarray(root_to_node_paths(tree.parent, tree.depth, 4))[0]
    np.testing.assert_array_equal(paths[7], [0, 1, 3, 6, 7])
    np.testing.assert_array_equal(paths[5], [0, 2, 5, -1, -1])
    np.testing.assert_array_equal(np.asarray(tree.children[0, :3]), [[1, 2], [3, 4], [5, -1]])
    pos = np.asarray(depth_positions(tree.depth, jnp.asarray([10])))
    np.testing.assert_array_equal(pos[0], [10, 11, 11, 12, 12, 12, 13, 14])
    kids = children_from_parent(jnp.asarray(PARENTS), jnp.asarray([True] * 7 + [False]), 2)
    assert int(kids[6, 0]) == -1                        # an invalid node is nobody's child


def test_validation_rejects_bad_trees():
    with pytest.raises(ValueError, match="parent"):
        tree_from_parents([0, 1, 2], [-1, 2, 0])         # a parent after its child
    with pytest.raises(ValueError, match="parent"):
        tree_from_parents([0, 1, 2], [0, 0, 1])          # no root
    tree = tree_from_parents([0, 1, 2], [-1, 0, 1], law=LAW_WOR, vocab_size=4)
    with pytest.raises(ValueError, match="tokens"):
        validate_tree(tree.replace(token=tree.token.at[0, 2].set(9)), 4)
    with pytest.raises(ValueError, match="topological"):
        validate_tree(tree.replace(parent=jnp.asarray([[-1, 2, 0]]), depth=jnp.asarray([[0, 2, 1]])), 4)
    with pytest.raises(ValueError, match="depth"):
        validate_tree(tree.replace(depth=jnp.asarray([[0, 1, 3]])), 4)
    with pytest.raises(ValueError, match="batch|B, N"):
        validate_tree(tree.replace(valid=jnp.ones((2, 3), bool)), 4)
