"""Draft trees: fixed-capacity tree pytrees, builders, tree-attention verification, the tree speculator and GTO's
draft tree reward."""
from trees.speculator import TREE_METHODS, TreeSpeculator, make_builder, make_speculator

__all__ = ["TREE_METHODS", "TreeSpeculator", "make_builder", "make_speculator"]
