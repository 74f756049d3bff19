from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_SAMPLES = ROOT.parent / "shared" / "samples"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _clean_bridge_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each test starts with no BRIDGE_* variables and no .env from the developer's checkout."""
    for key in list(os.environ):
        if key.startswith("BRIDGE_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Real Azurite queue and table services on free 127.0.0.1 ports (the queue, and the ops
    store's tables: run history, the poison book); yields their connection string."""
    from tests.support.azurite import azurite_binary, run_azurite

    binary = azurite_binary(ROOT)
    if binary is None:
        pytest.skip("Azurite is not installed: `make test` installs it with npm into node_modules")
    with run_azurite(binary, tables=True) as conn:
        yield conn


def shared_samples(*parts: str) -> Path:
    """A folder under ../shared/samples, or skip: the samples are not part of this repo."""
    path = SHARED_SAMPLES.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"{path} not present: the published sample files live in ../shared, outside the repo"
        )
    return path
