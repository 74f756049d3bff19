"""The queue message format: a versioned JSON envelope, base64 text, at most 64 KiB.

Base64 is what the Azure Functions queue trigger expects by default (``messageEncoding``), and
64 KiB is Azure Storage's message limit, so events are split across as many messages as needed.
Pure: no queue library here.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import PaymentEvent

__all__ = ["ENVELOPE_VERSION", "Envelope", "decode_message", "encode_messages"]

ENVELOPE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Envelope:
    """What one message carries. ``poison`` is set only on the poison queue."""

    events: list[dict[str, Any]]
    enqueued_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    poison: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": ENVELOPE_VERSION,
            "enqueued_at": self.enqueued_at,
            "events": self.events,
        }
        if self.poison is not None:
            body["poison"] = self.poison
        return body

    def parsed_events(self) -> list[PaymentEvent]:
        return [PaymentEvent.from_json(e) for e in self.events]


def _encode(envelope: Envelope) -> str:
    raw = json.dumps(envelope.to_json(), separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def encode_messages(
    events: Sequence[PaymentEvent | dict[str, Any]], *, max_bytes: int = 64 * 1024
) -> Iterator[str]:
    """Group events into as few messages as fit under ``max_bytes`` (encoded size)."""
    pending: list[dict[str, Any]] = []
    pending_size = 0
    # Envelope overhead is small and fixed; measure each event once, check the whole at the end.
    budget = (max_bytes * 3) // 4 - 200
    for event in events:
        item = event.to_json() if isinstance(event, PaymentEvent) else event
        size = len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode("utf-8")) + 1
        if size > budget:
            raise InputError(
                f"one event is {size} bytes, over the queue message limit", field="event"
            )
        if pending and pending_size + size > budget:
            yield _encode(Envelope(pending))
            pending, pending_size = [], 0
        pending.append(item)
        pending_size += size
    if pending:
        yield _encode(Envelope(pending))


def encode_envelope(envelope: Envelope) -> str:
    return _encode(envelope)


def decode_message(text: str | bytes) -> Envelope:
    """Base64 (or plain) JSON text → Envelope; anything else is an InputError naming the problem."""
    # UTF-8, not ASCII: plain JSON text (what the Functions host hands over after decoding the
    # base64) carries Swedish letters, and base64 with anything non-ASCII is refused below anyway.
    data = text.encode("utf-8") if isinstance(text, str) else text
    stripped = data.strip()
    if stripped.startswith(b"{"):
        raw = stripped  # plain JSON, e.g. put there by hand or a tool without base64
    else:
        try:
            raw = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            raise InputError("queue message is neither base64 nor JSON") from None
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"queue message is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("v") != ENVELOPE_VERSION:
        raise InputError(
            f"unknown envelope version {body.get('v') if isinstance(body, dict) else None!r}",
            field="v",
        )
    events = body.get("events")
    if not isinstance(events, list):
        raise InputError("envelope has no 'events' list", field="events")
    return Envelope(
        events=events, enqueued_at=str(body.get("enqueued_at", "")), poison=body.get("poison")
    )
