"""The pure parts of activation import no I/O library (rules, score, triggers, reminders, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dynamics_bridge.activation as package

PURE = ["rules", "config", "score", "triggers", "reminders", "audience", "segments"]
IO = {"requests", "yaml", "sqlite3", "socket", "http", "urllib", "azure", "msal", "zeep"}


@pytest.mark.parametrize("name", PURE)
def test_a_pure_module_imports_no_io_library(name: str) -> None:
    tree = ast.parse((Path(package.__file__).parent / f"{name}.py").read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert not imported & IO
    assert not any(
        isinstance(node, ast.ImportFrom)
        and (node.module or "").startswith(
            ("dynamics_bridge.dataverse", "dynamics_bridge.apsis.client", "dynamics_bridge_sandbox")
        )
        for node in ast.walk(tree)
    )
