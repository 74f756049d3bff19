"""app/wiring.py is the only place in the runtime, the CLI and deploy/ that builds a client."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = {"DataverseClient", "ApsisClient", "ApsisPlatform", "SparClient", "SwishApiClient"}
WIRING = ROOT / "dynamics_bridge" / "app" / "wiring.py"


def builds(path: Path) -> list[str]:
    """``Client(...)`` and ``Client.from_settings(...)`` calls of the client classes in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        target = node.func
        if isinstance(target, ast.Attribute) and target.attr == "from_settings":
            target = target.value
        if isinstance(target, ast.Name) and target.id in CLIENTS:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {target.id}")
    return found


def test_no_client_is_built_outside_the_wiring() -> None:
    files = [
        *(ROOT / "dynamics_bridge").rglob("*.py"),
        *(ROOT / "deploy").rglob("*.py"),
    ]
    # An adapter may compose its own parts (ApsisPlatform builds its ApsisClient).
    outside = [
        hit
        for path in files
        if path != WIRING and "/apsis/" not in path.as_posix()
        for hit in builds(path)
    ]
    assert outside == []


def test_the_wiring_builds_every_client_the_runtime_uses() -> None:
    built = {hit.rsplit(" ", 1)[1] for hit in builds(WIRING)}
    assert built >= {"DataverseClient", "ApsisPlatform", "SparClient", "SwishApiClient"}
