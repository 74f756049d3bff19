"""Pure modules load no I/O library: checked by importing each one in a fresh interpreter.

Reading a module's import lines is not enough: importing ``dynamics_bridge.dataverse.policy``
runs ``dataverse/__init__.py`` first, and whatever that face imports is loaded too. So each pure
module is imported alone in a new Python process, and ``sys.modules`` is inspected afterwards.

Pure means: no network, no database, no local servers, no crypto or XML stacks. Reading files
is allowed (``mapping.loader`` and ``activation.loader`` read YAML; ``settings`` reads ``.env``
through pydantic-settings, which is allowed: it is how configuration is validated, not I/O with
another system). Whole packages are pure by their folder (``sources/``, ``mapping/``,
``activation/``: its jobs work over ports); in mixed packages the pure modules are named.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import dynamics_bridge

PACKAGE_DIR = Path(dynamics_bridge.__file__).parent

# Libraries that talk to other systems or run servers, and our own rooms that may use them.
# Not socket or ssl: the standard library loads them for itself (email.utils, asyncio).
FORBIDDEN = (
    "requests",
    "urllib3",
    "msal",
    "zeep",
    "azure",
    "sqlite3",
    "http.server",
    "http.client",
    "urllib.request",
    "tenacity",
    "lxml",
    "cryptography",
    "dynamics_bridge.app",
    "dynamics_bridge.cli",
    "dynamics_bridge_sandbox",
)

# Pure rules know no adapter: they work on plain rows the jobs read for them.
ALSO_FORBIDDEN = {"dynamics_bridge.activation.": ("dynamics_bridge.dataverse",)}

PURE_PACKAGES = ("sources", "mapping", "activation", "retention")  # every module in these folders

PURE_MODULES = (
    "dynamics_bridge",
    "dynamics_bridge._lazy",
    "dynamics_bridge.errors",
    "dynamics_bridge.model",
    "dynamics_bridge.personnummer",
    "dynamics_bridge.settings",
    "dynamics_bridge.logs",
    "dynamics_bridge.hosting",
    "dynamics_bridge.pipeline",
    "dynamics_bridge.http_policy",
    "dynamics_bridge.dataverse",
    "dynamics_bridge.dataverse.batch",
    "dynamics_bridge.dataverse.metadata",
    "dynamics_bridge.dataverse.odata",
    "dynamics_bridge.dataverse.pacing",
    "dynamics_bridge.dataverse.policy",
    "dynamics_bridge.apsis",
    "dynamics_bridge.apsis.models",
    "dynamics_bridge.apsis.pacing",
    "dynamics_bridge.apsis.policy",
    "dynamics_bridge.apsis.port",
    "dynamics_bridge.apsis.wire",
    "dynamics_bridge.registry",
    "dynamics_bridge.registry.spar_errors",
    "dynamics_bridge.registry.spar_mapping",
    "dynamics_bridge.queue",
    "dynamics_bridge.queue.envelope",
    "dynamics_bridge.queue.memory",
    "dynamics_bridge.queue.port",
    "dynamics_bridge.ops",
    "dynamics_bridge.ops.model",
    "dynamics_bridge.ops.port",
    "dynamics_bridge.ops.memory",
    "dynamics_bridge.ops.charts",
    "dynamics_bridge.ops.tablekeys",
)


def pure_modules() -> list[str]:
    """The named pure modules, then every module of the pure packages (new ones included)."""
    found = list(PURE_MODULES)
    for package in PURE_PACKAGES:
        found.append(f"dynamics_bridge.{package}")
        found += [
            f"dynamics_bridge.{package}.{info.name}"
            for info in pkgutil.iter_modules([str(PACKAGE_DIR / package)])
        ]
    return found


# Runs in the fresh interpreter: import one module, print what got loaded.
PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_import(module: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, f"importing {module} failed:\n{done.stderr}"
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def is_within(name: str, top: str) -> bool:
    return name == top or name.startswith(f"{top}.")


@pytest.mark.parametrize("module", pure_modules())
def test_a_pure_module_loads_no_io_library(module: str) -> None:
    loaded = loaded_after_import(module)
    forbidden = FORBIDDEN + tuple(
        top for prefix, tops in ALSO_FORBIDDEN.items() if module.startswith(prefix) for top in tops
    )
    offending = sorted({top for top in forbidden for name in loaded if is_within(name, top)})
    ours = [name for name in loaded if is_within(name, "dynamics_bridge")]
    assert not offending, f"{module} loads {offending}; it brings in: {ours}"


def test_the_probe_sees_an_io_library_when_one_is_loaded() -> None:
    """The check above could pass by seeing nothing: the client's module does load requests."""
    loaded = loaded_after_import("dynamics_bridge.apsis.client")
    assert "requests" in loaded
