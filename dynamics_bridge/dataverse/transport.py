"""The Dataverse transport: one injected ``requests.Session``, auth, pacing per app user, retry
and ``$batch`` sending. The operation namespaces (:mod:`.rows`, :mod:`.changes`, :mod:`.schema`)
say *what* to ask; this module says *how* it travels (as ``data/_odata.py`` does in Microsoft's
Dataverse Python SDK).

Every request goes through :meth:`Transport.request`: an app user is leased from the
:class:`~dynamics_bridge.dataverse.pacing.AppUserPool` (least loaded, not paused), its token is
asked for (msal's cache makes that free), and the answer is classified by the pure
:func:`~dynamics_bridge.dataverse.policy.classify`. A 429 pauses *every* worker of that app user
until Retry-After has passed, and the retry goes to whichever user is free; transient failures
retry with exponential backoff and jitter (the one loop of :mod:`dynamics_bridge.retrying`);
a 401 gets one retry with a fresh token.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import requests

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
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserLane, AppUserPool
from dynamics_bridge.dataverse.policy import classify
from dynamics_bridge.errors import AmbiguousError, BridgeError, ThrottledError, TransientError
from dynamics_bridge.http_policy import DEFAULT_RETRY_AFTER, RetryPolicy, header
from dynamics_bridge.retrying import call_with_retries
from dynamics_bridge.settings import DataverseSettings

__all__ = ["MAX_BATCH_OPERATIONS", "Batches", "Transport"]

log = logging.getLogger(__name__)

MAX_BATCH_OPERATIONS = 1000
#: Backoff between transient failures: 1 s, 2 s, 4 s ... up to a minute (with jitter).
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0


class Transport:
    """How requests reach one Dataverse organisation over one or more app users."""

    def __init__(
        self, settings: DataverseSettings, session: requests.Session, pool: AppUserPool
    ) -> None:
        self.settings = settings
        self.session = session
        self.pool = pool
        self.root = f"{(settings.url or '').rstrip('/')}/api/data/{settings.api_version}/"
        self.root_path = f"/api/data/{settings.api_version}/"
        self.extra_headers = settings.behaviour_headers()
        self.sleep = pool.lanes[0].gate.sleep
        self.retry = RetryPolicy(
            settings.max_attempts,
            base=BACKOFF_BASE,
            cap=BACKOFF_CAP,
            throttle_budget=settings.max_throttle_seconds,
        )
        self.batch = Batches(self)
        self.requests_sent = 0
        self._count_lock = threading.Lock()

    @property
    def gate(self) -> AppUserGate:
        """The first app user's gate (the only one with a single-user client)."""
        return self.pool.lanes[0].gate

    @property
    def throttled(self) -> int:
        """429s seen over all app users."""
        return self.pool.throttled

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

        ``idempotent=False`` (a plain POST create): a timeout after sending raises
        :class:`~dynamics_bridge.errors.AmbiguousError`, never retried.
        ``behaviour``: add the opt-in ``MSCRM.*`` headers (default: on every write).
        ``multipart_errors``: hand back a 4xx multipart answer (a stopped ``$batch``).
        """
        url = path if path.startswith("http") else self.root + path
        wanted = dict(headers or {})
        if json_body is not None:
            wanted.setdefault("Content-Type", "application/json; charset=utf-8")
            data = json.dumps(json_body, ensure_ascii=False).encode("utf-8")
        behaviour = method != "GET" if behaviour is None else behaviour

        def attempt() -> requests.Response:
            return self._send(
                method, url, params, data, wanted, idempotent, behaviour, multipart_errors
            )

        def on_retry(error: TransientError, tries: int) -> None:
            log.debug(
                "Dataverse %s %s: %s; trying again",
                method,
                path.split("?")[0][:120],
                type(error).__name__,
                extra={"status": error.status, "request_id": error.request_id},
            )

        # A 429 was already held by the app user's gate in _send: every worker waits, this one
        # too. Only the thread's time slice is given up (sleep(0), as tenacity did): without it
        # bench/dataverse.py saw 206-401 429s a run instead of 132-194.
        return call_with_retries(
            attempt,
            self.retry,
            sleep=self.sleep,
            hold=lambda _: self.sleep(0),
            on_retry=on_retry,
        )

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        headers: dict[str, str],
        idempotent: bool,
        behaviour: bool,
        multipart_errors: bool,
    ) -> requests.Response:
        for fresh_token in (False, True):
            with self.pool.lease() as lane:
                sent = self._headers(lane, headers, behaviour=behaviour)
                with self._count_lock:
                    self.requests_sent += 1
                try:
                    response = self.session.request(
                        method,
                        url,
                        params=params,
                        data=data,
                        headers=sent,
                        timeout=self.settings.timeout_seconds,
                    )
                except requests.ConnectTimeout as exc:
                    raise TransientError(f"Dataverse unreachable: {type(exc).__name__}") from exc
                except (requests.ConnectionError, requests.Timeout) as exc:
                    kind = TransientError if idempotent else AmbiguousError
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
            and (header(response.headers, "Content-Type") or "").startswith("multipart/")
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
            pause = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER
            lane.gate.pause(pause)
            log.warning(
                "Dataverse throttled app user %s for %.1f s",
                lane.name,
                pause,
                extra={"status": 429, "code": error.code, "request_id": error.request_id},
            )
        raise error


class Batches:
    """``$batch`` sending, as ``client.batch``: up to 1,000 operations in one request."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def _prepared(
        self, items: Sequence[BatchRequest | ChangeSet]
    ) -> list[BatchRequest | ChangeSet]:
        """Copies with the opt-in headers on every write and a Content-ID on every change-set
        operation (unique in the batch), so a failure can be pinned on its operation."""
        extra = self.transport.extra_headers
        used = {r.content_id for r in operations(items) if r.content_id is not None}
        counter = 0

        def prepared(req: BatchRequest, in_change_set: bool) -> BatchRequest:
            nonlocal counter
            headers = {**extra, **req.headers} if req.method != "GET" else req.headers
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

    def execute(
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
        content_type, body = build_batch(prepared, root_path=self.transport.root_path)
        headers = {"Content-Type": content_type}
        if continue_on_error:
            headers["Prefer"] = "odata.continue-on-error"
        response = self.transport.request(
            "POST", "$batch", data=body, headers=headers, behaviour=False, multipart_errors=True
        )
        parts = parse_batch_response(response.headers.get("Content-Type", ""), response.content)
        return BatchResult(parts, correlate(prepared, parts))

    def parts(
        self, items: Sequence[BatchRequest | ChangeSet], *, continue_on_error: bool = True
    ) -> list[BatchPart]:
        """One ``$batch``: each part's status, headers and body, as they came back."""
        return self.execute(items, continue_on_error=continue_on_error).parts
