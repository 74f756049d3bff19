from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.port import OpsStore
from tests.conftest import ROOT
from tests.support.azurite import azurite_binary, run_azurite


@pytest.fixture(scope="session")
def azurite_tables() -> Iterator[str]:
    """Azurite's queue and table services on free 127.0.0.1 ports; yields the connection string."""
    binary = azurite_binary(ROOT)
    if binary is None:
        pytest.skip("Azurite is not installed: `make test` installs it with npm into node_modules")
    with run_azurite(binary, tables=True) as conn:
        yield conn


@pytest.fixture(params=["memory", "tables"])
def store(request: pytest.FixtureRequest) -> OpsStore:
    """Each store the bridge can be configured with, empty: tables under a fresh prefix."""
    if request.param == "memory":
        return InMemoryOpsStore()
    from dynamics_bridge.ops.tables import TableOpsStore

    conn = request.getfixturevalue("azurite_tables")
    return TableOpsStore.from_connection_string(conn, prefix=f"t{uuid.uuid4().hex[:12]}")
