"""Draft trees: fixed-capacity tree pytrees (`tree`), the candidate pool and the drafter call of one level (`pool`),
the level loop every builder shares (`level_loop`) and the builders (`builders`: static, EAGLE-2, RSD-C, RSD-S,
SpecInfer), the acceptance walk with per-node rules (`walk`), traversal and multi-path verification, the public
`verify_tree` (`verify`), the tree speculator (`speculator`), GTO's draft tree reward and its training step
(`reward`, `gto`), Sequoia shapes and the hardware-aware configuration search (`sequoia`, `configure`).

Tree methods are named in `specjax.methods` (`make_method("rsd-c", budget=16)`); importing this package registers
nothing."""
from trees.builders import TREE_METHODS, make_builder
from trees.speculator import TreeSpeculator, make_speculator
from trees.verify import verify_tree

__all__ = ["TREE_METHODS", "TreeSpeculator", "make_builder", "make_speculator", "verify_tree"]
