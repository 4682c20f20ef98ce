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
    "transport": ("trees", "specjax.apps", "specjax.bench", "specjax.model", "specjax.runners", "specjax.decode",
                  "specjax.eagle", "specjax.io", "specjax.speculators", "flax", "matplotlib"),
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


# ---- no import cycles ------------------------------------------------------------------------------------------------
# The helpers take a package's root folder, so the same check can cover `specjax` and `trees`.

def module_name(path: Path, src_root: Path) -> str:
    """Dotted module name of a file under src_root (a package's `__init__.py` names the package)."""
    parts = path.relative_to(src_root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_targets(node: ast.AST, name: str, is_package: bool, modules: set[str]) -> list[str]:
    """Dotted names an import statement binds, made absolute (relative imports resolved against `name`);
    `from m import x` names the submodule m.x when there is one, else m itself."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        pkg = (name if is_package else name.rpartition(".")[0]).split(".")
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph(package_root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports, from every import statement in the file (function-level
    ones too: a lazy import still closes a cycle, it only hides it from import time). An import of a.b.c where only
    a.b is a module counts as a.b (a name imported from it)."""
    files = {module_name(f, package_root.parent): f for f in sorted(package_root.rglob("*.py"))}
    graph = {}
    for name, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _import_targets(node, name, path.name == "__init__.py", set(files)):
                parts = target.split(".")
                owner = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in files),
                             None)
                if owner is not None:
                    edges.add(owner)
        graph[name] = edges
    return graph


def collapse(graph: dict[str, set[str]], depth: int) -> dict[str, set[str]]:
    """The graph between the first `depth` components of each name (depth 2: sub-packages and top-level modules),
    edges inside one node dropped."""
    out: dict[str, set[str]] = {}
    for name, edges in graph.items():
        node = ".".join(name.split(".")[:depth])
        out.setdefault(node, set()).update(".".join(e.split(".")[:depth]) for e in edges)
    return {node: edges - {node} for node, edges in out.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle [a, b, ..., a] of a directed graph, or None (depth-first search, in sorted order for stable
    messages)."""
    state: dict[str, int] = {}                      # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_transport_has_no_import_cycle():
    graph = import_graph(ROOT / "transport")
    assert len(graph) > 20 and sum(map(len, graph.values())) > 30         # it did see the package and its imports
    assert find_cycle(graph) is None, f"import cycle in transport: {' -> '.join(find_cycle(graph))}"
    packages = collapse(graph, 2)
    assert find_cycle(packages) is None, f"sub-package cycle in transport: {' -> '.join(find_cycle(packages))}"


def test_the_cycle_check_sees_cycles(tmp_path):
    """Negative control: a synthetic package whose cycle is closed by a lazy relative import, and one whose modules
    are acyclic but whose sub-packages are not."""
    def package(files: dict[str, str]) -> Path:
        for rel, src in files.items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(src)
        return tmp_path / rel.split("/")[0]

    lazy = package({"pkg/__init__.py": "", "pkg/a.py": "from pkg.sub import b\n", "pkg/sub/__init__.py": "",
                    "pkg/sub/b.py": "def f():\n    from .. import a\n    from .c import g\n",
                    "pkg/sub/c.py": "import numpy\n"})
    graph = import_graph(lazy)
    assert graph == {"pkg": set(), "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.a", "pkg.sub.c"},
                     "pkg.sub.c": set()}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    graph["pkg.sub.b"].discard("pkg.a")
    assert find_cycle(graph) is None

    layered = package({"lay/__init__.py": "", "lay/x/__init__.py": "", "lay/y/__init__.py": "",
                       "lay/x/m.py": "from lay.y.n import h\n", "lay/y/n.py": "h = 1\n",
                       "lay/y/k.py": "from lay.x import m2\n", "lay/x/m2.py": ""})
    graph = import_graph(layered)
    assert find_cycle(graph) is None
    assert find_cycle(collapse(graph, 2)) == ["lay.x", "lay.y", "lay.x"]


# the only core modules transport may use: eager input checks and the one vocabulary of draft laws and rules
TRANSPORT_USES_FROM_CORE = {"specjax.validation", "specjax.verify.names"}


def test_transport_uses_only_the_core_vocabulary():
    core = {module_name(f, ROOT) for f in (ROOT / "specjax").rglob("*.py")}
    used = {target for f in _layer_files("transport") for node in ast.walk(ast.parse(f.read_text(), str(f)))
            for target in _import_targets(node, module_name(f, ROOT), f.name == "__init__.py", core)
            if target.split(".")[0] == "specjax"}
    assert used == TRANSPORT_USES_FROM_CORE, f"transport uses {sorted(used)} from the core"
