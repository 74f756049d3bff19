"""Lazy package faces (PEP 562): a package names its public API without importing it.

Importing ``dynamics_bridge.dataverse.policy`` runs ``dataverse/__init__.py`` first, so a face
that imports its client eagerly makes every pure sibling load requests and msal too. A lazy face
writes its exports once, as ordinary imports inside ``if TYPE_CHECKING:`` (what type checkers,
editors and readers see), and :func:`attach` turns that block into the module's ``__getattr__``:
a name's module is imported on first use of the name. This is Scientific Python's SPEC 1
(``lazy_loader.attach_stub``), reading the face itself instead of a stub file. Usage::

    if TYPE_CHECKING:
        from dynamics_bridge.apsis.client import ApsisClient

    __all__ = ["ApsisClient"]

    if not TYPE_CHECKING:  # type checkers see the imports above, not a catch-all __getattr__
        __getattr__, __dir__ = attach(__name__, __file__)
"""

from __future__ import annotations

import ast
import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["attach", "type_checking_imports"]


def attach(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the face ``package`` whose source is ``init_file``."""
    exports = type_checking_imports(Path(init_file), package)

    def __getattr__(name: str) -> Any:
        where = exports.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, attribute = where
        value = getattr(importlib.import_module(module), attribute)
        setattr(sys.modules[package], name, value)  # the next look-up skips __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *exports})

    return __getattr__, __dir__


def type_checking_imports(init_file: Path, package: str) -> dict[str, tuple[str, str]]:
    """Exported name -> (module, attribute) for each ``from ... import`` under ``TYPE_CHECKING``.

    Relative imports are resolved against ``package``; ``import x`` statements are refused,
    because a face exports names, not modules.
    """
    tree = ast.parse(init_file.read_text(encoding="utf-8"), filename=str(init_file))
    exports: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.If) and _is_type_checking(node.test)):
            continue
        for statement in node.body:
            if not isinstance(statement, ast.ImportFrom):
                raise TypeError(
                    f"{init_file}:{statement.lineno}: a lazy face holds only "
                    "'from module import name' under TYPE_CHECKING"
                )
            module = _absolute(statement.module or "", statement.level, package)
            for alias in statement.names:
                exports[alias.asname or alias.name] = (module, alias.name)
    return exports


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(module: str, level: int, package: str) -> str:
    if level == 0:
        return module
    base = package.split(".")[: len(package.split(".")) - (level - 1)]
    return ".".join([*base, module] if module else base)
