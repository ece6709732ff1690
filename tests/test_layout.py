"""The package's rooms show its architecture: at most 14 top-level modules, subpackages that
say what they hold, imports that point one way, no import cycle, no pytest in the core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "pytest_persist"
#: The pytest-facing layer: the only modules that may import pytest or a pytest plugin.
PYTEST_FACING = {"plugin", "options", "hookspecs", "runner", "checks", "store_items"}
#: The rooms, lowest first: each may import only rooms before it in this list.
LAYERS = [
    "environments",
    "artifacts",
    "estimators",
    "backends",
    "results",
    "roundtrip",
    "store",
    "isolation",
    "atlas",
    "cli",  # the command line: over every room, under no pytest-facing module
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module of pytest_persist (and pytest) that ``path`` imports, at any depth."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            for alias in node.names:  # "from . import codec": the module codec
                candidate = f"{module}.{alias.name}"
                if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").is_file():
                    found.add(candidate)
    return {m for m in found if m.split(".")[0] in ("pytest_persist", "pytest", "_pytest")}


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: _imports(path) for name, path in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "<top>"


def test_at_most_14_top_level_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 14, top


def test_every_subpackage_says_what_it_holds():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc) > 80, f"{init}: no docstring saying what it holds"
        assert init.parent.name in LAYERS, f"{init.parent.name} is not in LAYERS"


def test_no_import_cycle():
    modules = {m: {i for i in deps if i in GRAPH and i != m} for m, deps in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(modules[module]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep] if dep in path else [module, dep]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])


def test_the_core_never_imports_pytest():
    for module, deps in GRAPH.items():
        if _room(module) == "<top>":
            continue
        assert not {d for d in deps if d.split(".")[0] in ("pytest", "_pytest")}, module


def test_only_the_pytest_facing_modules_import_pytest():
    for module, deps in GRAPH.items():
        if any(d.split(".")[0] in ("pytest", "_pytest") for d in deps):
            assert module.split(".")[-1] in PYTEST_FACING, f"{module} imports pytest"


def test_rooms_import_only_rooms_below_them():
    for module, deps in GRAPH.items():
        room = _room(module)
        if room == "<top>":
            continue
        allowed = set(LAYERS[: LAYERS.index(room) + 1])
        for dep in deps:
            if dep.split(".")[0] != "pytest_persist" or dep == "pytest_persist":
                continue
            assert _room(dep) in allowed, f"{module} ({room}) imports {dep} ({_room(dep)})"


def test_the_graph_is_real():
    """The checks above see the imports: a known edge of each kind is in the graph."""
    assert "pytest_persist.store.entries" in GRAPH["pytest_persist.isolation.check"]
    assert "pytest_persist.store.codec" in GRAPH["pytest_persist.store.entries"]  # from . import
    assert "pytest" in GRAPH["pytest_persist.plugin"]
