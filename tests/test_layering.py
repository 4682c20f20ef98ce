"""The direction of every import, and no import cycle anywhere.

Layers, bottom up (each may import only what is below it):
- the core, `specjax` without `apps`, `bench` and `methods`: its own inner order is
  leaves (`validation`, `sampling`, `metrics`) -> `model` -> `runners` -> `constrain`, `crossvocab` -> `verify` ->
  `parallel` -> `costs` -> `decode` -> `training` -> `testing` (the rules below name what matters: `model` imports
  neither `runners` nor `decode`; `runners` do not import `decode`; `costs` import only model configurations; `training` imports `decode`,
  never the reverse);
- `trees` (draft trees) on the core; `transport` (theory) on the core's validation and verifier vocabulary only;
- `specjax.methods` (every method by name), `specjax.bench` (the experiment library) and `specjax.apps` (the
  commands) on all of them; `bench` never imports `apps`.

Checked on the source with `ast`, so an import inside a function counts too. The public API (`specjax/__init__.py`)
names its modules as strings and imports them lazily; it imports nothing at import time.
"""
import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("specjax", "trees", "transport")
ABOVE_CORE = ("specjax.apps", "specjax.bench", "specjax.methods")

# module prefix -> prefixes it may not import (the longest matching prefix of a module applies, plus every
# shorter one: a rule for `specjax` binds `specjax.model` too)
FORBIDDEN = {
    "specjax": ("trees", "transport") + ABOVE_CORE,
    "specjax.model": ("specjax.runners", "specjax.decode", "specjax.verify", "specjax.parallel", "specjax.costs",
                      "specjax.training", "specjax.testing"),
    "specjax.runners": ("specjax.decode", "specjax.verify", "specjax.parallel", "specjax.costs", "specjax.training",
                        "specjax.testing"),
    "specjax.verify": ("specjax.model", "specjax.runners", "specjax.decode", "specjax.parallel", "specjax.costs",
                       "specjax.training", "specjax.testing"),
    "specjax.parallel": ("specjax.decode", "specjax.costs", "specjax.training", "specjax.testing"),
    "specjax.costs": ("specjax.model.decoder", "specjax.model.io", "specjax.model.cache", "specjax.model.block",
                      "specjax.runners", "specjax.decode", "specjax.verify", "specjax.parallel", "specjax.training",
                      "specjax.testing", "flax", "jax"),
    "specjax.constrain": ("specjax.decode", "specjax.verify", "specjax.parallel", "specjax.costs",
                          "specjax.training", "specjax.testing"),
    "specjax.crossvocab": ("specjax.constrain", "specjax.decode", "specjax.verify", "specjax.parallel",
                           "specjax.costs", "specjax.training", "specjax.testing"),
    "specjax.decode": ("specjax.training", "specjax.testing"),
    "specjax.training": ("specjax.testing",),
    "specjax.bench": ("specjax.apps",),
    "specjax.apps": (),
    "specjax.methods": ("specjax.apps", "specjax.bench"),
    "trees": ("transport",) + ABOVE_CORE,
    "transport": ("trees", "flax", "matplotlib", "specjax.model", "specjax.runners", "specjax.decode",
                  "specjax.parallel", "specjax.costs", "specjax.training", "specjax.testing") + ABOVE_CORE,
}


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(root: Path = ROOT, packages=PACKAGES) -> dict[str, Path]:
    """Every module of the packages, by dotted name."""
    return {module_name(f, root): f for p in packages for f in sorted((root / p).rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules `path` (module `name`) imports, anywhere in its source: `from a import b` counts as `a.b` when
    that is a module, else as `a`; relative imports are resolved."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
    return out


def import_graph(root: Path = ROOT, packages=PACKAGES) -> dict[str, set[str]]:
    """module -> the modules of the packages it imports."""
    modules = package_modules(root, packages)
    known = set(modules)
    return {m: {i for i in imports_of(f, m, known) if i in known and i != m} for m, f in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan): each is an import cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def collapse(graph: dict[str, set[str]], depth: int) -> dict[str, set[str]]:
    """The graph between the first `depth` components of each name (depth 2: sub-packages and top-level modules,
    e.g. `specjax.model`, `transport.exact`), edges inside one node dropped."""
    out: dict[str, set[str]] = {}
    for name, edges in graph.items():
        node = ".".join(name.split(".")[:depth])
        out.setdefault(node, set()).update(".".join(e.split(".")[:depth]) for e in edges)
    return {node: edges - {node} for node, edges in out.items()}


def rule_for(module: str) -> tuple[str, ...]:
    """Every forbidden prefix that binds `module` (its own layer's and each enclosing layer's)."""
    return tuple(p for layer, banned in FORBIDDEN.items() if module == layer or module.startswith(layer + ".")
                 for p in banned)


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_import_cycle():
    graph = import_graph()
    assert not find_cycles(graph), f"import cycles: {find_cycles(graph)}"
    packages = collapse(graph, 2)
    assert not find_cycles(packages), f"sub-package cycles: {find_cycles(packages)}"


def test_imports_point_down_the_layers():
    modules = package_modules()
    known = set(modules)
    bad = []
    for name, path in modules.items():
        banned = rule_for(name)
        if name.startswith(ABOVE_CORE) or name == "specjax":
            banned = tuple(p for p in banned if not any(_matches(p, a) for a in ("trees", "transport") + ABOVE_CORE))
            banned += FORBIDDEN.get(next((a for a in ABOVE_CORE if _matches(name, a)), ""), ())
        bad += [(name, i) for i in imports_of(path, name, known) if any(_matches(i, p) for p in banned)]
    assert not bad, f"imports against the layering: {bad}"


# the only core modules transport may use: eager input checks, the one vocabulary of draft laws and rules, and the
# formulas of the lossy chain rules (numpy/jax-agnostic, no jax import: written once for the audit and the loop)
TRANSPORT_USES_FROM_CORE = {"specjax.validation", "specjax.verify.names", "specjax.verify.lossy_rules"}


def test_transport_uses_only_the_core_vocabulary():
    graph = import_graph()
    used = {i for m, edges in graph.items() if m.startswith("transport") for i in edges if i.startswith("specjax")}
    assert used == TRANSPORT_USES_FROM_CORE, f"transport uses {sorted(used)} from the core"


def test_the_public_api_imports_nothing_at_import_time():
    tree = ast.parse((ROOT / "specjax" / "__init__.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.Import) or n.module in ("__future__", "typing") for n in top_level)


def test_the_checks_see_what_they_must():
    """Negative controls: the scanner finds a lazy upward import, the cycle finder finds a cycle (and no false
    one), and the rules bind inner packages."""
    tree = ast.parse("def f():\n    from trees.builders import make_builder\n")
    assert [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)] == ["trees.builders"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert "specjax.decode" in rule_for("specjax.model.decoder") and "trees" in rule_for("specjax.model.decoder")
    assert "specjax.training" in rule_for("specjax.decode.loop")
    graph = import_graph()
    assert len(graph) > 80 and "specjax.runners.base" in graph["specjax.runners.model"]


def test_the_cycle_check_sees_cycles_on_disk(tmp_path):
    """Negative control on real files: a cycle closed by a lazy relative import, and modules that are acyclic while
    their sub-packages are not."""
    def package(files: dict[str, str]) -> str:
        for rel, src in files.items():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(src)
        return rel.split("/")[0]

    lazy = package({"pkg/__init__.py": "", "pkg/a.py": "from pkg.sub import b\n", "pkg/sub/__init__.py": "",
                    "pkg/sub/b.py": "def f():\n    from .. import a\n    from .c import g\n",
                    "pkg/sub/c.py": "import numpy\n"})
    graph = import_graph(tmp_path, (lazy,))
    assert graph == {"pkg": set(), "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.a", "pkg.sub.c"},
                     "pkg.sub.c": set()}
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    layered = package({"lay/__init__.py": "", "lay/x/__init__.py": "", "lay/y/__init__.py": "",
                       "lay/x/m.py": "from lay.y.n import h\n", "lay/y/n.py": "h = 1\n",
                       "lay/y/k.py": "from lay.x import m2\n", "lay/x/m2.py": ""})
    graph = import_graph(tmp_path, (layered,))
    assert find_cycles(graph) == [] and find_cycles(collapse(graph, 2)) == [["lay.x", "lay.y"]]
