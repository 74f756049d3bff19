"""Dataverse Web API client: one injected ``requests.Session``, retries and pacing per app user.

A 429 pauses *every* worker of that app user until Retry-After has passed (the budget is per
user); concurrency per app user is bounded; transient failures retry with backoff and jitter
(tenacity). Errors are classified by :func:`dynamics_bridge.dataverse.policy.classify`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from dynamics_bridge.dataverse.batch import (
    BatchPart,
    BatchRequest,
    ChangeSet,
    build_batch,
    parse_batch_response,
)
from dynamics_bridge.dataverse.policy import classify, sleep_for
from dynamics_bridge.errors import BridgeError, ThrottledError, TransientError

__all__ = ["AppUserGate", "DataverseClient", "key_literal", "odata_in"]


def key_literal(value: str | int) -> str:
    """An OData literal: numbers bare, strings single-quoted with inner quotes doubled."""
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def odata_in(column: str, values: Sequence[str]) -> str:
    """``$filter`` for many values of one column in one request."""
    listed = ",".join(key_literal(v) for v in values)
    return f"Microsoft.Dynamics.CRM.In(PropertyName='{column}',PropertyValues=[{listed}])"


@dataclass
class AppUserGate:
    """What all workers of one app user share: a pause-until time and a concurrency bound."""

    max_concurrency: int = 8
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    paused_until: float = 0.0
    throttled: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: threading.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(min(self.max_concurrency, 52))

    def pause(self, seconds: float) -> None:
        with self._lock:
            self.throttled += 1
            self.paused_until = max(self.paused_until, self.clock() + seconds)

    def wait(self) -> None:
        while (remaining := self.paused_until - self.clock()) > 0:
            self.sleep(remaining)

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        with self._slots:
            self.wait()
            yield


class DataverseClient:
    """The Web API calls the rest of the tool needs, for one app user."""

    def __init__(
        self,
        base_url: str,
        session: requests.Session,
        token: Callable[[], str],
        *,
        gate: AppUserGate | None = None,
        api_version: str = "v9.2",
        extra_headers: dict[str, str] | None = None,
        max_attempts: int = 6,
        timeout: float = 60.0,
        page_size: int = 5000,
        keys_per_query: int = 100,
    ) -> None:
        self.root = f"{base_url.rstrip('/')}/api/data/{api_version}/"
        self.root_path = f"/api/data/{api_version}/"
        self.session = session
        self.token = token
        self.gate = gate or AppUserGate()
        self.extra_headers = extra_headers or {}
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.page_size = page_size
        self.keys_per_query = keys_per_query
        self.requests_sent = 0
        self._metadata: dict[str, Any] = {}

    # -- transport ---------------------------------------------------------------------------

    def _headers(self, extra: dict[str, str] | None, *, write: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.token()}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            "If-None-Match": "null",
        }
        if write:
            headers.update(self.extra_headers)
        headers.update(extra or {})
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """One call with retries: 429 pauses the app user, 5xx and connection errors back off."""

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = getattr(exc, "retry_after", None)
            return (
                0.0
                if isinstance(exc, ThrottledError)
                else sleep_for(state.attempt_number, retry_after)
            )

        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.max_attempts),
            wait=wait,
            sleep=self.gate.sleep,
            reraise=True,
        )
        return retrying(self._send, method, path, params, json_body, data, headers)

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        json_body: Any,
        data: bytes | None,
        headers: dict[str, str] | None,
    ) -> requests.Response:
        url = path if path.startswith("http") else self.root + path
        sent = self._headers(headers, write=method != "GET")
        if json_body is not None:
            sent["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        with self.gate.turn():
            self.requests_sent += 1
            try:
                response = self.session.request(
                    method, url, params=params, data=data, headers=sent, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"Dataverse unreachable: {type(exc).__name__}") from exc
        if response.status_code < 400:
            return response
        error = classify(
            response.status_code,
            response.headers,
            response.content,
            create_only=sent.get("If-None-Match") == "*",
            conditional=sent.get("If-Match", "*") != "*",
        )
        assert error is not None
        if isinstance(error, ThrottledError):
            self.gate.pause(error.retry_after or 5.0)
        raise error

    # -- reads -------------------------------------------------------------------------------

    def query(
        self,
        entity_set: str,
        *,
        select: Sequence[str] = (),
        filter: str | None = None,
        orderby: str | None = None,
        top: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every row, following ``@odata.nextLink`` with ``Prefer: odata.maxpagesize``."""
        params: dict[str, str] | None = {}
        assert params is not None
        if select:
            params["$select"] = ",".join(select)
        if filter:
            params["$filter"] = filter
        if orderby:
            params["$orderby"] = orderby
        if top:
            params["$top"] = str(top)
        prefer = {"Prefer": f"odata.maxpagesize={self.page_size}"}
        url: str | None = entity_set
        while url:
            body = self.request("GET", url, params=params, headers=prefer).json()
            yield from body.get("value", [])
            url, params = body.get("@odata.nextLink"), None

    def rows_by_values(
        self, entity_set: str, column: str, values: Sequence[str], select: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """Rows whose ``column`` is one of ``values`` (chunked to stay under URL limits)."""
        found: dict[str, dict[str, Any]] = {}
        wanted = list(dict.fromkeys(values))
        columns = list(dict.fromkeys([column, *select]))
        for start in range(0, len(wanted), self.keys_per_query):
            chunk = wanted[start : start + self.keys_per_query]
            for row in self.query(entity_set, select=columns, filter=odata_in(column, chunk)):
                found[str(row.get(column))] = row
        return found

    # -- writes ------------------------------------------------------------------------------

    def key_path(self, entity_set: str, key: dict[str, str | int]) -> str:
        inner = ",".join(f"{name}={key_literal(value)}" for name, value in key.items())
        return f"{entity_set}({quote(inner, safe=chr(39) + '=,()')})"

    def create_only(self, entity_set: str, key: dict[str, str | int], body: dict) -> None:
        """Create under an alternate key; a 412 (row exists) raises DuplicateKeyError."""
        self.request(
            "PATCH", self.key_path(entity_set, key), json_body=body, headers={"If-None-Match": "*"}
        )

    def update(
        self, entity_set: str, key: dict[str, str | int], body: dict, etag: str = "*"
    ) -> None:
        """Update only (404 when missing); with an ETag, 412 when someone changed the row."""
        self.request(
            "PATCH", self.key_path(entity_set, key), json_body=body, headers={"If-Match": etag}
        )

    def upsert(self, entity_set: str, key: dict[str, str | int], body: dict) -> None:
        self.request("PATCH", self.key_path(entity_set, key), json_body=body)

    def create(self, entity_set: str, body: dict) -> str | None:
        response = self.request("POST", entity_set, json_body=body)
        return response.headers.get("OData-EntityId")

    def batch(
        self, items: Sequence[BatchRequest | ChangeSet], *, continue_on_error: bool = True
    ) -> list[BatchPart]:
        """One ``$batch``: each part's status, headers and body (≤ 1,000 operations)."""
        count = sum(len(i.requests) if isinstance(i, ChangeSet) else 1 for i in items)
        if count > 1000:
            raise BridgeError(f"a $batch holds at most 1,000 operations, not {count}")
        for item in items:
            for req in item.requests if isinstance(item, ChangeSet) else [item]:
                if req.method != "GET":
                    req.headers = {**self.extra_headers, **req.headers}
        content_type, body = build_batch(items, root_path=self.root_path)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        response = self.request("POST", "$batch", data=body, headers=headers)
        return parse_batch_response(response.headers.get("Content-Type", ""), response.content)

    # -- change tracking and metadata ---------------------------------------------------------

    def changes(
        self, entity_set: str, select: Sequence[str], delta_link: str | None = None
    ) -> tuple[list[dict[str, Any]], list[str], str]:
        """Rows changed and ids deleted since ``delta_link`` (None: all rows), and the next link."""
        changed: list[dict[str, Any]] = []
        deleted: list[str] = []
        headers = {"Prefer": f"odata.track-changes,odata.maxpagesize={self.page_size}"}
        url: str = delta_link or entity_set
        params = None if delta_link else {"$select": ",".join(select)}
        while True:
            body = self.request("GET", url, params=params, headers=headers).json()
            for row in body.get("value", []):
                if "$deletedEntity" in str(row.get("@odata.context", "")):
                    deleted.append(str(row.get("id")))
                else:
                    changed.append(row)
            if body.get("@odata.nextLink"):
                url, params = body["@odata.nextLink"], None
                continue
            return changed, deleted, str(body.get("@odata.deltaLink", ""))

    def entity(self, logical_name: str, *, refresh: bool = False) -> dict[str, Any] | None:
        """A table's definition with its attributes (and choice options) and keys; cached."""
        if refresh or logical_name not in self._metadata:
            path = (
                f"EntityDefinitions(LogicalName={key_literal(logical_name)})"
                "?$expand=Attributes,Keys"
            )
            try:
                self._metadata[logical_name] = self.request("GET", path).json()
            except BridgeError as exc:
                if getattr(exc, "status", None) == 404:
                    self._metadata[logical_name] = None
                else:
                    raise
        return self._metadata[logical_name]

    def create_metadata(self, kind: str, body: dict, *, table: str | None = None) -> None:
        """Metadata writes for ``provision``: a table, a column, or an alternate key."""
        paths = {
            "table": "EntityDefinitions",
            "column": f"EntityDefinitions(LogicalName={key_literal(table or '')})/Attributes",
            "key": f"EntityDefinitions(LogicalName={key_literal(table or '')})/Keys",
        }
        self.request("POST", paths[kind], json_body=body)
        if table:
            self._metadata.pop(table, None)
