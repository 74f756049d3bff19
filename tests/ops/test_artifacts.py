"""Artifacts: every store versions models and reports the same way (the contract), and a
version is visible only once all of it is written."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from dynamics_bridge.errors import InputError, NotFoundError
from dynamics_bridge.ops.artifacts import (
    CHUNK_BYTES,
    ArtifactStore,
    DirectoryArtifacts,
    MemoryArtifacts,
    TableArtifacts,
)


@pytest.fixture(params=["memory", "directory", "tables"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "memory":
        return MemoryArtifacts()
    if request.param == "directory":
        return DirectoryArtifacts(tmp_path / "artifacts")
    from azure.data.tables import TableServiceClient

    conn = request.getfixturevalue("azurite")
    service = TableServiceClient.from_connection_string(conn)
    return TableArtifacts(service, prefix=f"t{uuid.uuid4().hex[:12]}")


def test_an_empty_store_has_no_latest_and_no_versions(artifacts: ArtifactStore) -> None:
    assert artifacts.latest("churn") is None
    assert artifacts.versions("churn") == []
    with pytest.raises(NotFoundError):
        artifacts.get("churn", "v00001")


def test_each_put_is_a_new_version_and_the_old_ones_stay(artifacts: ArtifactStore) -> None:
    first = artifacts.put("churn", b"model one", {"used": False, "why": "does not beat"})
    second = artifacts.put("churn", b"model two", {"used": True, "roc_auc": 0.71})
    assert (first.version, second.version) == ("v00001", "v00002")
    latest = artifacts.latest("churn")
    assert latest is not None
    assert (latest.version, latest.data, latest.meta["roc_auc"]) == ("v00002", b"model two", 0.71)
    assert artifacts.get("churn", "v00001").data == b"model one"
    listed = artifacts.versions("churn")
    assert [a.version for a in listed] == ["v00002", "v00001"]
    assert all(a.data == b"" for a in listed)  # metadata only
    assert listed[1].meta == {"used": False, "why": "does not beat"}


def test_kinds_are_kept_apart(artifacts: ArtifactStore) -> None:
    artifacts.put("churn", b"c", {})
    artifacts.put("themes", b"t", {})
    assert artifacts.latest("themes").data == b"t"  # type: ignore[union-attr]
    assert [a.version for a in artifacts.versions("themes")] == ["v00001"]


def test_a_model_larger_than_a_table_property_comes_back_whole(artifacts: ArtifactStore) -> None:
    data = os.urandom(CHUNK_BYTES * 3 + 17)  # four chunks in the table store
    artifacts.put("themes", data, {"size": len(data)})
    assert artifacts.latest("themes").data == data  # type: ignore[union-attr]


def test_an_empty_artifact_is_stored(artifacts: ArtifactStore) -> None:
    artifacts.put("report", b"", {})
    assert artifacts.latest("report").data == b""  # type: ignore[union-attr]


def test_a_kind_must_be_a_short_word(artifacts: ArtifactStore) -> None:
    with pytest.raises(InputError, match="short lower-case word"):
        artifacts.put("../etc", b"x", {})


def test_a_half_written_version_in_a_folder_is_not_seen(tmp_path: Path) -> None:
    store = DirectoryArtifacts(tmp_path)
    store.put("churn", b"whole", {})
    # a crash after the body and before the metadata rename leaves these behind
    (tmp_path / "churn" / "v00002.bin").write_bytes(b"half")
    (tmp_path / "churn" / ".v00002.json.part").write_text("{")
    assert store.latest("churn").data == b"whole"  # type: ignore[union-attr]
    assert store.put("churn", b"next", {}).version == "v00002"
    assert store.latest("churn").data == b"next"  # type: ignore[union-attr]


def test_a_crashed_table_write_leaves_no_version_and_two_writers_cannot_mix(
    azurite: str,
) -> None:
    from azure.data.tables import TableServiceClient

    from dynamics_bridge.errors import BridgeError

    service = TableServiceClient.from_connection_string(azurite)
    prefix = f"t{uuid.uuid4().hex[:12]}"
    store = TableArtifacts(service, prefix=prefix)
    store.put("churn", b"one", {})
    # an attempt at v00002 wrote three chunks and died before its head row
    table = store._client()
    for i in range(3):
        table.upsert_entity({"PartitionKey": "churn~v00002", "RowKey": f"{i:05d}", "data": b"x"})
    assert store.latest("churn").data == b"one"  # type: ignore[union-attr]
    store.put("churn", b"two", {})
    assert store.latest("churn").data == b"two"  # type: ignore[union-attr]
    # a second writer that read the same newest version loses, and spoils nothing
    other = TableArtifacts(service, prefix=prefix)
    late = other._heads
    other._heads = lambda kind, limit: iter([{"version": "v00001"}])  # type: ignore[method-assign]
    with pytest.raises(BridgeError):
        other.put("churn", b"three", {})
    other._heads = late  # type: ignore[method-assign]
    assert store.latest("churn").data == b"two"  # type: ignore[union-attr]
