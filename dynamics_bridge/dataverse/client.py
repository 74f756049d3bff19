"""Dataverse Web API client: one injected ``requests.Session``, retries and pacing per app user.

Every request goes through :meth:`DataverseClient.request`: an app user is leased from the
:class:`~dynamics_bridge.dataverse.pacing.AppUserPool` (least loaded, not paused), its token is
asked for (msal's cache makes that free), and the answer is classified by the pure
:func:`~dynamics_bridge.dataverse.policy.classify`. A 429 pauses *every* worker of that app user
until Retry-After has passed, and the retry goes to whichever user is free; transient failures
retry with exponential backoff and jitter (tenacity); a 401 gets one retry with a fresh token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, urlencode

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception

from dynamics_bridge.dataverse.auth import msal_token_provider, session_for
from dynamics_bridge.dataverse.batch import (
    BatchPart,
    BatchRequest,
    BatchResult,
    ChangeSet,
    build_batch,
    correlate,
    operations,
    parse_batch_response,
)
from dynamics_bridge.dataverse.metadata import (
    AlternateKey,
    ChoiceOption,
    Table,
    insert_option_body,
    parse_options,
    parse_table,
)
from dynamics_bridge.dataverse.odata import Key, bind, key_literal, key_path, odata_in
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserLane, AppUserPool
from dynamics_bridge.dataverse.policy import classify, should_retry, sleep_for
from dynamics_bridge.errors import (
    BridgeError,
    ConfigError,
    DuplicateKeyError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.settings import AppUser, DataverseSettings

__all__ = [
    "MAX_BATCH_OPERATIONS",
    "AmbiguousWriteError",
    "AppUserGate",
    "DataverseClient",
    "Delta",
    "RowResult",
    "bind",
    "key_literal",
    "key_path",
    "odata_in",
]

log = logging.getLogger(__name__)

MAX_BATCH_OPERATIONS = 1000
_STRONG = {"Consistency": "Strong"}  # metadata reads see what was just written
_CHOICE_CASTS = {
    "Picklist": "PicklistAttributeMetadata",
    "State": "StateAttributeMetadata",
    "Status": "StatusAttributeMetadata",
}


class AmbiguousWriteError(TransientError):
    """A non-idempotent write (plain POST) timed out after it was sent: it may have been applied.

    Not retried here, since a retry could create a second row; write by alternate key instead.
    """


@dataclass
class Delta:
    """One change-tracking read: rows new or changed, ids deleted, and the link for next time.

    ``resynced``: the old delta link was refused (expired), so this is a full read.
    """

    changed: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    delta_link: str = ""
    resynced: bool = False


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


class DataverseClient:
    """The Web API calls the rest of the tool needs, over one or more app users.

    ``token`` + ``gate`` describe a single app user; ``pool`` several (see :meth:`from_settings`).
    """

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        token: Callable[[], str] | None = None,
        *,
        gate: AppUserGate | None = None,
        pool: AppUserPool | None = None,
        api_version: str = "v9.2",
        extra_headers: Mapping[str, str] | None = None,
        max_attempts: int = 6,
        max_throttle_seconds: float = 900.0,
        default_retry_after: float = 5.0,
        timeout: float = 60.0,
        page_size: int = 5000,
        keys_per_query: int = 100,
        max_filter_chars: int = 6000,
        multiple_operations: Collection[str] = (),
        multiple_operations_size: int = 100,
        solution: str | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if pool is None:
            if token is None:
                raise ValueError("give a token provider or an app user pool")
            pool = AppUserPool.single(token, gate)
        self.pool = pool
        self.root = f"{base_url.rstrip('/')}/api/data/{api_version}/"
        self.root_path = f"/api/data/{api_version}/"
        self.session = session
        self.extra_headers = dict(extra_headers or {})
        self.max_attempts = max_attempts
        self.max_throttle_seconds = max_throttle_seconds
        self.default_retry_after = default_retry_after
        self.timeout = timeout
        self.page_size = page_size
        self.keys_per_query = keys_per_query
        self.max_filter_chars = max_filter_chars
        self.multiple_operations = frozenset(multiple_operations)
        self.multiple_operations_size = multiple_operations_size
        self.solution = solution
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep or pool.lanes[0].gate.sleep
        self.requests_sent = 0
        self._count_lock = threading.Lock()
        self._metadata: dict[str, Any] = {}
        self._choices: dict[tuple[str, str], dict[str, tuple[ChoiceOption, ...]]] = {}
        self._tables: list[Table] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: DataverseSettings,
        session: requests.Session | None = None,
        *,
        token_for: Callable[[AppUser], Callable[[], str]] | None = None,
    ) -> DataverseClient:
        """A client over every configured app user, each with its own gate and msal app."""
        if not settings.url:
            raise ConfigError("BRIDGE_DATAVERSE__URL: required")
        make_token = token_for or (lambda user: msal_token_provider(settings, user))
        users = settings.users()
        if not users:
            raise ConfigError("BRIDGE_DATAVERSE__CLIENT_ID (or __APP_USERS): required")
        pool = AppUserPool(
            [
                AppUserLane(
                    user.client_id,
                    make_token(user),
                    AppUserGate(max_concurrency=settings.max_concurrency),
                )
                for user in users
            ]
        )
        return cls(
            settings.url,
            session or session_for(settings),
            pool=pool,
            api_version=settings.api_version,
            extra_headers=settings.behaviour_headers(),
            max_attempts=settings.max_attempts,
            max_throttle_seconds=settings.max_throttle_seconds,
            timeout=settings.timeout_seconds,
            page_size=settings.page_size,
            keys_per_query=settings.keys_per_query,
            multiple_operations=settings.multiple_operations_tables,
            multiple_operations_size=settings.multiple_operations_size,
            solution=settings.solution,
        )

    @property
    def gate(self) -> AppUserGate:
        """The first app user's gate (the only one with a single-user client)."""
        return self.pool.lanes[0].gate

    @property
    def throttled(self) -> int:
        """429s seen over all app users."""
        return self.pool.throttled

    # -- transport -----------------------------------------------------------------------------

    def _headers(
        self, lane: AppUserLane, extra: Mapping[str, str] | None, *, behaviour: bool
    ) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {lane.token()}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "If-None-Match": "null",
        }
        if behaviour:
            headers.update(self.extra_headers)
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        behaviour: bool | None = None,
        multipart_errors: bool = False,
    ) -> requests.Response:
        """One call with retries; raises the classified error when it cannot succeed.

        ``idempotent=False`` (a plain POST create): a timeout after sending is not retried.
        ``behaviour``: add the opt-in ``MSCRM.*`` headers (default: on every write).
        ``multipart_errors``: hand back a 4xx multipart answer (a stopped ``$batch``).
        """
        transient = 0
        throttled_for = 0.0

        def count(exc: BaseException) -> bool:
            nonlocal transient, throttled_for
            if isinstance(exc, AmbiguousWriteError) or not should_retry(exc):
                return False
            if isinstance(exc, ThrottledError):
                throttled_for += exc.retry_after or self.default_retry_after
            else:
                transient += 1
            return True

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, ThrottledError):
                return 0.0  # the app user's gate holds every worker back, this one included
            retry_after = getattr(exc, "retry_after", None)
            return sleep_for(transient, retry_after, base=self.backoff_base, cap=self.backoff_cap)

        def stop(state: RetryCallState) -> bool:
            return transient >= self.max_attempts or throttled_for > self.max_throttle_seconds

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            log.debug(
                "Dataverse %s %s: %s; trying again",
                method,
                path.split("?")[0][:120],
                type(exc).__name__,
                extra={
                    "status": getattr(exc, "status", None),
                    "request_id": getattr(exc, "request_id", None),
                },
            )

        retrying = Retrying(
            retry=retry_if_exception(count),
            stop=stop,
            wait=wait,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        write = method != "GET"
        return retrying(
            self._send,
            method,
            path,
            params,
            json_body,
            data,
            dict(headers or {}),
            idempotent,
            write if behaviour is None else behaviour,
            multipart_errors,
        )

    def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        json_body: Any,
        data: bytes | None,
        headers: dict[str, str],
        idempotent: bool,
        behaviour: bool,
        multipart_errors: bool,
    ) -> requests.Response:
        url = path if path.startswith("http") else self.root + path
        if json_body is not None:
            headers.setdefault("Content-Type", "application/json; charset=utf-8")
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        for fresh_token in (False, True):
            with self.pool.lease() as lane:
                sent = self._headers(lane, headers, behaviour=behaviour)
                with self._count_lock:
                    self.requests_sent += 1
                try:
                    response = self.session.request(
                        method, url, params=params, data=data, headers=sent, timeout=self.timeout
                    )
                except requests.ConnectTimeout as exc:
                    raise TransientError(f"Dataverse unreachable: {type(exc).__name__}") from exc
                except (requests.ConnectionError, requests.Timeout) as exc:
                    kind = TransientError if idempotent else AmbiguousWriteError
                    raise kind(f"Dataverse unreachable: {type(exc).__name__}") from exc
            status = response.status_code
            if status == 401 and not fresh_token and hasattr(lane.token, "invalidate"):
                lane.token.invalidate()  # expired or revoked: one more try with a new token
                continue
            break
        if status < 400:
            return response
        if (
            multipart_errors
            and status not in (401, 403, 429)
            and status < 500
            and response.headers.get("Content-Type", "").startswith("multipart/")
        ):
            return response
        if_match = sent.get("If-Match")
        error = classify(
            status,
            response.headers,
            response.content,
            create_only=sent.get("If-None-Match") == "*",
            conditional=if_match is not None and if_match != "*",
        )
        assert error is not None
        if isinstance(error, ThrottledError):
            pause = error.retry_after if error.retry_after is not None else self.default_retry_after
            lane.gate.pause(pause)
            log.warning(
                "Dataverse throttled app user %s for %.1f s",
                lane.name,
                pause,
                extra={"status": 429, "code": error.code, "request_id": error.request_id},
            )
        raise error

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
        prefer = [] if top else [f"odata.maxpagesize={self.page_size}"]
        if annotations:
            prefer.append(f'odata.include-annotations="{annotations}"')
        headers = {"Prefer": ",".join(prefer)} if prefer else {}
        body = self.request("GET", entity_set, params=params, headers=headers).json()
        yield from body.get("value", [])
        yield from self._pages(body.get("@odata.nextLink"), headers)

    def get(
        self, entity_set: str, key: Key | str, select: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """One row by alternate key (or id), with its ``@odata.etag``; None when there is none."""
        params = {"$select": ",".join(select)} if select else None
        try:
            return dict(self.request("GET", key_path(entity_set, key), params=params).json())
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
                len(chunk) >= self.keys_per_query or size + extra > self.max_filter_chars
            ):
                yield chunk
                chunk, size = [], empty
            chunk.append(value)
            size += extra
        if chunk:
            yield chunk

    def rows_by_values(
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
        prefer = {"Prefer": f"odata.maxpagesize={self.page_size}"}
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
            for op in self.execute_batch(gets).operations:
                if not op.ok:  # a query Dataverse did not answer must not read as "no rows"
                    raise op.error or TransientError("query not executed by Dataverse")
                page = op.body or {}
                rows = page.get("value", [])
                if page.get("@odata.nextLink"):  # a column with repeated values: read on
                    rows = [*rows, *self._pages(page["@odata.nextLink"], prefer)]
                for row in rows:
                    found[str(row.get(column))] = row
        return found

    def _pages(self, url: str | None, headers: dict[str, str]) -> Iterator[dict[str, Any]]:
        while url:
            body = self.request("GET", url, headers=headers).json()
            yield from body.get("value", [])
            url = body.get("@odata.nextLink")

    rows_by_key = rows_by_values

    # -- single writes -------------------------------------------------------------------------

    def create(self, entity_set: str, body: Mapping[str, Any]) -> str | None:
        """A plain POST (not idempotent: prefer :meth:`create_only`); returns OData-EntityId."""
        response = self.request("POST", entity_set, json_body=dict(body), idempotent=False)
        return response.headers.get("OData-EntityId")

    def create_only(self, entity_set: str, key: Key, body: Mapping[str, Any]) -> None:
        """Create under an alternate key (``If-None-Match: *``); a row already there raises
        :class:`DuplicateKeyError` — for a replayed event that means *done*."""
        self.request(
            "PATCH", key_path(entity_set, key), json_body=dict(body), headers={"If-None-Match": "*"}
        )

    def update(self, entity_set: str, key: Key, body: Mapping[str, Any], etag: str = "*") -> None:
        """Update only: NotFoundError when missing; with an ETag, ConcurrencyConflictError when
        someone changed the row since it was read."""
        self.request(
            "PATCH", key_path(entity_set, key), json_body=dict(body), headers={"If-Match": etag}
        )

    def upsert(self, entity_set: str, key: Key, body: Mapping[str, Any]) -> None:
        """Create or update by alternate key (keep the key columns out of ``body``)."""
        self.request("PATCH", key_path(entity_set, key), json_body=dict(body))

    def delete(self, entity_set: str, key: Key | str, etag: str | None = None) -> None:
        self.request(
            "DELETE", key_path(entity_set, key), headers={"If-Match": etag} if etag else None
        )

    # -- bulk writes ---------------------------------------------------------------------------

    def create_multiple(
        self, entity_set: str, logical_name: str, rows: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """``CreateMultiple``: all rows or none (standard tables); returns the new ids."""
        targets = [{"@odata.type": f"Microsoft.Dynamics.CRM.{logical_name}", **r} for r in rows]
        response = self.request(
            "POST",
            f"{entity_set}/Microsoft.Dynamics.CRM.CreateMultiple",
            json_body={"Targets": targets},
            idempotent=False,
        )
        return [str(i) for i in (response.json() if response.content else {}).get("Ids", [])]

    def upsert_multiple(
        self, entity_set: str, logical_name: str, rows: Sequence[tuple[Key, Mapping[str, Any]]]
    ) -> None:
        """``UpsertMultiple`` by alternate key: each row addressed by ``@odata.id``, key columns
        kept out of the body (Dataverse refuses them there, 0x80040216)."""
        targets = [
            {
                "@odata.type": f"Microsoft.Dynamics.CRM.{logical_name}",
                "@odata.id": key_path(entity_set, key, encode=False),
                **{k: v for k, v in body.items() if k not in key},
            }
            for key, body in rows
        ]
        self.request(
            "POST",
            f"{entity_set}/Microsoft.Dynamics.CRM.UpsertMultiple",
            json_body={"Targets": targets},
        )

    def create_many(
        self, entity_set: str, logical_name: str, rows: Sequence[tuple[Key, Mapping[str, Any]]]
    ) -> list[RowResult]:
        """Create-only for many rows: one result per row (duplicates are ``RowResult.duplicate``).

        Tables listed in ``multiple_operations`` go through ``CreateMultiple`` first; when a
        chunk fails (one row already there rolls the whole call back) that chunk is sent again
        as create-only operations in a ``$batch`` to learn each row's fate. Others use ``$batch``.
        """
        results: list[RowResult] = []
        if logical_name not in self.multiple_operations:
            return self._rows_by_batch(entity_set, rows, {"If-None-Match": "*"})
        for chunk in _chunked(rows, self.multiple_operations_size):
            try:
                self.create_multiple(entity_set, logical_name, [{**b, **k} for k, b in chunk])
            except PermanentError:
                results.extend(self._rows_by_batch(entity_set, chunk, {"If-None-Match": "*"}))
            else:
                results.extend(RowResult(key) for key, _ in chunk)
        return results

    def upsert_many(
        self, entity_set: str, logical_name: str, rows: Sequence[tuple[Key, Mapping[str, Any]]]
    ) -> list[RowResult]:
        """Upsert many rows by alternate key: ``UpsertMultiple`` for the configured tables (a
        failed chunk is re-sent through ``$batch`` to pin the failure), else ``$batch``."""
        if logical_name not in self.multiple_operations:
            return self._rows_by_batch(entity_set, rows, {})
        results: list[RowResult] = []
        for chunk in _chunked(rows, self.multiple_operations_size):
            try:
                self.upsert_multiple(entity_set, logical_name, chunk)
            except PermanentError:
                results.extend(self._rows_by_batch(entity_set, chunk, {}))
            else:
                results.extend(RowResult(key) for key, _ in chunk)
        return results

    def _rows_by_batch(
        self,
        entity_set: str,
        rows: Sequence[tuple[Key, Mapping[str, Any]]],
        headers: dict[str, str],
    ) -> list[RowResult]:
        results: list[RowResult] = []
        for chunk in _chunked(rows, MAX_BATCH_OPERATIONS):
            items = [
                BatchRequest(
                    "PATCH",
                    key_path(entity_set, key),
                    dict(headers),
                    {k: v for k, v in body.items() if k not in key},
                )
                for key, body in chunk
            ]
            outcome = self.execute_batch(items)
            for (key, _), op in zip(chunk, outcome.operations, strict=True):
                error = op.error
                if op.state == "not_executed":
                    error = TransientError("not executed by Dataverse")
                results.append(RowResult(key, error))
        return results

    # -- $batch --------------------------------------------------------------------------------

    def _prepared(
        self, items: Sequence[BatchRequest | ChangeSet]
    ) -> list[BatchRequest | ChangeSet]:
        """Copies with the opt-in headers on every write and a Content-ID on every change-set
        operation (unique in the batch), so a failure can be pinned on its operation."""
        used = {r.content_id for r in operations(items) if r.content_id is not None}
        counter = 0

        def prepared(req: BatchRequest, in_change_set: bool) -> BatchRequest:
            nonlocal counter
            headers = {**self.extra_headers, **req.headers} if req.method != "GET" else req.headers
            content_id = req.content_id
            if content_id is None and in_change_set:
                counter += 1
                while str(counter) in used:
                    counter += 1
                content_id = str(counter)
                used.add(content_id)
            return replace(req, headers=dict(headers), content_id=content_id)

        return [
            ChangeSet([prepared(r, True) for r in i.requests])
            if isinstance(i, ChangeSet)
            else prepared(i, False)
            for i in items
        ]

    def execute_batch(
        self, items: Sequence[BatchRequest | ChangeSet], *, continue_on_error: bool = True
    ) -> BatchResult:
        """One ``$batch`` (≤ 1,000 operations): every part's answer and one
        :class:`OperationResult` per request — ok, failed, rolled back or not executed.

        A throttled or failed POST as a whole raises (and is retried) like any request; the
        operations of a batch are all-idempotent when written by alternate key.
        """
        count = sum(len(i.requests) if isinstance(i, ChangeSet) else 1 for i in items)
        if count > MAX_BATCH_OPERATIONS:
            raise BridgeError(f"a $batch holds at most 1,000 operations, not {count}")
        prepared = self._prepared(items)
        content_type, body = build_batch(prepared, root_path=self.root_path)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        response = self.request(
            "POST", "$batch", data=body, headers=headers, behaviour=False, multipart_errors=True
        )
        parts = parse_batch_response(response.headers.get("Content-Type", ""), response.content)
        operations = correlate(prepared, parts)
        return BatchResult(parts, operations)

    def batch(
        self, items: Sequence[BatchRequest | ChangeSet], *, continue_on_error: bool = True
    ) -> list[BatchPart]:
        """One ``$batch``: each part's status, headers and body, as they came back."""
        return self.execute_batch(items, continue_on_error=continue_on_error).parts

    # -- change tracking -----------------------------------------------------------------------

    def changes(
        self,
        entity_set: str,
        select: Sequence[str],
        delta_link: str | None = None,
        *,
        resync_on_expired: bool = True,
    ) -> Delta:
        """Rows changed and ids deleted since ``delta_link`` (None: every row), and the next link.

        A delta link Dataverse refuses (older than ``ExpireChangeTrackingInDays``) falls back to
        a full read with ``resynced=True`` unless ``resync_on_expired`` is off.
        """
        if delta_link:
            try:
                return self._delta(delta_link, None)
            except PermanentError as exc:
                if not resync_on_expired or isinstance(exc, NotFoundError):
                    raise
                log.warning(
                    "Dataverse refused a delta link (%s): reading %s again",
                    exc.code,
                    entity_set,
                    extra={"table": entity_set, "request_id": exc.request_id},
                )
                delta = self._delta(entity_set, {"$select": ",".join(select)})
                delta.resynced = True
                return delta
        return self._delta(entity_set, {"$select": ",".join(select)})

    def _delta(self, url: str, params: dict[str, str] | None) -> Delta:
        delta = Delta()
        headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={self.page_size}"}
        while True:
            body = self.request("GET", url, params=params, headers=headers).json()
            for row in body.get("value", []):
                if "$deletedEntity" in str(row.get("@odata.context", "")):
                    delta.deleted.append(str(row.get("id")))
                else:
                    delta.changed.append(row)
            if body.get("@odata.nextLink"):
                url, params = body["@odata.nextLink"], None
                continue
            delta.delta_link = str(body.get("@odata.deltaLink", ""))
            return delta

    # -- metadata reads ------------------------------------------------------------------------

    def entity(self, logical_name: str, *, refresh: bool = False) -> dict[str, Any] | None:
        """A table's raw definition with attributes and keys (None if no such table); cached."""
        if refresh or logical_name not in self._metadata:
            path = f"EntityDefinitions(LogicalName={key_literal(logical_name)})"
            try:
                self._metadata[logical_name] = self.request(
                    "GET", path, params={"$expand": "Attributes,Keys"}, headers=_STRONG
                ).json()
            except NotFoundError:
                self._metadata[logical_name] = None
            self._choices = {k: v for k, v in self._choices.items() if k[0] != logical_name}
        return self._metadata[logical_name]

    def table(self, logical_name: str, *, refresh: bool = False) -> Table | None:
        """A table's columns and alternate keys, typed; cached."""
        definition = self.entity(logical_name, refresh=refresh)
        return parse_table(definition) if definition is not None else None

    def tables(self, *, refresh: bool = False) -> list[Table]:
        """Every table (names, entity set, change tracking; no columns); cached."""
        if refresh or self._tables is None:
            select = (
                "LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,"
                "PrimaryNameAttribute,ChangeTrackingEnabled"
            )
            answer = self.request(
                "GET", "EntityDefinitions", params={"$select": select}, headers=_STRONG
            ).json()
            self._tables = [parse_table(d) for d in answer.get("value", [])]
        return self._tables

    def alternate_keys(self, logical_name: str) -> tuple[AlternateKey, ...]:
        table = self.table(logical_name)
        if table is None:
            raise NotFoundError(f"table {logical_name} does not exist")
        return table.keys

    def choice_options(self, logical_name: str, column: str) -> tuple[ChoiceOption, ...]:
        """A choice column's options. Dataverse does not expand them with the attributes, so the
        table's choice columns are read once by casting to their metadata type (and cached)."""
        table = self.table(logical_name)
        if table is None or column not in table.columns:
            raise NotFoundError(f"{logical_name}.{column} does not exist")
        found = table.columns[column]
        if found.options is not None:
            return found.options
        cast = _CHOICE_CASTS.get(found.attribute_type or "")
        if cast is None:
            return ()
        if (logical_name, cast) not in self._choices:
            path = (
                f"EntityDefinitions(LogicalName={key_literal(logical_name)})/Attributes/"
                f"Microsoft.Dynamics.CRM.{cast}"
            )
            expand = (
                "OptionSet($select=Options)"
                if cast != "PicklistAttributeMetadata"
                else "OptionSet($select=Options),GlobalOptionSet($select=Options)"
            )
            answer = self.request(
                "GET",
                path,
                params={"$select": "LogicalName", "$expand": expand},
                headers=_STRONG,
            ).json()
            self._choices[(logical_name, cast)] = {
                str(a["LogicalName"]): parse_options(a.get("OptionSet") or a.get("GlobalOptionSet"))
                for a in answer.get("value", [])
            }
        return self._choices[(logical_name, cast)].get(column, ())

    # -- metadata writes (provision) -----------------------------------------------------------

    def _metadata_write(self, path: str, body: Mapping[str, Any], table: str | None) -> None:
        headers = {"MSCRM.SolutionUniqueName": self.solution} if self.solution else {}
        self.request("POST", path, json_body=dict(body), headers=headers, behaviour=False)
        if table:
            self._metadata.pop(table, None)
            self._choices = {k: v for k, v in self._choices.items() if k[0] != table}
        self._tables = None

    def create_table(self, body: Mapping[str, Any]) -> None:
        """``POST EntityDefinitions`` (see :func:`metadata.table_body`)."""
        self._metadata_write("EntityDefinitions", body, str(body.get("SchemaName", "")).lower())

    def create_column(self, table: str, body: Mapping[str, Any]) -> None:
        """A column (``*AttributeMetadata`` body) on ``table``. Lookups are made as
        relationships instead (:meth:`create_relationship`)."""
        path = f"EntityDefinitions(LogicalName={key_literal(table)})/Attributes"
        self._metadata_write(path, body, table)

    def create_alternate_key(self, table: str, body: Mapping[str, Any]) -> None:
        """An alternate key; usable once its index job is Active (:meth:`wait_for_key`)."""
        self._metadata_write(
            f"EntityDefinitions(LogicalName={key_literal(table)})/Keys", body, table
        )

    def create_global_choice(self, body: Mapping[str, Any]) -> None:
        self._metadata_write("GlobalOptionSetDefinitions", body, None)

    def insert_choice_option(self, table: str, column: str, option: ChoiceOption) -> None:
        """One more option on a local choice column (the ``InsertOptionValue`` action)."""
        self._insert_option(insert_option_body(table, column, option), table)

    def _insert_option(self, body: Mapping[str, Any], table: str | None) -> None:
        """``InsertOptionValue`` takes the solution in its body, not only in the header."""
        if self.solution:
            body = {"SolutionUniqueName": self.solution, **body}
        self._metadata_write("InsertOptionValue", body, table)

    def create_relationship(self, body: Mapping[str, Any], *, referencing: str = "") -> None:
        """A one-to-many relationship with its lookup column (``RelationshipDefinitions``,
        see :func:`metadata.lookup_relationship_body`)."""
        self._metadata_write(
            "RelationshipDefinitions", body, referencing or body.get("ReferencingEntity") or None
        )

    def create_metadata(
        self, kind: str, body: Mapping[str, Any], *, table: str | None = None
    ) -> None:
        """Metadata writes by kind, as ``provision`` plans them: table, column, key, choice,
        relationship, option (an ``InsertOptionValue`` body)."""
        if kind == "table":
            self.create_table(body)
        elif kind == "column":
            self.create_column(table or "", body)
        elif kind == "key":
            self.create_alternate_key(table or "", body)
        elif kind == "choice":
            self.create_global_choice(body)
        elif kind == "relationship":
            self.create_relationship(body, referencing=table or "")
        elif kind == "option":
            self._insert_option(body, table or None)
        else:
            raise ValueError(f"unknown metadata kind {kind!r}")

    def wait_for_key(
        self,
        table: str,
        columns: Sequence[str],
        *,
        timeout: float = 600.0,
        poll: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> AlternateKey:
        """Wait until the key's index job is Active (Pending → InProgress → Active | Failed)."""
        deadline = clock() + timeout
        while True:
            found = self.table(table, refresh=True)
            key = found.key_on(*columns) if found else None
            if key is None:
                raise NotFoundError(f"no alternate key on {table}({', '.join(columns)})")
            if key.usable:
                return key
            if key.status == "Failed":
                raise PermanentError(f"alternate key {key.schema_name} on {table}: index failed")
            if clock() >= deadline:
                raise TransientError(f"alternate key {key.schema_name} still {key.status}")
            self.sleep(poll)


def _chunked(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
