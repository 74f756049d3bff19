"""Lazy package faces: every public name still importable, each module loaded on first use."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import dynamics_bridge
from dynamics_bridge._lazy import attach, type_checking_imports

PACKAGE_DIR = Path(dynamics_bridge.__file__).parent

LAZY_FACES = sorted(
    ".".join(path.relative_to(PACKAGE_DIR.parent).parent.parts)
    for path in PACKAGE_DIR.rglob("__init__.py")
    if "attach(__name__, __file__)" in path.read_text(encoding="utf-8")
)


def test_the_client_packages_have_lazy_faces() -> None:
    clients = {"dynamics_bridge.apsis", "dynamics_bridge.dataverse", "dynamics_bridge.registry"}
    assert clients <= set(LAZY_FACES)


@pytest.mark.parametrize("face", LAZY_FACES)
def test_a_face_exports_exactly_its_type_checking_imports(face: str) -> None:
    module = importlib.import_module(face)
    init_file = Path(str(module.__file__))
    assert sorted(type_checking_imports(init_file, face)) == sorted(module.__all__)


@pytest.mark.parametrize("face", LAZY_FACES)
def test_every_public_name_of_a_face_is_the_object_its_module_defines(face: str) -> None:
    module = importlib.import_module(face)
    exports = type_checking_imports(Path(str(module.__file__)), face)
    for name, (where, attribute) in exports.items():
        assert getattr(module, name) is getattr(importlib.import_module(where), attribute), name
    assert set(module.__all__) <= set(dir(module))


@pytest.fixture
def package(tmp_path: Path) -> Iterator[str]:
    """A throwaway lazy face ``lazyface`` with a heavy submodule that records being imported."""
    root = tmp_path / "lazyface"
    root.mkdir()
    (root / "__init__.py").write_text(
        textwrap.dedent(
            """
            from typing import TYPE_CHECKING
            from dynamics_bridge._lazy import attach
            if TYPE_CHECKING:
                from lazyface.heavy import Client
                from .heavy import helper as renamed
            __all__ = ["Client", "renamed"]
            if not TYPE_CHECKING:
                __getattr__, __dir__ = attach(__name__, __file__)
            """
        ),
        encoding="utf-8",
    )
    (root / "heavy.py").write_text(
        "class Client: ...\ndef helper() -> int:\n    return 7\n", encoding="utf-8"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield "lazyface"
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name.split(".")[0] == "lazyface"]:
            del sys.modules[name]


def test_the_module_behind_a_name_is_imported_on_first_use_only(package: str) -> None:
    face = importlib.import_module(package)
    assert f"{package}.heavy" not in sys.modules
    client = face.Client
    assert f"{package}.heavy" in sys.modules
    assert client is sys.modules[f"{package}.heavy"].Client
    assert face.renamed() == 7  # "as" names and relative imports resolve too


def test_an_unknown_name_is_an_attribute_error_naming_the_package(package: str) -> None:
    face = importlib.import_module(package)
    with pytest.raises(AttributeError, match=r"module 'lazyface' has no attribute 'Nope'"):
        _ = face.Nope
    with pytest.raises(ImportError):
        exec(f"from {package} import Nope")


def test_dir_lists_names_not_yet_imported(package: str) -> None:
    assert {"Client", "renamed"} <= set(dir(importlib.import_module(package)))


def test_a_plain_import_under_type_checking_is_refused_with_its_line(tmp_path: Path) -> None:
    init_file = tmp_path / "__init__.py"
    init_file.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import json\n")
    with pytest.raises(TypeError, match=r"__init__.py:3: a lazy face holds only"):
        attach("broken", str(init_file))


def test_importing_a_face_in_a_fresh_interpreter_loads_none_of_its_modules() -> None:
    probe = (
        "import sys, dynamics_bridge.dataverse as face;"
        "print(sorted(m for m in sys.modules if m.startswith('dynamics_bridge.dataverse.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
