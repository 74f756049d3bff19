"""The function app, built once: ``app.get_functions()`` may be called only once per app
(a second call fails on "unique function name"), so every test shares this index."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import ROOT

APP_DIR = ROOT / "deploy" / "azure-functions"

pytest.importorskip("azure.functions", reason="the functions extra: pip install -e '.[functions]'")


def _load(path: Path) -> ModuleType:
    if "function_app" in sys.modules:
        return sys.modules["function_app"]
    spec = importlib.util.spec_from_file_location("function_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["function_app"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def function_app() -> ModuleType:
    return _load(APP_DIR / "function_app.py")


@pytest.fixture(scope="session")
def indexed(function_app: ModuleType) -> dict[str, Any]:
    """Function name → the indexed Function (bindings, settings, user function)."""
    return {f.get_function_name(): f for f in function_app.app.get_functions()}


@pytest.fixture(scope="session")
def functions(indexed: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    """Function name → the Python function the host would call."""
    return {name: f.get_user_function() for name, f in indexed.items()}
