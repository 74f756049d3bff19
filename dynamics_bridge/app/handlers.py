"""Azure-Functions-style handlers: thin functions from a request or message to a response.

Webhook intake authenticates the raw bytes, parses them into canonical events and queues them; it
never calls the CRM, so a provider gets its answer in milliseconds. On any answer but 202 nothing
is queued, and the provider keeps (and retries) the callback, so nothing is lost. The answers are
202, 400, 401, 413, 415 and 503, and nothing else: cheap checks come first (Content-Length before
the body is read, size, content type, authentication headers), bounded JSON parsing after them.

The queue handler applies one message the way the Functions host delivers it (the host owns the
message: it deletes it when the handler returns and redelivers it when the handler raises); the
file handler checks a whole Bankgirot file before queueing any of it, and answers with a receipt.
Both leave a run in the run history (:mod:`dynamics_bridge.app.runs`); a webhook leaves none,
its path calls nothing but the queue. None of them needs ``azure.functions``:
``deploy/azure-functions/function_app.py`` only adapts.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from dynamics_bridge.app.ingest import MandateTasks, ingest_file
from dynamics_bridge.app.runs import RunRecorder, queue_counts, queue_errors
from dynamics_bridge.app.sync import SyncReport, process_message
from dynamics_bridge.errors import (
    AuthError,
    BridgeError,
    ConfigError,
    InputError,
    PayloadTooLargeError,
    TransientError,
    UnsupportedMediaTypeError,
)
from dynamics_bridge.hosting import forwarded_client_ip
from dynamics_bridge.logs import log_context
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.personnummer import mask_text
from dynamics_bridge.queue import EventQueue, ReceivedMessage, open_queue
from dynamics_bridge.settings import BankgirotSettings, Settings, load_settings
from dynamics_bridge.sources import billogram, swish
from dynamics_bridge.sources._common import JsonLimits, WebhookParse

if TYPE_CHECKING:
    from dynamics_bridge.app.wiring import Services
    from dynamics_bridge.ops.port import OpsStore
    from dynamics_bridge.pipeline import Pipeline

__all__ = [
    "PROVIDERS",
    "FileReceipt",
    "WebhookResult",
    "handle_bankgirot_file",
    "handle_queue_message",
    "handle_webhook",
    "handle_webhook_request",
]

log = logging.getLogger("dynamics_bridge.intake")
sync_log = logging.getLogger("dynamics_bridge.sync")

PROVIDERS = ("swish", "billogram")

#: A body, or how to read it: the Functions adapter passes ``req.get_body`` so a request whose
#: Content-Length is over the limit is refused without the body being touched.
Body = bytes | Callable[[], bytes]

_DIGITS = re.compile(r"[0-9]+", re.ASCII)


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What the HTTP layer answers: a status and a small JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


def handle_webhook(
    provider: str,
    body: Body,
    headers: Mapping[str, str],
    client_ip: str | None = None,
    *,
    settings: Settings | None = None,
    queue: EventQueue | None = None,
    swish_api: swish.SwishApi | None = None,
) -> WebhookResult:
    """Verify, parse and queue one provider callback. See the README for the answers."""
    started = time.perf_counter()
    try:
        settings = settings or load_settings()
        if provider not in PROVIDERS:
            raise InputError(f"unknown provider {provider!r}", field="provider")
        parsed = _verify_and_parse(provider, body, headers, client_ip, settings, swish_api)
        if parsed.events:
            # The queue encodes every event before it sends the first, so an event too large
            # for a message refuses the callback with nothing queued.
            target = queue if queue is not None else open_queue(settings.queue)
            target.send(parsed.events)
    except AuthError as exc:
        log.warning("webhook refused: %s", exc, extra={"provider": provider, "status": 401})
        return WebhookResult(401, {"status": "unauthorized"})
    except PayloadTooLargeError as exc:
        return _refused(provider, 413, "too_large", exc)
    except UnsupportedMediaTypeError as exc:
        return _refused(provider, 415, "unsupported_media_type", exc)
    except InputError as exc:
        return _refused(provider, 400, "invalid", exc)
    except BridgeError as exc:
        # TransientError, ConfigError (a Swish identifier not set), PermanentError (the Swish API
        # refused our certificate): the provider retries a 5xx, and a misconfigured app must not
        # swallow callbacks either.
        log.error("webhook not queued: %s", exc, extra={"provider": provider, "status": 503})
        return WebhookResult(503, {"status": "unavailable"})
    except Exception:  # a defect: answered 503 so the provider keeps the callback and retries
        log.exception(
            "webhook not queued: unexpected failure", extra={"provider": provider, "status": 503}
        )
        return WebhookResult(503, {"status": "unavailable"})
    duration_ms = round((time.perf_counter() - started) * 1000, 3)
    event_ids = [e.event_id for e in parsed.events]
    if parsed.ignored:
        log.info(
            "webhook accepted, ignored: %s",
            parsed.ignored,
            extra={"provider": provider, "status": 202, "duration_ms": duration_ms},
        )
    for event in parsed.events:
        with log_context(event_id=event.event_id):
            log.info(
                "event queued",
                extra={
                    "source": event.source.value,
                    "kind": event.kind.value,
                    "origin": event.origin,
                    "duration_ms": duration_ms,
                },
            )
    return WebhookResult(202, {"status": "accepted", "event_ids": event_ids})


def _verify_and_parse(
    provider: str,
    body: Body,
    headers: Mapping[str, str],
    client_ip: str | None,
    settings: Settings,
    swish_api: swish.SwishApi | None,
) -> WebhookParse:
    limit = settings.webhook.max_body_bytes
    _check_content_length(_single_header(headers, "Content-Length"), limit)
    raw = body() if callable(body) else body
    if len(raw) > limit:
        raise PayloadTooLargeError(f"body is {len(raw)} bytes, the limit is {limit}", field="body")
    _require_json(_single_header(headers, "Content-Type"))
    limits = JsonLimits(settings.webhook.max_json_depth, settings.webhook.max_number_length)
    if provider == "swish":
        swish.authenticate(raw, headers, client_ip, settings.swish, limits=limits)
        if swish_api is None and settings.swish.confirm_with_api:
            # The wiring builds the client (Services.swish_api, one mTLS session per process);
            # a caller of this library function passes it.
            raise ConfigError(
                "BRIDGE_SWISH__CONFIRM_WITH_API is set but no Swish API client was given "
                "(handle_webhook_request passes Services.swish_api)"
            )
        return swish.parse_callback(raw, settings.swish, api=swish_api, limits=limits)
    billogram.authenticate(raw, headers, settings.billogram, limits=limits)
    return billogram.parse_callback(raw, settings.billogram, limits=limits)


def _single_header(headers: Mapping[str, str], name: str) -> str | None:
    """A framing header that must appear once; two spellings of it are a malformed request."""
    wanted = name.lower()
    found = [value for key, value in headers.items() if key.lower() == wanted]
    if len(found) > 1:
        raise InputError(f"header {name} appears {len(found)} times", field=name)
    return found[0] if found else None


def _check_content_length(value: str | None, limit: int) -> None:
    """Refuse by the declared size before the body is read (413), or a malformed one (400)."""
    if value is None:
        return  # chunked, or a direct call: the body's own length is checked next
    declared = value.strip()
    if not _DIGITS.fullmatch(declared):
        raise InputError(
            f"Content-Length is not a number of bytes: {value[:40]!r}", field="Content-Length"
        )
    if len(declared) > 15 or int(declared) > limit:  # no int() of a thousand digits
        shown = declared if len(declared) <= 15 else f"{declared[:15]}…"
        raise PayloadTooLargeError(
            f"Content-Length is {shown} bytes, the limit is {limit}", field="Content-Length"
        )


def _require_json(content_type: str | None) -> None:
    if content_type is None:
        return  # some senders omit it; the body must still parse as JSON
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"content type {media_type!r} is not JSON", field="Content-Type"
        )


def _refused(provider: str, status: int, word: str, exc: InputError) -> WebhookResult:
    log.warning("webhook refused: %s", exc, extra={"provider": provider, "status": status})
    body: dict[str, Any] = {"status": word, "error": exc.detail}
    if exc.field:
        body["field"] = exc.field
    return WebhookResult(status, body)


def handle_webhook_request(
    provider: str, body: Body, headers: Mapping[str, str], services: Services
) -> WebhookResult:
    """A webhook as the HTTP function receives it: the caller's address from the platform's
    ``X-Forwarded-For``, settings and queue shared by the worker process.

    ``body`` may be the request's ``get_body``: it is then called only after Content-Length has
    been checked against BRIDGE_WEBHOOK__MAX_BODY_BYTES."""
    try:
        settings, queue = services.settings, services.queue
        swish_api = services.swish_api if provider == "swish" else None
    except ConfigError as exc:
        log.error("webhook not queued: %s", exc, extra={"provider": provider, "status": 503})
        return WebhookResult(503, {"status": "unavailable"})
    client_ip = forwarded_client_ip(headers)
    return handle_webhook(
        provider, body, headers, client_ip, settings=settings, queue=queue, swish_api=swish_api
    )


def handle_queue_message(
    body: bytes | str,
    *,
    message_id: str,
    dequeue_count: int,
    pipeline: Pipeline,
    queue: EventQueue,
    max_dequeue_count: int,
    ops: OpsStore | None = None,
) -> SyncReport:
    """Apply one message delivered by the Functions host, which owns it.

    Written, duplicate and stale events are done; unmatched and failed-for-good ones are copied
    to the poison queue with their reason. A passing failure raises TransientError, so the host
    redelivers the message after ``visibilityTimeout``; on attempt ``max_dequeue_count`` it is
    settled here instead, every event with its reason, and nothing is left for the host to move.

    Each delivery leaves one run in ``ops`` (kind ``queue``, name ``sync``), counted
    ``<source>/<kind>/<outcome>`` (see :func:`dynamics_bridge.app.runs.queue_counts`).
    """
    started = time.perf_counter()
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    message = ReceivedMessage.from_raw(message_id, "", dequeue_count, text)
    with RunRecorder("queue", "sync", ops) as run:
        run.detail["message"] = message_id
        if dequeue_count > 1:
            run.detail["attempt"] = f"{dequeue_count} of {max_dequeue_count}"
        report = process_message(message, pipeline, queue, max_dequeue_count=max_dequeue_count)
        events: list[PaymentEvent] = []
        if len(report.results) < (len(message.envelope.events) if message.envelope else 0):
            try:  # some events have no outcome of their own: count them from the message
                events = message.events()
            except InputError:
                events = []
        run.add_counts(queue_counts(report, events))
        for reason in queue_errors(report, events):
            run.error(reason)
        outcome = "redeliver" if report.left else "settled"
        sync_log.info(
            "message %s: %s",
            message_id,
            outcome,
            extra={
                "outcome": outcome,
                "count": sum(report.outcomes.values()),
                "event_ids": [str(e.get("event_id")) for e in message.envelope.events]
                if message.envelope
                else [],
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            },
        )
        if report.left:
            raise TransientError(
                f"message {message_id}: attempt {dequeue_count} of {max_dequeue_count} failed "
                "for a passing reason; the host delivers it again"
            )
    return report


@dataclass(frozen=True, slots=True)
class FileReceipt:
    """What became of one Bankgirot file: queued (with its totals) or rejected (with where)."""

    name: str
    status: Literal["queued", "rejected"]
    report: dict[str, Any] | None = None
    error: str | None = None
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "status": self.status}
        if self.report is not None:
            body["report"] = self.report
        if self.error is not None:
            body["error"] = self.error
            body["location"] = self.location
        return body


def handle_bankgirot_file(
    stream: BinaryIO,
    name: str,
    *,
    settings: BankgirotSettings,
    queue: EventQueue,
    ops: OpsStore | None = None,
    tasks: Callable[[], MandateTasks | None] | None = None,
) -> FileReceipt:
    """Check a whole Autogiro or BgMax file, then queue its events; ``tasks`` makes a Dynamics
    task per failed mandate request (retention.yaml advisor.failed_mandates).

    A bad file is rejected with the place (``FILE:LINE``) and nothing from it is queued; the
    file itself stays where it was put, the durable copy. A queue failure raises (the trigger
    delivers the file again; event ids are deterministic, so a repeat becomes duplicates).
    Either way the file leaves one run in ``ops`` (see :func:`ingest_file`).
    """
    started = time.perf_counter()
    try:
        report = ingest_file(
            stream, queue=queue, settings=settings, name=name, ops=ops, tasks=tasks
        )
    except InputError as exc:
        log.error(
            "file rejected: %s",
            exc,
            extra={"origin": name, "outcome": "rejected", "status": 422},
        )
        return FileReceipt(name, "rejected", error=mask_text(exc.detail), location=exc.location)
    except ConfigError as exc:
        # Retrying cannot help until an admin sets what is missing; the file stays where it was
        # put, and the receipt says what to set before it is delivered again.
        log.error(
            "file not ingested: %s",
            exc,
            extra={"origin": name, "outcome": "rejected", "status": 503},
        )
        return FileReceipt(name, "rejected", error="; ".join(exc.problems), location="settings")
    log.info(
        "file queued: %d event(s)",
        report.queued,
        extra={
            "origin": name,
            "outcome": "queued",
            "count": report.queued,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )
    return FileReceipt(name, "queued", report=report.to_json())
