"""The layout's rules, checked by reading the source (``ast``; no module of ours is imported).

Layers (the design's layout table): ``protocols`` imports nothing of ours; ``firmware_bridges``
and ``hallkit`` (the shared kit) import ``protocols`` only; ``edge`` imports ``protocols``,
``firmware_bridges`` and ``hallkit``; ``central`` imports ``protocols`` and ``hallkit``, so
``edge`` and ``central`` never import each other; ``deploy`` and ``tests`` may import anything.
Every import counts for the layers, wherever it stands (a function body, ``if TYPE_CHECKING:``).

Cycles: no two modules of ours import each other, directly or around a longer loop. The graph's
nodes are modules: ``import a.b.c`` and ``from a.b import c`` (``c`` a module) point at
``a.b.c`` only, not at the packages ``a`` and ``a.b`` above it, so a package whose
``__init__`` gathers its submodules is not in a cycle with them. Relative imports are resolved.
Imports inside functions count (a lazy import hides a cycle, it does not remove it); imports
under ``if TYPE_CHECKING:`` do not, since they never run.

Long modules: a ``.py`` file over 500 lines carries, in its first 30 lines, a comment line
starting with ``# Long module:`` followed by the reason it is long (for example: one device's
whole frame table; splitting would scatter it); by custom it is the file's first line, above
the docstring, and may go on over the next comment lines. Docstrings do not count: one
convention only.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# which of our top-level packages each may import (itself always); None: anything
LAYERS: dict[str, frozenset[str] | None] = {
    "protocols": frozenset(),
    "firmware_bridges": frozenset({"protocols"}),
    "hallkit": frozenset({"protocols"}),
    "edge": frozenset({"protocols", "firmware_bridges", "hallkit"}),
    "central": frozenset({"protocols", "hallkit"}),
    "deploy": None,
    "tests": None,
}

LONG_MODULE_LINES = 500
LONG_MODULE_MARK = "# Long module:"
LONG_MODULE_WITHIN = 30

SKIPPED_DIRS = {".venv", "var", "test-output", "__pycache__", "node_modules"}


@dataclass(frozen=True)
class Import:
    """One import of a module of ours: who, where, what."""

    source: str  # module name of the importing file
    path: Path  # the importing file, relative to the tree's root
    line: int
    target: str  # the module imported (the most specific one that exists)
    type_checking: bool  # under ``if TYPE_CHECKING:``

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def python_files(root: Path, packages: Iterable[str]) -> Iterator[Path]:
    for package in sorted(packages):
        base = root / package
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            if not SKIPPED_DIRS.intersection(path.relative_to(root).parts):
                yield path


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports_in(tree: ast.Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement, and whether it stands under ``if TYPE_CHECKING:``."""

    def visit(
        node: ast.AST, type_checking: bool
    ) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, type_checking
            return
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                yield from visit(statement, True)
            for statement in node.orelse:
                yield from visit(statement, type_checking)
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child, type_checking)

    yield from visit(tree, False)


def _known(name: str, modules: set[str]) -> str | None:
    """The most specific module of ours that ``name`` (a dotted path) falls in."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def scan(root: Path, packages: Iterable[str]) -> list[Import]:
    files = {module_name(root, path): path for path in python_files(root, packages)}
    modules = set(files)
    found: list[Import] = []
    for source, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node, type_checking in _imports_in(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    # from the file's own package, one level up per extra dot
                    package = source.split(".") if is_package else source.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, base] if base else package)
                # ``from pkg import name``: the submodule if ``name`` is one, else ``pkg``
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                    for alias in node.names
                ]
            for target in targets:
                known = _known(target, modules)
                if known is not None and known != source:
                    found.append(
                        Import(source, path.relative_to(root), node.lineno, known, type_checking)
                    )
    return found


def layer_violations(
    imports: Iterable[Import], layers: dict[str, frozenset[str] | None]
) -> list[str]:
    problems = []
    for imp in imports:
        own, their = imp.source.split(".")[0], imp.target.split(".")[0]
        allowed = layers.get(own)
        if own == their or allowed is None or their in allowed:
            continue
        problems.append(
            f"{imp.where()}: {imp.source} ({own}) imports {imp.target}; "
            f"{own} may import {', '.join(sorted(allowed)) or 'nothing of ours'}"
        )
    return problems


def cycles(imports: Iterable[Import]) -> list[str]:
    """One cycle path per group of modules that import each other (TYPE_CHECKING excluded),
    each import on it with its file and line."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if not imp.type_checking:
            graph.setdefault(imp.source, {}).setdefault(imp.target, imp)
    problems = []
    for group in _strongly_connected(graph):
        if len(group) < 2:
            continue
        path = _cycle_through(min(group), graph, group)
        steps = [graph[a][b] for a, b in pairwise(path)]
        more = (
            f"\n    (one loop of several among {', '.join(sorted(group))})"
            if len(group) > len(steps)
            else ""
        )
        problems.append(
            "cycle "
            + " -> ".join(path)
            + "".join(f"\n    {s.where()}: {s.source} imports {s.target}" for s in steps)
            + more
        )
    return problems


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the tree is deep enough to worry recursion)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return sorted(groups, key=min)


def _cycle_through(start: str, graph: dict[str, dict[str, Import]], group: set[str]) -> list[str]:
    """The shortest path from ``start`` back to itself inside ``group`` (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, {})):
                if child not in group:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group has one


def long_modules(root: Path, packages: Iterable[str]) -> list[str]:
    problems = []
    for path in python_files(root, packages):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) <= LONG_MODULE_LINES:
            continue
        head = lines[:LONG_MODULE_WITHIN]
        if not any(line.startswith(LONG_MODULE_MARK) for line in head):
            problems.append(
                f"{path.relative_to(root)}:1: {len(lines)} lines and no "
                f"'{LONG_MODULE_MARK} <reason>' line in its first {LONG_MODULE_WITHIN} lines"
            )
    return problems


# -- the tree ---------------------------------------------------------------------------------


@functools.cache
def _tree_imports() -> tuple[Import, ...]:
    return tuple(scan(ROOT, LAYERS))


def test_every_top_level_package_has_a_layer() -> None:
    folders = {
        folder.name
        for folder in ROOT.iterdir()
        if folder.is_dir()
        and not folder.name.startswith(".")
        and folder.name not in SKIPPED_DIRS
        and any(python_files(ROOT, [folder.name]))
    }
    assert folders <= set(LAYERS), f"Python folders with no layer: {sorted(folders - set(LAYERS))}"


def test_each_layer_imports_only_the_layers_below_it() -> None:
    problems = layer_violations(_tree_imports(), LAYERS)
    assert not problems, "imports across the layout's rules:\n" + "\n".join(problems)


def test_no_two_modules_import_each_other() -> None:
    problems = cycles(_tree_imports())
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_every_long_module_says_why_it_is_long() -> None:
    problems = long_modules(ROOT, LAYERS)
    assert not problems, "long modules without a reason:\n" + "\n".join(problems)


# -- the checker itself -----------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_reports_a_layer_violation_a_cycle_and_a_long_module(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "protocols/__init__.py": "",
            "protocols/topics.py": "import json\n\nfrom edge import journal\n",
            "edge/__init__.py": "",
            "edge/journal.py": "",
            "edge/uplink.py": "from protocols.topics import TOPIC\n",
            "central/__init__.py": "",
            "central/store/__init__.py": "from . import schema\n",
            # a cycle of three: relative import, ``from pkg import module``, a lazy import
            "central/store/schema.py": "from .tables import metadata\n",
            "central/store/tables.py": "from central import api\n",
            "central/api.py": "def route():\n    from central.store.schema import x\n",
            # imported only for type checking: not a cycle
            "central/a.py": "import typing\nif typing.TYPE_CHECKING:\n    import central.b\n",
            "central/b.py": "import central.a\n",
            "central/long.py": "x = 1\n" * 501,
            "central/long_ok.py": '"""Why."""\n# Long module: one table\n' + "x = 1\n" * 501,
        },
    )
    imports = scan(tmp_path, LAYERS)

    assert layer_violations(imports, LAYERS) == [
        "protocols/topics.py:3: protocols.topics (protocols) imports edge.journal; "
        "protocols may import nothing of ours"
    ]
    assert cycles(imports) == [
        "cycle central.api -> central.store.schema -> central.store.tables -> central.api"
        "\n    central/api.py:2: central.api imports central.store.schema"
        "\n    central/store/schema.py:1: central.store.schema imports central.store.tables"
        "\n    central/store/tables.py:1: central.store.tables imports central.api"
    ]
    assert long_modules(tmp_path, LAYERS) == [
        "central/long.py:1: 501 lines and no '# Long module: <reason>' line in its first 30 lines"
    ]
