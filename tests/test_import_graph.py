"""``gald``'s import graph: no circles, and no library module imports an entry point.

Every module under ``gald/`` is parsed with :mod:`ast`; every ``import`` statement counts, at module
level and inside functions (a lazy import is still a dependency), with relative imports resolved.
An edge goes to the module an import names: ``from gald.models import build_model`` imports the
package ``gald.models`` (its ``__init__``, which imports what it re-exports); ``from gald.models.ld
import LocalDistribution`` imports ``gald.models.ld``; ``from gald import stats`` imports
``gald.stats``. (Python also runs the ``__init__`` of the parents of an imported module; a parent
importing its own children is how a package re-exports, so that is not counted as a circle.)

Three rules:

* **No circles.**
* **Nobody imports an entry point.** Entry points are the ``python -m gald.X`` commands: the modules
  with an ``if __name__ == "__main__":`` block. They import library code; no module imports them
  (what runs inside the ``__main__`` block itself is the command, not a dependency of the module).
* **Imports go down the data's path**: config → data → models → losses / metrics → the consumers
  of models (engine, deploy, viz, experiments) → entry points. Each library module imports only
  its own layer or lower ones. The consumers share a layer because they use one another (training
  can run NNPACK convolutions from ``deploy``, the converter writes ``engine`` checkpoints); the
  circle rule keeps them apart. Deprecated aliases (modules whose docstring starts with
  "Deprecated alias", and the names a package's ``__getattr__`` still resolves for one release)
  re-export from the new places; library code imports the new places, never an alias.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gald"

# The ``python -m gald.X`` commands. A module with a ``__main__`` block that is not listed here (or
# a listed one without it) fails test_entry_points_are_the_documented_commands: decide which it is.
ENTRY_POINTS = {
    "gald.app",
    "gald.convert_official",
    "gald.evaluate",
    "gald.export",
    "gald.predict",
    "gald.predict_detection",
    "gald.train",
    "gald.train_detection",
}


# Layer of each part of the package (longest prefix wins; ``gald`` itself re-exports the models).
LAYERS = {
    "gald.errors": 0,
    "gald.files": 0,
    "gald.config": 0,
    "gald.data": 1,
    "gald": 2,
    "gald.models": 2,
    "gald.losses": 3,
    "gald.metrics": 3,
    "gald.engine": 4,
    "gald.deploy": 4,
    "gald.viz": 4,
    "gald.experiments": 4,
    "gald.hub": 4,  # pretrained folders: a consumer of models, like deploy
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text(), filename=str(p))) for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` is relative to."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package else base[:-1]  # a package's own name is its ``__init__``'s package
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``"""
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
        return False
    names = [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)]
    consts = [n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)]
    return "__name__" in names and "__main__" in consts


def _import_nodes(tree: ast.Module):
    """``(node, how)`` for every import statement: ``how`` is ``"main"`` inside the ``__main__``
    block, ``"alias"`` inside a module-level ``__getattr__`` (deprecated names), else ``"code"``."""
    for top in tree.body:
        if _is_main_block(top):
            how = "main"
        elif isinstance(top, ast.FunctionDef) and top.name == "__getattr__":
            how = "alias"
        else:
            how = "code"
        for node in ast.walk(top):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                yield node, how


def _imports(name: str) -> dict[str, tuple[int, str]]:
    """gald modules that module ``name`` imports → (line of the first such import, how)."""
    path, tree = MODULES[name]
    is_package = path.name == "__init__.py"
    found: dict[str, tuple[int, str]] = {}
    for node, how in _import_nodes(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = _resolve(name, is_package, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.append(sub if sub in MODULES else base)  # ``from pkg import module`` names the module
        for target in targets:
            if target.split(".")[0] != "gald":
                continue
            while target not in MODULES:  # ``import gald.x.y`` of a non-module attribute: its module
                target = target.rsplit(".", 1)[0]
            if target != name and (target not in found or found[target][1] == "main"):
                found[target] = (node.lineno, how)
    return found


IMPORTS = {name: _imports(name) for name in MODULES}
# the dependencies: what the __main__ block imports runs only when the module is the command
GRAPH = {name: {t: line for t, (line, how) in edges.items() if how != "main"} for name, edges in IMPORTS.items()}
ALIASES = {name for name, (_, tree) in MODULES.items() if (ast.get_docstring(tree) or "").startswith("Deprecated alias")}


def _layer(name: str) -> int | None:
    if name in ENTRY_POINTS:
        return max(LAYERS.values()) + 1
    prefixes = [p for p in LAYERS if name == p or (p != "gald" and name.startswith(p + "."))]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan), as a path."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    circles = []
    for component in components:  # a shortest circle through the component's first module
        members, start = set(component), component[0]
        paths = {start: [start]}
        queue = [start]
        circle = None
        while queue and circle is None:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    circle = paths[v] + [start]
                    break
                if w in members and w not in paths:
                    paths[w] = paths[v] + [w]
                    queue.append(w)
        circles.append(circle or component)
    return circles


def _describe(circle: list[str]) -> str:
    return " → ".join(f"{a} (line {GRAPH[a][b]})" for a, b in zip(circle, circle[1:])) + f" → {circle[-1]}"


def test_the_graph_sees_every_kind_of_import():
    """The walker itself: function-level, relative and ``from package import module`` imports count."""
    assert "gald.models" in MODULES and "gald.models.layers" in MODULES
    assert "gald.models.layers" in GRAPH["gald.models.ld"]  # ``from .layers import ...``
    assert "gald.models" in GRAPH["gald"]  # ``from .models import ...`` in a package's __init__
    assert all(target in MODULES for edges in GRAPH.values() for target in edges)


def test_entry_points_are_the_documented_commands():
    with_main = {name for name, (_, tree) in MODULES.items() if any(map(_is_main_block, tree.body))}
    assert with_main == ENTRY_POINTS, (
        f"modules with a __main__ block: {sorted(with_main)}; ENTRY_POINTS: {sorted(ENTRY_POINTS)}"
    )


def test_no_import_circles():
    circles = _cycles(GRAPH)
    assert not circles, "import circles:\n" + "\n".join(_describe(c) for c in circles)


@pytest.mark.parametrize("entry_point", sorted(ENTRY_POINTS))
def test_nothing_imports_an_entry_point(entry_point):
    importers = sorted(f"{name} (line {edges[entry_point]})" for name, edges in GRAPH.items() if entry_point in edges)
    assert not importers, f"{entry_point} is a command, not a library; imported by {', '.join(importers)}"


def test_every_library_module_has_a_layer():
    unplaced = sorted(name for name in MODULES if name not in ALIASES and _layer(name) is None)
    assert not unplaced, f"modules in no layer of LAYERS (place them, or make them deprecated aliases): {unplaced}"


def test_imports_go_down_the_layers():
    upward = sorted(
        f"{name} (layer {_layer(name)}, line {line}) → {target} (layer {_layer(target)})"
        for name, edges in IMPORTS.items() if name not in ALIASES and _layer(name) is not None
        for target, (line, how) in edges.items()
        if how == "code" and _layer(target) is not None and _layer(target) > _layer(name)
    )
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_library_code_imports_the_new_places_not_the_deprecated_aliases():
    via_alias = sorted(f"{name} (line {line}) → {target}" for name, edges in IMPORTS.items() if name not in ALIASES
                       for target, (line, how) in edges.items() if target in ALIASES and how == "code")
    assert not via_alias, "imports of deprecated aliases: " + ", ".join(via_alias)
