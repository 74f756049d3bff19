"""The package's public names: a curated, sorted ``__all__`` that imports (API drift fails here)."""

from __future__ import annotations

import dynamics_bridge.dataverse as dataverse


def test_the_public_names_are_sorted_and_importable() -> None:
    assert dataverse.__all__ == sorted(dataverse.__all__)
    for name in dataverse.__all__:
        assert getattr(dataverse, name) is not None


def test_the_calls_a_pipeline_uses_are_on_the_client() -> None:
    for method in (
        "rows_by_values",
        "get",
        "query",
        "create_only",
        "update",
        "upsert",
        "execute_batch",
        "create_many",
        "upsert_many",
        "changes",
        "table",
        "choice_options",
        "create_metadata",
        "wait_for_key",
    ):
        assert callable(getattr(dataverse.DataverseClient, method))
