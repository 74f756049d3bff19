"""Rows, as ``client.rows``: reads (query, by key, by many values) and writes (create-only,
update, upsert, delete; many rows through ``$batch``). Microsoft's SDK calls this namespace
``records``; ours writes by alternate key so a replay is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from dynamics_bridge.dataverse.batch import BatchRequest
from dynamics_bridge.dataverse.odata import Key, key_literal, key_path, odata_in
from dynamics_bridge.dataverse.transport import MAX_BATCH_OPERATIONS, Transport
from dynamics_bridge.errors import BridgeError, DuplicateKeyError, NotFoundError, TransientError

__all__ = ["RowResult", "Rows"]


@dataclass(frozen=True)
class RowResult:
    """One row of a bulk write: ``error`` is None when it was written."""

    key: Mapping[str, Any]
    error: BridgeError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def duplicate(self) -> bool:
        return isinstance(self.error, DuplicateKeyError)


class Rows:
    """Row reads and writes over one transport."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.settings = transport.settings

    # -- reads ---------------------------------------------------------------------------------

    def query(
        self,
        entity_set: str,
        *,
        select: Sequence[str] = (),
        filter: str | None = None,
        orderby: str | None = None,
        top: int | None = None,
        annotations: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row, following ``@odata.nextLink`` verbatim with ``Prefer: odata.maxpagesize``.

        With ``top`` no page size is asked for (Dataverse ignores ``$top`` beside it).
        ``annotations``: e.g. ``OData.Community.Display.V1.FormattedValue`` or ``*``.
        """
        options = {"$select": ",".join(select), "$filter": filter, "$orderby": orderby}
        options["$top"] = str(top) if top else None
        params: dict[str, str] | None = {k: v for k, v in options.items() if v}
        prefer = [] if top else [f"odata.maxpagesize={self.settings.page_size}"]
        if annotations:
            prefer.append(f'odata.include-annotations="{annotations}"')
        headers = {"Prefer": ",".join(prefer)} if prefer else {}
        body = self.transport.request("GET", entity_set, params=params, headers=headers).json()
        yield from body.get("value", [])
        yield from self.pages(body.get("@odata.nextLink"), headers)

    def get(
        self, entity_set: str, key: Key | str, select: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """One row by alternate key (or id), with its ``@odata.etag``; None when there is none."""
        params = {"$select": ",".join(select)} if select else None
        try:
            path = key_path(entity_set, key)
            return dict(self.transport.request("GET", path, params=params).json())
        except NotFoundError:
            return None

    def _chunks(self, column: str, values: list[str]) -> Iterator[list[str]]:
        """Value lists whose ``In`` filter stays under ``keys_per_query`` and, URL-encoded,
        under ``max_filter_chars`` (Dataverse refuses URLs beyond about 32 KB)."""
        empty = len(quote(odata_in(column, []), safe=""))
        chunk: list[str] = []
        size = empty
        for value in values:
            extra = len(quote(key_literal(value), safe="")) + 3  # and an encoded comma
            if chunk and (
                len(chunk) >= self.settings.keys_per_query
                or size + extra > self.settings.max_filter_chars
            ):
                yield chunk
                chunk, size = [], empty
            chunk.append(value)
            size += extra
        if chunk:
            yield chunk

    def by_values(
        self, entity_set: str, column: str, values: Sequence[str], select: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Rows whose ``column`` is one of ``values``, keyed by that value. Rows carry
        ``@odata.etag``.

        ``In`` queries are chunked to stay under URL limits; more than one chunk goes as GET
        parts of one ``$batch`` (up to 1,000 a request), which Dataverse counts as one request.
        """
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(str(v) for v in values))
        columns = list(dict.fromkeys([column, *select]))
        filters = [odata_in(column, chunk) for chunk in self._chunks(column, wanted)]
        if len(filters) == 1:
            for row in self.query(entity_set, select=columns, filter=filters[0]):
                found[str(row.get(column))] = row
            return found
        prefer = {"Prefer": f"odata.maxpagesize={self.settings.page_size}"}
        options = {"$select": ",".join(columns)}
        for start in range(0, len(filters), MAX_BATCH_OPERATIONS):
            gets = [
                BatchRequest(
                    "GET",
                    f"{entity_set}?{urlencode(options | {'$filter': f}, quote_via=quote)}",
                    prefer,
                )
                for f in filters[start : start + MAX_BATCH_OPERATIONS]
            ]
            for op in self.transport.batch.execute(gets).operations:
                if not op.ok:  # a query Dataverse did not answer must not read as "no rows"
                    raise op.error or TransientError("query not executed by Dataverse")
                page = op.body or {}
                rows = page.get("value", [])
                if page.get("@odata.nextLink"):  # a column with repeated values: read on
                    rows = [*rows, *self.pages(page["@odata.nextLink"], prefer)]
                for row in rows:
                    found[str(row.get(column))] = row
        return found

    def pages(self, url: str | None, headers: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The rows of a ``@odata.nextLink`` and every page after it (a ``$batch`` GET part's
        answer holds only its first page)."""
        while url:
            body = self.transport.request("GET", url, headers=headers).json()
            yield from body.get("value", [])
            url = body.get("@odata.nextLink")

    # -- single writes -------------------------------------------------------------------------

    def create(self, entity_set: str, body: Mapping[str, Any]) -> str | None:
        """A plain POST (not idempotent: prefer :meth:`create_only`); returns OData-EntityId.
        A timeout after sending raises :class:`~dynamics_bridge.errors.AmbiguousError`."""
        response = self.transport.request(
            "POST", entity_set, json_body=dict(body), idempotent=False
        )
        return response.headers.get("OData-EntityId")

    def create_only(self, entity_set: str, key: Key, body: Mapping[str, Any]) -> None:
        """Create under an alternate key (``If-None-Match: *``); a row already there raises
        :class:`DuplicateKeyError` — for a replayed event that means *done*."""
        self.transport.request(
            "PATCH", key_path(entity_set, key), json_body=dict(body), headers={"If-None-Match": "*"}
        )

    def update(self, entity_set: str, key: Key, body: Mapping[str, Any], etag: str = "*") -> None:
        """Update only: NotFoundError when missing; with an ETag, ConcurrencyConflictError when
        someone changed the row since it was read."""
        self.transport.request(
            "PATCH", key_path(entity_set, key), json_body=dict(body), headers={"If-Match": etag}
        )

    def upsert(self, entity_set: str, key: Key, body: Mapping[str, Any]) -> None:
        """Create or update by alternate key (keep the key columns out of ``body``)."""
        self.transport.request("PATCH", key_path(entity_set, key), json_body=dict(body))

    def delete(self, entity_set: str, key: Key | str, etag: str | None = None) -> None:
        self.transport.request(
            "DELETE", key_path(entity_set, key), headers={"If-Match": etag} if etag else None
        )

    # -- many rows -----------------------------------------------------------------------------

    def create_many(
        self, entity_set: str, rows: Sequence[tuple[Key, Mapping[str, Any]]]
    ) -> list[RowResult]:
        """Create-only for many rows through ``$batch``: one result per row (duplicates are
        ``RowResult.duplicate``, which for a replay means done)."""
        return self._by_batch(entity_set, rows, {"If-None-Match": "*"})

    def upsert_many(
        self, entity_set: str, rows: Sequence[tuple[Key, Mapping[str, Any]]]
    ) -> list[RowResult]:
        """Upsert many rows by alternate key through ``$batch``: one result per row."""
        return self._by_batch(entity_set, rows, {})

    def _by_batch(
        self,
        entity_set: str,
        rows: Sequence[tuple[Key, Mapping[str, Any]]],
        headers: dict[str, str],
    ) -> list[RowResult]:
        results: list[RowResult] = []
        for start in range(0, len(rows), MAX_BATCH_OPERATIONS):
            chunk = rows[start : start + MAX_BATCH_OPERATIONS]
            items = [
                BatchRequest(
                    "PATCH",
                    key_path(entity_set, key),
                    dict(headers),
                    {k: v for k, v in body.items() if k not in key},
                )
                for key, body in chunk
            ]
            outcome = self.transport.batch.execute(items)
            for (key, _), op in zip(chunk, outcome.operations, strict=True):
                error = op.error
                if op.state == "not_executed":
                    error = TransientError("not executed by Dataverse")
                results.append(RowResult(key, error))
        return results
