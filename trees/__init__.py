"""Draft trees: fixed-capacity tree pytrees, builders (one drafter call per level), tree-attention verification, the
tree speculator, GTO's draft tree reward and its training step (`trees.gto`). Importing the package registers every
tree method with the core's method registry (`specjax.speculators.make_method("rsd-c", budget=16)`)."""
from functools import partial

from specjax.speculators import register_method
from trees.builders import TREE_METHODS, make_builder
from trees.speculator import TreeSpeculator, make_speculator

for _name in TREE_METHODS:
    register_method(_name, partial(make_speculator, _name))

__all__ = ["TREE_METHODS", "TreeSpeculator", "make_builder", "make_speculator"]
