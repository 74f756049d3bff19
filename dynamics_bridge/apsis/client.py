"""APSIS One REST client for one account, keyspace and section, over one injected session.

Every request is paced (account and profile windows, see :mod:`.pacing`), carries a shared
bearer token (one refresh-and-retry when APSIS rejects it), and retries 408/429/5xx and
connection failures with back-off that honours ``Retry-After``; a 429 pauses every worker of
the account. Event POSTs are the exception: APSIS has no idempotency key, so one that may have
been stored (timeout, dropped connection, 5xx) is not retried here (see :meth:`request`).
Identifiers here are APSIS discriminators; :mod:`.platform` maps our names to them.
Paths, bodies and status meanings follow reference apsis.md §3.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from dynamics_bridge.apsis.auth import TokenSource, shared_token_cache
from dynamics_bridge.apsis.models import ConsentResult, ImportResult
from dynamics_bridge.apsis.pacing import Pacer
from dynamics_bridge.apsis.policy import classify, is_gateway_denial
from dynamics_bridge.apsis.wire import (
    chunk_items,
    event_export_body,
    import_body,
    import_columns,
    import_csv_chunks,
    tag_patch,
)
from dynamics_bridge.errors import (
    AmbiguousError,
    ConfigError,
    InputError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.http_policy import RetryPolicy
from dynamics_bridge.retrying import call_with_retries
from dynamics_bridge.settings import ApsisSettings

__all__ = ["CHANNELS", "ApsisClient", "DefinitionKind"]

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
ACCEPT = "application/json, application/problem+json"
CHANNELS = {"email": "com.apsis1.channels.email", "sms": "com.apsis1.channels.sms"}
#: Import states from apsis.md §3.6; the first two end the wait.
IMPORT_DONE = ("completed", "error")

DefinitionKind = Literal["attributes", "events", "tags"]


def _never_sent(exc: requests.RequestException) -> bool:
    """The connection was never made, so the request cannot have reached APSIS."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError)


def _q(segment: str) -> str:
    """A path segment, URL-encoded (``andy@example.com`` → ``andy%40example.com``)."""
    return quote(segment, safe="")


class ApsisClient:
    """The APSIS One calls the bridge makes; thread-safe, so workers may share one instance."""

    def __init__(
        self,
        settings: ApsisSettings,
        session: requests.Session,
        tokens: TokenSource,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``settings`` is the ``BRIDGE_APSIS__*`` section; ``session`` the one network seam."""
        if not settings.section:
            raise ConfigError("BRIDGE_APSIS__SECTION: required (the section discriminator)")
        self.settings = settings
        self.base = settings.base_url.rstrip("/")
        self.keyspace = settings.keyspace
        self.section: str = settings.section
        self.session = session
        self.tokens = tokens
        self.pacer = Pacer(settings.account_rate, settings.profile_rate, clock=clock)
        self.import_pacer = Pacer(settings.import_rate, clock=clock)
        self.export_pacer = Pacer(settings.event_export_rate, clock=clock)
        self.clock = clock
        self.sleep = sleep
        self._definitions: dict[str, list[dict[str, Any]]] = {}
        self._definitions_lock = threading.Lock()
        #: Requests sent to the API (retries included), for logs and the demo.
        self.requests_sent = 0

    @classmethod
    def from_settings(
        cls,
        settings: ApsisSettings,
        session: requests.Session | None = None,
        *,
        tokens: TokenSource | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> ApsisClient:
        """A client with a new session and the token cache shared per API key."""
        session = session or requests.Session()
        return cls(
            settings,
            session,
            tokens or shared_token_cache(settings, session),
            clock=clock,
            sleep=sleep,
        )

    @property
    def retry(self) -> RetryPolicy:
        """Every failure uses a try, a 429 too; backoff from 0.5 s (reference apsis.md §4)."""
        return RetryPolicy(
            self.settings.max_attempts, base=0.5, cap=self.settings.backoff_cap_seconds
        )

    # -- transport ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content_type: str = JSON,
        profile_key: str | None = None,
        allow: Iterable[int] = (),
        idempotent: bool = True,
    ) -> requests.Response:
        """One API call with pacing, auth and retries. Statuses in ``allow`` are answers, not
        errors (409 on create means "already exists").

        ``idempotent=False`` (event POSTs: APSIS has no idempotency key) retries only what
        APSIS surely did not process: 401 (new token), 408, 429 and a connection never made.
        After a timeout, a dropped connection or a 5xx the events may have been stored, so the
        call fails with :class:`AmbiguousError` (transient) instead of sending them
        again at once; the caller's outbox decides (it sends them again on its next sweep)."""
        allowed = set(allow)
        data = None
        if json_body is not None:
            data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
        refreshed = [False]  # one new token per call, not per try

        def attempt() -> requests.Response:
            while True:
                if (wait := self.pacer.reserve(profile_key)) > 0:
                    self.sleep(wait)
                token = self.tokens.token()
                headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
                if data is not None:
                    headers["Content-Type"] = content_type
                self.requests_sent += 1
                try:
                    response = self.session.request(
                        method,
                        self.base + path,
                        data=data,
                        headers=headers,
                        timeout=self.settings.timeout_seconds,
                    )
                except (requests.ConnectionError, requests.Timeout) as exc:
                    if not idempotent and not _never_sent(exc):
                        raise AmbiguousError(
                            f"APSIS {method} {path.rsplit('/', 1)[-1]}: {type(exc).__name__}; "
                            "it may have been stored, so it is not sent again now"
                        ) from None
                    raise TransientError(f"APSIS unreachable: {type(exc).__name__}") from None
                status = response.status_code
                if status < 400 or status in allowed:
                    return response
                if not refreshed[0] and self._token_rejected(status, response.content):
                    refreshed[0] = True
                    self.tokens.invalidate(token)
                    continue
                error = classify(status, response.headers, response.content)
                assert error is not None
                if not idempotent and status >= 500:
                    raise AmbiguousError(
                        f"{error.message}; it may have been stored, so it is not sent again now",
                        status=status,
                        request_id=error.request_id,
                    )
                raise error

        return call_with_retries(
            attempt,
            self.retry,
            sleep=self.sleep,
            hold=self.pacer.pause,  # the limit is the account's: the pacer holds everyone
            on_retry=lambda error, tries: self._log_retry(error, tries, method),
        )

    def _token_rejected(self, status: int, body: bytes) -> bool:
        return status == 401 or (
            self.settings.refresh_on_forbidden and is_gateway_denial(status, body)
        )

    def _log_retry(self, error: TransientError, tries: int, method: str) -> None:
        # A 429 honoured is the limit working as designed; anything else is worth a warning.
        log.log(
            logging.INFO if isinstance(error, ThrottledError) else logging.WARNING,
            "APSIS %s failed, retrying (attempt %d of %d)",
            method,
            tries + 1,
            self.settings.max_attempts,
            extra={"provider": "apsis", "status": error.status, "reason": error.message},
        )

    def _profile(self, key: str, *, v2: bool = False) -> str:
        return f"{'/v2' if v2 else ''}/audience/keyspaces/{_q(self.keyspace)}/profiles/{_q(key)}"

    def _in_section(self, key: str, what: str, *, v2: bool = False) -> str:
        return f"{self._profile(key, v2=v2)}/sections/{_q(self.section)}/{what}"

    # -- definitions -------------------------------------------------------------------------

    def definitions(self, kind: DefinitionKind, *, refresh: bool = False) -> list[dict[str, Any]]:
        """The section's attribute, event or tag definitions (cached: they change rarely)."""
        with self._definitions_lock:
            if refresh or kind not in self._definitions:
                path = f"/audience/sections/{_q(self.section)}/{kind}"
                items = self.request("GET", path).json().get("items", [])
                self._definitions[kind] = [i for i in items if isinstance(i, dict)]
            return self._definitions[kind]

    def version_id(self, kind: Literal["attributes", "events"], discriminator: str) -> str:
        """The current (not deprecated) version id of an attribute or event type."""
        for refresh in (False, True):
            for item in self.definitions(kind, refresh=refresh):
                if item.get("discriminator") != discriminator:
                    continue
                current = [v for v in item.get("versions", []) if v.get("deprecated_at") is None]
                if current:
                    return str(current[-1]["id"])
        raise ConfigError(
            f"APSIS section {self.section} has no current {kind[:-1]} {discriminator!r}"
        )

    # -- profiles ----------------------------------------------------------------------------

    def create_profile(self, key: str) -> bool:
        """Create the profile; False when it already existed (409 is success here)."""
        path = f"/audience/keyspaces/{_q(self.keyspace)}/sections/{_q(self.section)}/profiles"
        response = self.request(
            "POST", path, json_body={"profile_key": key}, profile_key=key, allow=(409,)
        )
        return response.status_code != 409

    def update_attributes(self, key: str, values: Mapping[str, Any]) -> None:
        """v2 JSON Merge Patch keyed by discriminator; ``None`` clears. The profile must exist."""
        self.request(
            "PATCH",
            self._in_section(key, "attributes", v2=True),
            json_body=dict(values),
            content_type=MERGE_PATCH,
            profile_key=key,
        )

    def set_tags(self, key: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Add and remove tags (discriminators) in one merge patch."""
        body = tag_patch(add, remove, self.settings.tag_body_format)
        if body:
            self.request(
                "PATCH",
                self._in_section(key, "tags"),
                json_body=body,
                content_type=MERGE_PATCH,
                profile_key=key,
            )

    def post_events(self, key: str, items: Sequence[Mapping[str, Any]]) -> int:
        """Post ``{"event_time", "version_id", "data"}`` items for one profile, as few requests
        as the size and count caps allow; returns the number of requests."""
        chunks = chunk_items(
            [dict(i) for i in items],
            max_items=self.settings.events_per_request,
            max_bytes=self.settings.max_body_bytes,
        )
        for chunk in chunks:
            self.request(
                "POST",
                self._in_section(key, "events"),
                json_body={"items": chunk},
                profile_key=key,
                idempotent=False,
            )
        return len(chunks)

    def set_consent(
        self, key: str, topic: str, channel: str, *, opt_in: bool, reason: str = ""
    ) -> ConsentResult:
        """Consent 2.0: 201 created, 204 changed, 409 "already so" (not an error)."""
        body: dict[str, Any] = {
            "topic_discriminator": topic,
            "channel_discriminator": CHANNELS.get(channel, channel),
            "type": "opt-in" if opt_in else "opt-out",
        }
        if reason:
            body["reason"] = reason
        body["source"] = self.settings.consent_source
        response = self.request(
            "POST",
            self._in_section(key, "consents", v2=True),
            json_body=body,
            profile_key=key,
            allow=(409,),
        )
        return {201: "created", 409: "unchanged"}.get(response.status_code, "updated")  # type: ignore[return-value]

    def delete_profile(self, key: str) -> bool:
        """GDPR erase (irreversible); False when there was no such profile (already erased)."""
        response = self.request("DELETE", self._profile(key), profile_key=key, allow=(404,))
        return response.status_code != 404

    def lock_profile(self, key: str) -> None:
        """Erase and block re-creation on every keyspace (irreversible)."""
        self.request("PUT", self._profile(key) + "/locks", profile_key=key)

    # -- bulk import -------------------------------------------------------------------------

    def create_import(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Start an import; the answer holds ``import_id``, ``file_upload_url`` and the form
        fields ``file_upload_body`` for the upload."""
        if (wait := self.import_pacer.reserve()) > 0:
            self.sleep(wait)
        path = f"/v2/audience/sections/{_q(self.section)}/imports"
        answer = self.request("POST", path, json_body=dict(body)).json()
        if not isinstance(answer, dict) or not answer.get("import_id"):
            raise PermanentError("APSIS created an import without an import_id")
        return answer

    def upload_import_file(self, url: str, fields: Mapping[str, Any], csv_bytes: bytes) -> None:
        """POST the CSV to the pre-signed URL as a form, with every given field and no token."""
        form = {str(k): str(v) for k, v in fields.items()}

        def attempt() -> None:
            try:
                response = self.session.post(
                    url,
                    data=form,
                    files={"file": ("profiles.csv", csv_bytes, "text/csv")},
                    timeout=self.settings.timeout_seconds,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"upload unreachable: {type(exc).__name__}") from None
            error = classify(response.status_code, response.headers, response.content)
            if error is not None:
                raise error

        # A pre-signed upload is outside the API's limits: a 429 here waits like any failure.
        call_with_retries(attempt, self.retry, sleep=self.sleep)

    def import_status(self, import_id: str) -> str:
        """``queued``, ``in_progress``, ``waiting_for_file``, ``completed`` or ``error``."""
        path = f"/audience/sections/{_q(self.section)}/imports/{_q(import_id)}"
        answer = self.request("GET", path).json()
        result = answer.get("result") if isinstance(answer, dict) else None
        status = result.get("status") if isinstance(result, dict) else None
        if not isinstance(status, str):
            raise PermanentError(f"APSIS import {import_id}: no result.status in the answer")
        return status

    def wait_for_import(self, import_id: str) -> str:
        """Poll until the import completes or fails; TransientError when it takes too long."""
        deadline = self.clock() + self.settings.import_timeout_seconds
        while (status := self.import_status(import_id)) not in IMPORT_DONE:
            if self.clock() >= deadline:
                raise TransientError(
                    f"APSIS import {import_id} still {status!r} after "
                    f"{self.settings.import_timeout_seconds:.0f} s"
                )
            self.sleep(self.settings.import_poll_seconds)
        return status

    def prepare_import(
        self, rows: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> tuple[dict[str, Any], list[tuple[bytes, list[str]]]]:
        """The create-import body and the CSV files (each with the keys it carries) for
        ``(key, {discriminator: value})`` rows; files stay under ``max_import_bytes``."""
        discriminators = list(dict.fromkeys(d for _, values in rows for d in values))
        columns = import_columns(discriminators)
        version_ids = {columns[d]: self.version_id("attributes", d) for d in discriminators}
        files = list(import_csv_chunks(rows, columns, self.settings.max_import_bytes))
        return import_body(self.keyspace, version_ids), files

    def run_import(self, body: Mapping[str, Any], csv_bytes: bytes, rows: int) -> ImportResult:
        """One import end to end: create it, upload the file, poll until it is done."""
        answer = self.create_import(body)
        import_id = str(answer["import_id"])
        self.upload_import_file(
            str(answer["file_upload_url"]), answer.get("file_upload_body") or {}, csv_bytes
        )
        status = self.wait_for_import(import_id)
        log.info(
            "APSIS import %s %s",
            import_id,
            status,
            extra={"provider": "apsis", "count": rows, "outcome": status},
        )
        return ImportResult(import_id, status, rows)

    def import_profiles(self, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[ImportResult]:
        """Bulk-write attributes, one import after another so no more than one is pending."""
        body, files = self.prepare_import(rows)
        return [self.run_import(body, csv_bytes, len(keys)) for csv_bytes, keys in files]

    # -- event export (read-back) ------------------------------------------------------------

    def export_events(
        self, event_discriminators: Iterable[str], start: datetime, end: datetime
    ) -> Any:
        """The section's events of these types between ``start`` and ``end`` (event time), as
        APSIS's export file (parsed JSON): request the export, then poll its URL until the file
        is there. Request fields and file layout are unverified (see :mod:`.wire`).

        The poll URL must be on the configured APSIS host: the bearer token goes nowhere else.
        TransientError when the export does not come within ``export_timeout_seconds``, fails
        at APSIS (503 on the poll) or is gone (410): the caller asks again later."""
        body = event_export_body(
            self.section, self.settings.event_export_attribute, event_discriminators, start, end
        )
        if (wait := self.export_pacer.reserve()) > 0:
            self.sleep(wait)
        response = self.request("POST", self.settings.event_export_path, json_body=body)
        path = self._poll_path(response)
        deadline = self.clock() + self.settings.event_export_timeout_seconds
        while True:
            polled = self.request("GET", path, allow=(404, 410, 503))
            if polled.status_code < 300:
                try:
                    return polled.json()
                except ValueError:
                    raise InputError("APSIS's event export is not JSON", field="export") from None
            if polled.status_code in (410, 503):
                raise TransientError(
                    f"APSIS event export {'gone' if polled.status_code == 410 else 'failed'} "
                    f"({polled.status_code}): asked again at the next sweep",
                    status=polled.status_code,
                )
            if self.clock() >= deadline:
                raise TransientError(
                    "APSIS event export not ready after "
                    f"{self.settings.event_export_timeout_seconds:.0f} s"
                )
            self.sleep(self.settings.event_export_poll_seconds)

    def _poll_path(self, response: requests.Response) -> str:
        """The poll URL of a requested export, as a path under the base URL [unverified: the
        answer's ``poll_url`` field, else its ``Location`` header]."""
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {}
        url = answer.get("poll_url") if isinstance(answer, dict) else None
        url = url or response.headers.get("Location")
        if not isinstance(url, str) or not url:
            raise InputError("APSIS answered an event export without a poll URL", field="poll_url")
        base, found = urlsplit(self.base), urlsplit(url)
        if found.scheme or found.netloc:
            if (found.scheme, found.netloc) != (base.scheme, base.netloc):
                raise InputError(
                    f"the export's poll URL is on {found.netloc}, not on {base.netloc}: refused "
                    "(the bearer token goes to APSIS only)",
                    field="poll_url",
                )
            url = url[len(f"{found.scheme}://{found.netloc}") :]
        prefix = base.path.rstrip("/")
        if prefix and url.startswith(prefix + "/"):
            url = url[len(prefix) :]
        return url if url.startswith("/") else "/" + url
