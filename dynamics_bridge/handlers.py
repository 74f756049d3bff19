"""Azure-Functions-style handlers: thin functions from a request or message to a response.

Webhook intake authenticates the raw bytes, parses them into canonical events and queues them; it
never calls the CRM, so a provider gets its answer in milliseconds. On any answer but 202 nothing
is queued, and the provider keeps (and retries) the callback, so nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dynamics_bridge.errors import (
    AuthError,
    BridgeError,
    ConfigError,
    InputError,
    PayloadTooLargeError,
    TransientError,
    UnsupportedMediaTypeError,
)
from dynamics_bridge.logs import log_context
from dynamics_bridge.queue import EventQueue, open_queue
from dynamics_bridge.settings import Settings, load_settings
from dynamics_bridge.sources import billogram, swish
from dynamics_bridge.sources._common import WebhookParse, header

__all__ = ["PROVIDERS", "WebhookResult", "handle_webhook"]

log = logging.getLogger("dynamics_bridge.intake")

PROVIDERS = ("swish", "billogram")


@dataclass(frozen=True, slots=True)
class WebhookResult:
    """What the HTTP layer answers: a status and a small JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)


def handle_webhook(
    provider: str,
    body: bytes,
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
    except (TransientError, ConfigError) as exc:
        # The provider retries a 5xx; a misconfigured app must not swallow callbacks either.
        log.error("webhook not queued: %s", exc, extra={"provider": provider, "status": 503})
        return WebhookResult(503, {"status": "unavailable"})
    except BridgeError as exc:
        log.error("webhook not queued: %s", exc, extra={"provider": provider, "status": 500})
        return WebhookResult(500, {"status": "error"})
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
    body: bytes,
    headers: Mapping[str, str],
    client_ip: str | None,
    settings: Settings,
    swish_api: swish.SwishApi | None,
) -> WebhookParse:
    limit = settings.webhook.max_body_bytes
    if len(body) > limit:
        raise PayloadTooLargeError(f"body is {len(body)} bytes, the limit is {limit}", field="body")
    _require_json(header(headers, "Content-Type"))
    if provider == "swish":
        swish.authenticate(body, headers, client_ip, settings.swish)
        if swish_api is None and settings.swish.confirm_with_api:
            from dynamics_bridge.swish_api import SwishApiClient

            swish_api = SwishApiClient.from_settings(settings.swish)
        return swish.parse_callback(body, settings.swish, api=swish_api)
    billogram.authenticate(body, headers, settings.billogram)
    return billogram.parse_callback(body, settings.billogram)


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
