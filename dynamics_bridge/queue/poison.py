"""What a poison message carries: the reason and the original events (or raw text), to replay."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue.envelope import Envelope, encode_envelope
from dynamics_bridge.queue.port import ReceivedMessage

__all__ = ["poison_envelope_text"]


def poison_envelope_text(
    message: ReceivedMessage, reason: str, events: Sequence[PaymentEvent | dict] | None = None
) -> str:
    if events is not None:
        items = [e.to_json() if isinstance(e, PaymentEvent) else e for e in events]
    elif message.envelope is not None:
        items = list(message.envelope.events)
    else:
        items = []
    poison = {
        "reason": reason,
        "failed_at": datetime.now(UTC).isoformat(),
        "original_message_id": message.message_id,
        "dequeue_count": message.dequeue_count,
    }
    if message.envelope is None:
        poison["raw"] = message.raw  # undecodable: keep the bytes as they came
    return encode_envelope(Envelope(events=items, poison=poison))
