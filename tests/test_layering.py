"""The direction of every import: the core never imports trees, transport or the applications; trees never
imports transport or the applications; transport imports no model code (only the core's validation and verifier
vocabulary). Checked on the source with `ast`, so a lazy import inside a function counts too."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what each layer may not import (module prefixes)
FORBIDDEN = {
    "specjax": ("trees", "transport", "specjax.apps"),
    "trees": ("transport", "specjax.apps"),
    "transport": ("trees", "specjax.apps", "specjax.model", "specjax.runners", "specjax.decode", "specjax.eagle",
                  "specjax.io", "specjax.speculators", "flax"),
}


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _layer_files(layer: str) -> list[Path]:
    files = sorted((ROOT / layer).rglob("*.py"))
    return [f for f in files if not (layer == "specjax" and "apps" in f.relative_to(ROOT / layer).parts)]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_down_the_layers(layer):
    bad = [(str(f.relative_to(ROOT)), name) for f in _layer_files(layer) for name in _imports(f)
           if any(name == p or name.startswith(p + ".") for p in FORBIDDEN[layer])]
    assert not bad, f"{layer} imports upward: {bad}"


def test_the_check_sees_imports():
    """Negative control: the scanner finds a lazy upward import."""
    tree = ast.parse("def f():\n    from trees.builders import make_builder\n")
    found = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert found == ["trees.builders"]
    assert len(_layer_files("specjax")) > 20 and len(_layer_files("trees")) > 5
