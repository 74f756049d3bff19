"""Every third-party library a package imports is one it declares, and it declares no dead one.

A library that arrives only as someone else's dependency (urllib3 through requests, azure-core
through azure-storage-queue) can vanish or change major version under us; a test-only library
(pytest, hypothesis, responses) imported by shipped code breaks the function app at start-up.
Imports are read with ``ast`` from every module, at any depth; a module name is mapped to the
distribution that installs it with ``importlib.metadata``.

Rules: ``dynamics_bridge`` imports at module level only its ``dependencies``; inside a function
(imported when used) also its non-dev extras (``azure-identity``) and the optional sandbox, whose
absence the CLI explains. The one exception is ``dynamics_bridge/retention/``: the whole folder is
the ``retention`` extra (numpy, scikit-learn, scipy), checked once in its ``__init__`` with an
install hint, and nothing outside it imports it at module level. The sandbox may import its own
dependencies and those of ``dynamics-bridge``, which it depends on.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, distribution, packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "dynamics_bridge"
SANDBOX_PROJECT = ROOT / "packages" / "dynamics-bridge-sandbox"
SANDBOX = SANDBOX_PROJECT / "dynamics_bridge_sandbox"
OWN = {"dynamics_bridge", "dynamics_bridge_sandbox"}


@dataclass(frozen=True)
class Import:
    module: str  # dotted name as written
    where: str  # FILE:LINE
    lazy: bool  # inside a function body


def imports_of(package_dir: Path) -> list[Import]:
    """Every absolute import in the package's modules, with its place."""
    found: list[Import] = []
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = path.relative_to(ROOT)
        found += _walk(tree, where, lazy=False)
    return found


def _walk(node: ast.AST, where: Path, *, lazy: bool) -> list[Import]:
    found: list[Import] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            found += [Import(a.name, f"{where}:{child.lineno}", lazy) for a in child.names]
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            found.append(Import(child.module, f"{where}:{child.lineno}", lazy))
        inner = (
            lazy
            or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            or (isinstance(child, ast.If) and _type_checking(child.test))
        )
        found += _walk(child, where, lazy=inner)
    return found


def _type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:``: imports for annotations only, never run."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def canonical(name: str) -> str:
    """PEP 503 name: ``PyYAML`` and ``pyyaml``, ``pydantic_settings`` and ``pydantic-settings``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return canonical(match.group())


def declared(pyproject: Path, *extras: str) -> set[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    return {requirement_name(r) for r in wanted}


def extras(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return sorted(project.get("optional-dependencies", {}))


@cache
def _top_level_owners() -> Mapping[str, list[str]]:
    return packages_distributions()


def distribution_of(module: str) -> str | None:
    """The installed distribution that provides ``module``; None for the standard library.

    A namespace package (``azure``) is shared by several distributions: the one whose files hold
    the deepest part of the dotted name wins (``azure.core.exceptions`` -> ``azure-core``).
    """
    top = module.split(".")[0]
    if top in sys.stdlib_module_names:
        return None
    owners = sorted({canonical(name) for name in _top_level_owners().get(top, [])})
    assert owners, f"{module}: no installed distribution provides it"
    if len(owners) == 1:
        return owners[0]
    parts = module.split(".")
    for depth in range(len(parts), 0, -1):
        prefix = "/".join(parts[:depth])
        holders = [d for d in owners if _ships(d, prefix)]
        if len(holders) == 1:
            return holders[0]
    raise AssertionError(f"{module}: provided by several distributions {owners}")


def _ships(dist: str, prefix: str) -> bool:
    try:
        files = distribution(dist).files or []
    except PackageNotFoundError:
        return False
    return any(str(f).startswith((f"{prefix}/", f"{prefix}.py")) for f in files)


def third_party(found: list[Import]) -> list[tuple[Import, str]]:
    """(import, distribution) for imports from outside the standard library and our packages."""
    pairs = []
    for item in found:
        if item.module.split(".")[0] in OWN:
            continue
        dist = distribution_of(item.module)
        if dist is not None:
            pairs.append((item, dist))
    return pairs


RUNTIME_PYPROJECT = ROOT / "pyproject.toml"
SANDBOX_PYPROJECT = SANDBOX_PROJECT / "pyproject.toml"
RUNTIME_EXTRAS = [extra for extra in extras(RUNTIME_PYPROJECT) if extra != "dev"]


RETENTION = "dynamics_bridge/retention/"


def test_the_runtime_package_imports_at_module_level_only_what_it_declares() -> None:
    allowed = declared(RUNTIME_PYPROJECT)
    in_retention = allowed | declared(RUNTIME_PYPROJECT, "retention")
    undeclared = [
        f"{item.where}: {item.module} ({dist})"
        for item, dist in third_party(imports_of(RUNTIME))
        if not item.lazy
        and dist not in (in_retention if item.where.startswith(RETENTION) else allowed)
    ]
    assert not undeclared, "not in [project] dependencies:\n" + "\n".join(undeclared)


def test_the_runtime_package_imports_when_used_only_what_it_declares_or_offers_as_extra() -> None:
    allowed = declared(RUNTIME_PYPROJECT, *RUNTIME_EXTRAS)
    undeclared = [
        f"{item.where}: {item.module} ({dist})"
        for item, dist in third_party(imports_of(RUNTIME))
        if dist not in allowed
    ]
    assert not undeclared, "declared nowhere (dev does not ship):\n" + "\n".join(undeclared)


def test_only_the_retention_folder_imports_it_at_module_level() -> None:
    """A command without the extra must still start: the CLI and jobs import retention lazily."""
    eager = [
        item.where
        for item in imports_of(RUNTIME)
        if item.module.startswith("dynamics_bridge.retention")
        and not item.lazy
        and not item.where.startswith(RETENTION)
    ]
    assert not eager, f"the retention extra is optional, imported at module level in: {eager}"


def test_the_runtime_package_imports_the_sandbox_only_when_a_command_needs_it() -> None:
    eager = [
        item.where
        for item in imports_of(RUNTIME)
        if item.module.split(".")[0] == "dynamics_bridge_sandbox" and not item.lazy
    ]
    assert not eager, f"the sandbox is optional, imported at module level in: {eager}"


def test_every_runtime_dependency_is_imported_somewhere() -> None:
    """A dependency nothing imports any more is dead weight in the function app."""
    used = {dist for _, dist in third_party(imports_of(RUNTIME))}
    assert declared(RUNTIME_PYPROJECT) - used == set()


def test_the_sandbox_imports_only_its_own_dependencies_and_the_runtimes() -> None:
    allowed = declared(SANDBOX_PYPROJECT) | declared(RUNTIME_PYPROJECT)
    undeclared = [
        f"{item.where}: {item.module} ({dist})"
        for item, dist in third_party(imports_of(SANDBOX))
        if dist not in allowed
    ]
    assert not undeclared, "not in the sandbox's dependencies:\n" + "\n".join(undeclared)
    assert "dynamics-bridge" in declared(SANDBOX_PYPROJECT)


@pytest.mark.parametrize("dev_only", ["pytest", "hypothesis", "responses"])
def test_no_test_library_is_a_shipped_dependency(dev_only: str) -> None:
    assert dev_only not in declared(RUNTIME_PYPROJECT, *RUNTIME_EXTRAS)
    assert dev_only not in declared(SANDBOX_PYPROJECT)


def test_the_walk_sees_lazy_imports_and_maps_a_namespace_package_to_its_distribution() -> None:
    found = {item.module: item for item in imports_of(RUNTIME)}
    assert found["azure.identity"].lazy  # imported inside QueueSettings' account-URL branch
    assert not found["azure.storage.queue"].lazy
    assert distribution_of("azure.core.exceptions") == "azure-core"
    assert distribution_of("azure.storage.queue") == "azure-storage-queue"
    assert distribution_of("yaml") == "pyyaml"
    assert distribution_of("json") is None
