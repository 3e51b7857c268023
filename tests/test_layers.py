"""Layers import downward only, and no two packages import each other.

Every module under ``neuronattack/`` is parsed with ``ast``; every import counts, including those
inside functions (a function-local import is a dependency that only shows up later). Each module
belongs to the layer of its longest matching prefix in ``LAYERS``; an import of a higher layer, or
one that closes a cycle between packages, fails the test unless ``ALLOWED`` names it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "neuronattack"

# Lowest first. A module may import its own layer and those below it, never above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "artifacts", "progress", "resources", "outdir", "validation"),
    ("imagesets", "lens"),
    ("models",),
    ("writing",),  # sentences from words: needs only models/'s hub helpers; attack/ uses it
    ("neurons",),
    # The toy world is a plug-in: a CLIP, a generator, a checker, a class set, built on the
    # interfaces of models/ and neurons/ and used by attack/ like any real model.
    ("toy",),
    ("attack",),
    ("maps", "heads"),
    ("pipeline",),  # specs to an atlas and an attack context, for the CLI, campaigns and the demo
    ("campaign", "explore"),
    ("demo",),
    ("cli", "__main__", ""),  # "": the package root, whose attributes are the public API
)

# (importer, imported) pairs allowed to break the rules, each with the change that would remove it.
# Each is a to-do: the test below fails once an exception is no longer needed.
ALLOWED: dict[tuple[str, str], str] = {}

# Names the package root defines itself: importing them does not reach the API it exports lazily.
ROOT_OWN_NAMES = {"__version__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split(".")[1:]) if "." in name else Path()
    base = PACKAGE_ROOT / relative
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Every ``neuronattack`` module ``path`` imports, at any depth of its code."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "neuronattack":
                    found |= _root_attribute_uses(tree, alias.asname or alias.name)
                elif alias.name.startswith("neuronattack."):
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != "neuronattack" and not target.startswith("neuronattack."):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if _is_module(submodule):
                    found.add(submodule)
                elif not (target == "neuronattack" and alias.name in ROOT_OWN_NAMES):
                    found.add(target)
    found.discard(module)
    return found


def _root_attribute_uses(tree: ast.AST, name: str) -> set[str]:
    """``import neuronattack`` then ``neuronattack.X``: X's module, or the root for its API."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == name):
            submodule = f"neuronattack.{node.attr}"
            if _is_module(submodule):
                found.add(submodule)
            elif node.attr not in ROOT_OWN_NAMES:
                found.add("neuronattack")
    return found


def _layer(module: str) -> int:
    key = module.removeprefix("neuronattack").removeprefix(".")
    best, best_len = None, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = key == prefix or key.startswith(prefix + ".") or (prefix == "" and key == "")
            if matches and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def _package(module: str) -> str:
    """The top-level package (or module) directly under neuronattack that holds ``module``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(root.rglob("*.py"))}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{importer} (layer {_layer(importer)}) imports {imported} (layer {_layer(imported)})"
        for importer, targets in graph.items() for imported in targets
        if _layer(imported) > _layer(importer) and (importer, imported) not in ALLOWED
    )


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of two or more packages (Tarjan), over the edges not ALLOWED."""
    edges: dict[str, set[str]] = {}
    for importer, targets in graph.items():
        for imported in targets:
            a, b = _package(importer), _package(imported)
            if a != b and (importer, imported) not in ALLOWED:
                edges.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_every_module_has_a_layer(graph):
    for module in graph:
        _layer(module)


def test_imports_go_down_only(graph):
    assert upward_imports(graph) == []


def test_no_package_imports_another_that_imports_it(graph):
    assert package_cycles(graph) == []


def test_allowed_exceptions_are_still_needed(graph):
    """An exception whose import is gone must leave the list, so the list stays the to-do."""
    stale = [pair for pair in ALLOWED if pair[1] not in graph.get(pair[0], set())]
    assert stale == []


def test_the_check_reads_function_local_imports(tmp_path):
    """The check can fail: an import hidden in a function of a low module is caught."""
    package = tmp_path / "neuronattack"
    (package / "models").mkdir(parents=True)
    (package / "attack").mkdir()
    for init in ("__init__.py", "models/__init__.py", "attack/__init__.py"):
        (package / init).write_text("")
    (package / "attack" / "run.py").write_text("from neuronattack.models import clip\n")
    (package / "models" / "clip.py").write_text(
        "def load():\n    from neuronattack.attack.run import x\n    return x\n")
    global PACKAGE_ROOT
    saved = PACKAGE_ROOT
    PACKAGE_ROOT = package
    try:
        fake = import_graph(package)
        models, attack = _layer("neuronattack.models.clip"), _layer("neuronattack.attack.run")
        assert upward_imports(fake) == [
            f"neuronattack.models.clip (layer {models}) imports neuronattack.attack.run "
            f"(layer {attack})"]
        assert package_cycles(fake) == [["attack", "models"]]
    finally:
        PACKAGE_ROOT = saved
