"""No import cycles in dynamics_bridge, between modules or between its top-level parts.

A cycle makes import order matter and hides dependencies (the timer jobs once reached their code
through ``importlib`` to get around one). The graph is read statically with ``ast``, so an import
inside a function counts as much as one at the top; imports under ``if TYPE_CHECKING:`` do not,
because they never run. The parts are ``dynamics_bridge.X``: a subpackage or a root module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Set
from pathlib import Path

import dynamics_bridge

PACKAGE_DIR = Path(dynamics_bridge.__file__).parent
PACKAGE = "dynamics_bridge"


def package_modules() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at any depth, except those that run only for type checkers."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for other in node.orelse:
                yield from _imports_in(other)
            continue
        yield from _imports_in(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _imports(node)


def imported_modules(name: str, path: Path, modules: Set[str]) -> set[str]:
    """The package's modules that ``name`` imports: ``from a import b`` is ``a.b`` if a module."""

    def owner(dotted: str) -> str:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted

    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(owner(alias.name) for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            base = ".".join([*here[: len(here) - node.level + 1], *([base] if base else [])])
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            found.add(submodule if submodule in modules else owner(base))
    return {module for module in found if module and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: imported_modules(name, path, modules.keys()) for name, path in modules.items()}


def part_of(module: str) -> str:
    """``dynamics_bridge.dataverse.client`` -> ``dynamics_bridge.dataverse``."""
    return ".".join(module.split(".")[:2])


def part_graph(graph: Mapping[str, Set[str]]) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = {}
    for module, imported in graph.items():
        edges = parts.setdefault(part_of(module), set())
        edges.update(part_of(other) for other in imported if part_of(other) != part_of(module))
    return parts


def cycles(graph: Mapping[str, Set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(component: list[str], *, by_part: bool = False) -> list[str]:
    """The module imports that make one cycle, as ``a -> b`` lines."""
    members = set(component)
    lines = ["cycle:"]
    for module, imported in sorted(import_graph().items()):
        source = part_of(module) if by_part else module
        if source not in members:
            continue
        for other in sorted(imported):
            target = part_of(other) if by_part else other
            if target in members and target != source:
                lines.append(f"{module} -> {other}")
    return lines


def test_no_module_imports_itself_through_others() -> None:
    found = cycles(import_graph())
    assert not found, "\n".join(line for c in found for line in describe(c))


def test_no_two_parts_of_the_package_import_each_other() -> None:
    found = cycles(part_graph(import_graph()))
    assert not found, "\n".join(line for c in found for line in describe(c, by_part=True))


def test_the_cycle_finder_finds_a_cycle_through_three_nodes() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_function_level_imports_and_skips_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from pkg.typed_only import Name\n"
        "def later():\n"
        "    import pkg.late.inner\n"
        "    from pkg.lib import helper\n",
        encoding="utf-8",
    )
    modules = {"pkg", "pkg.module", "pkg.sibling", "pkg.typed_only", "pkg.late", "pkg.lib"}
    assert imported_modules("pkg.module", source, modules) == {
        "pkg.sibling",
        "pkg.late",
        "pkg.lib",
    }
