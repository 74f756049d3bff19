"""Versioned artifacts: the retention models, their metrics and the latest report.

Each ``put`` makes a new version (``v00001``, ``v00002`` …) of a kind (``churn``, ``themes``,
``report``) holding bytes and a small JSON of metadata (the metrics, why a model is or is not
used). Nothing is overwritten, so an admin can see what last week's model said, and a version
is visible only once all of it is written: no reader ever sees half a model.

Three stores: :class:`TableArtifacts` (Azure Table Storage, Azurite locally; the function app),
:class:`DirectoryArtifacts` (a folder, for the CLI on an admin's machine) and
:class:`MemoryArtifacts` (one process: tests, the demo).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from dynamics_bridge.errors import ConfigError, InputError, NotFoundError

__all__ = [
    "Artifact",
    "ArtifactStore",
    "DirectoryArtifacts",
    "MemoryArtifacts",
    "TableArtifacts",
]

#: Table Storage takes at most 64 KiB in a binary property and 1 MiB in an entity.
CHUNK_BYTES = 60_000
_MAX_VERSION = 99_999
_KIND = r"^[a-z][a-z0-9_]{0,30}$"


@dataclass(frozen=True)
class Artifact:
    kind: str
    version: str
    created: datetime
    meta: Mapping[str, Any] = field(default_factory=dict)
    data: bytes = b""


class ArtifactStore(Protocol):
    def put(self, kind: str, data: bytes, meta: Mapping[str, Any]) -> Artifact:
        """Store a new version; returns it (data included)."""
        ...

    def latest(self, kind: str) -> Artifact | None:
        """The newest version with its data, or None."""
        ...

    def get(self, kind: str, version: str) -> Artifact:
        """That version with its data; :class:`NotFoundError` when there is none."""
        ...

    def versions(self, kind: str, limit: int = 20) -> list[Artifact]:
        """Newest first, metadata only (``data`` empty)."""
        ...


def _version(number: int) -> str:
    if number > _MAX_VERSION:
        raise ConfigError(f"more than {_MAX_VERSION} artifact versions: remove old ones")
    return f"v{number:05d}"


def _number(version: str) -> int:
    return int(version[1:])


def _check_kind(kind: str) -> None:
    if not re.match(_KIND, kind):
        raise InputError(f"artifact kind {kind!r} is not a short lower-case word")


class MemoryArtifacts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, list[Artifact]] = {}

    def put(self, kind: str, data: bytes, meta: Mapping[str, Any]) -> Artifact:
        _check_kind(kind)
        with self._lock:
            items = self._items.setdefault(kind, [])
            artifact = Artifact(kind, _version(len(items) + 1), datetime.now(UTC), dict(meta), data)
            items.append(artifact)
            return artifact

    def latest(self, kind: str) -> Artifact | None:
        items = self._items.get(kind)
        return items[-1] if items else None

    def get(self, kind: str, version: str) -> Artifact:
        for item in self._items.get(kind, []):
            if item.version == version:
                return item
        raise NotFoundError(f"no {kind} artifact {version}")

    def versions(self, kind: str, limit: int = 20) -> list[Artifact]:
        items = self._items.get(kind, [])[::-1][:limit]
        return [Artifact(a.kind, a.version, a.created, a.meta) for a in items]


class DirectoryArtifacts:
    """``<root>/<kind>/<version>.bin`` and ``.json``; the metadata file is written last, by
    rename, so a version exists only once both are complete."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _numbers(self, kind: str) -> list[int]:
        folder = self.root / kind
        if not folder.is_dir():
            return []
        return sorted(_number(p.stem) for p in folder.glob("v*.json") if p.stem[1:].isdigit())

    def put(self, kind: str, data: bytes, meta: Mapping[str, Any]) -> Artifact:
        _check_kind(kind)
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        numbers = self._numbers(kind)
        version = _version((numbers[-1] if numbers else 0) + 1)
        created = datetime.now(UTC)
        body = folder / f"{version}.bin"
        body.write_bytes(data)
        head = {"created": created.isoformat(), "meta": dict(meta), "size": len(data)}
        partial = folder / f".{version}.json.part"
        partial.write_text(json.dumps(head, ensure_ascii=False), encoding="utf-8")
        os.replace(partial, folder / f"{version}.json")
        return Artifact(kind, version, created, dict(meta), data)

    def _read(self, kind: str, version: str, *, data: bool) -> Artifact:
        folder = self.root / kind
        try:
            head = json.loads((folder / f"{version}.json").read_text(encoding="utf-8"))
            body = (folder / f"{version}.bin").read_bytes() if data else b""
        except FileNotFoundError:
            raise NotFoundError(f"no {kind} artifact {version} in {folder}") from None
        return Artifact(kind, version, datetime.fromisoformat(head["created"]), head["meta"], body)

    def latest(self, kind: str) -> Artifact | None:
        numbers = self._numbers(kind)
        return self._read(kind, _version(numbers[-1]), data=True) if numbers else None

    def get(self, kind: str, version: str) -> Artifact:
        return self._read(kind, version, data=True)

    def versions(self, kind: str, limit: int = 20) -> list[Artifact]:
        numbers = self._numbers(kind)[::-1][:limit]
        return [self._read(kind, _version(n), data=False) for n in numbers]


class TableArtifacts:
    """Table ``<prefix>artifacts``: a head row per version (PartitionKey = kind, RowKey = the
    version counted down, so the newest comes first in a range query) and the data in chunk rows
    of a partition of their own (``<kind>~<version>~<attempt>``, named in the head row), written
    before the head row: a crashed attempt leaves chunks nobody reads, never half a version."""

    def __init__(self, service: Any, *, prefix: str = "bridge") -> None:
        self._service = service
        self._name = f"{prefix}artifacts"
        self._table: Any = None

    @classmethod
    def from_settings(cls, ops: Any, queue: Any) -> TableArtifacts:
        from dynamics_bridge.ops.tables import TableOpsStore

        return cls(TableOpsStore.from_settings(ops, queue).service, prefix=ops.table_prefix)

    def _client(self) -> Any:
        if self._table is None:
            from azure.core.exceptions import ResourceExistsError

            from dynamics_bridge.ops.tables import _mapped

            with _mapped(f"create table {self._name}"), contextlib.suppress(ResourceExistsError):
                self._service.create_table(self._name)
            self._table = self._service.get_table_client(self._name)
        return self._table

    @staticmethod
    def _row_key(version: str) -> str:
        return f"{_MAX_VERSION - _number(version):05d}"

    def _heads(self, kind: str, limit: int) -> Iterator[dict[str, Any]]:
        from dynamics_bridge.ops.tables import _mapped

        table = self._client()
        with _mapped(f"query {self._name}"):
            entities = table.query_entities(
                "PartitionKey eq @kind", parameters={"kind": kind}, results_per_page=limit
            )
            for count, entity in enumerate(entities):
                if count >= limit:
                    return
                yield entity

    def put(self, kind: str, data: bytes, meta: Mapping[str, Any]) -> Artifact:
        from dynamics_bridge.ops.tables import _mapped

        _check_kind(kind)
        newest = next(self._heads(kind, 1), None)
        version = _version(_number(newest["version"]) + 1 if newest else 1)
        created = datetime.now(UTC)
        table = self._client()
        # the chunks' own partition, unique to this attempt: two runs at once each write their
        # own, and only one head row for the version can be made (the other is refused)
        part = f"{kind}~{version}~{uuid.uuid4().hex[:12]}"
        chunks = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
        with _mapped(f"write {self._name}"):
            for start in range(0, len(chunks), 50):  # 50 x 60 KB: under a batch's 4 MiB
                table.submit_transaction(
                    [
                        (
                            "upsert",
                            {"PartitionKey": part, "RowKey": f"{start + i:05d}", "data": chunk},
                        )
                        for i, chunk in enumerate(chunks[start : start + 50])
                    ]
                )
            table.create_entity(
                {
                    "PartitionKey": kind,
                    "RowKey": self._row_key(version),
                    "version": version,
                    "created": created,
                    "meta": json.dumps(dict(meta), ensure_ascii=False),
                    "chunks": len(chunks),
                    "part": part,
                    "size": len(data),
                }
            )
        return Artifact(kind, version, created, dict(meta), data)

    def _artifact(self, kind: str, head: Mapping[str, Any], *, data: bool) -> Artifact:
        from dynamics_bridge.ops.tables import _mapped

        body = b""
        if data:
            table = self._client()
            part = head["part"]
            with _mapped(f"read {self._name}"):
                rows = table.query_entities("PartitionKey eq @part", parameters={"part": part})
                count = int(head["chunks"])
                pieces = sorted((r["RowKey"], bytes(r["data"])) for r in rows)
            if len(pieces) != count:
                raise NotFoundError(f"{kind} artifact {head['version']}: chunks missing")
            body = b"".join(p for _, p in pieces)
        created = head["created"]
        if isinstance(created, str):
            created = datetime.fromisoformat(created)
        return Artifact(kind, str(head["version"]), created, json.loads(head["meta"]), body)

    def latest(self, kind: str) -> Artifact | None:
        head = next(self._heads(kind, 1), None)
        return self._artifact(kind, head, data=True) if head else None

    def get(self, kind: str, version: str) -> Artifact:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            head = self._client().get_entity(kind, self._row_key(version))
        except ResourceNotFoundError:
            raise NotFoundError(f"no {kind} artifact {version}") from None
        return self._artifact(kind, head, data=True)

    def versions(self, kind: str, limit: int = 20) -> list[Artifact]:
        return [self._artifact(kind, h, data=False) for h in self._heads(kind, limit)]
