"""The package's public names: a curated, sorted ``__all__`` that imports (API drift fails here)."""

from __future__ import annotations

import dynamics_bridge.dataverse as dataverse


def test_the_public_names_are_sorted_and_importable() -> None:
    assert dataverse.__all__ == sorted(dataverse.__all__)
    for name in dataverse.__all__:
        assert getattr(dataverse, name) is not None


def test_the_calls_the_bridge_uses_are_in_their_namespaces() -> None:
    """Split as Microsoft's Dataverse SDK splits the API: rows, batch, changes, schema."""
    from dynamics_bridge.dataverse.changes import Changes
    from dynamics_bridge.dataverse.rows import Rows
    from dynamics_bridge.dataverse.schema import Schema
    from dynamics_bridge.dataverse.transport import Batches

    namespaces = {
        Rows: ("by_values", "get", "query", "create_only", "update", "upsert", "upsert_many"),
        Batches: ("execute", "parts"),
        Changes: ("since",),
        Schema: ("table", "choice_options", "create_metadata", "wait_for_key"),
    }
    for namespace, methods in namespaces.items():
        for method in methods:
            assert callable(getattr(namespace, method)), f"{namespace.__name__}.{method}"
    hints = dataverse.DataverseClient.__annotations__
    assert {hints[n] for n in ("rows", "batch", "changes", "schema")} == {
        "Rows",
        "Batches",
        "Changes",
        "Schema",
    }
