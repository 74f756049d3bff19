from __future__ import annotations

import uuid

import pytest

from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.port import OpsStore


@pytest.fixture(params=["memory", "tables"])
def store(request: pytest.FixtureRequest) -> OpsStore:
    """Each store the bridge can be configured with, empty: tables under a fresh prefix."""
    if request.param == "memory":
        return InMemoryOpsStore()
    from dynamics_bridge.ops.tables import TableOpsStore

    conn = request.getfixturevalue("azurite")
    return TableOpsStore.from_connection_string(conn, prefix=f"t{uuid.uuid4().hex[:12]}")
