"""In-process queue with the same semantics as the Azure adapter: for tests and the demo."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue.envelope import decode_message, encode_messages
from dynamics_bridge.queue.poison import poison_envelope_text
from dynamics_bridge.queue.port import ReceivedMessage

__all__ = ["InMemoryQueue"]


@dataclass
class _Stored:
    message_id: str
    text: str
    dequeue_count: int = 0
    visible_at: float = 0.0
    pop_receipt: str = ""


class InMemoryQueue:
    """A queue and its poison queue in memory; visibility timeouts honoured like Azure's."""

    def __init__(
        self,
        name: str = "payment-events",
        *,
        max_message_bytes: int = 64 * 1024,
        clock: Any = time.monotonic,
    ) -> None:
        self.name = name
        self.max_message_bytes = max_message_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._messages: dict[str, _Stored] = {}
        self._poison: dict[str, _Stored] = {}
        self._ids = itertools.count(1)

    # -- the port -----------------------------------------------------------------------------
    def send(self, events: Sequence[PaymentEvent]) -> list[str]:
        texts = list(encode_messages(events, max_bytes=self.max_message_bytes))
        return [self.send_raw(t) for t in texts]

    def send_raw(self, text: str) -> str:
        with self._lock:
            message_id = f"m{next(self._ids):08d}"
            self._messages[message_id] = _Stored(message_id, text)
            return message_id

    def receive(
        self, max_messages: int = 32, visibility_timeout: int = 300
    ) -> list[ReceivedMessage]:
        return self._take(self._messages, max_messages, visibility_timeout)

    def peek(self, max_messages: int | None = None) -> list[ReceivedMessage]:
        now = self._clock()
        with self._lock:
            visible = [m for m in self._messages.values() if m.visible_at <= now]
        if max_messages is not None:
            visible = visible[:max_messages]
        return [
            ReceivedMessage.from_raw(m.message_id, "", m.dequeue_count, m.text) for m in visible
        ]

    def _take(
        self, where: dict[str, _Stored], max_messages: int, visibility_timeout: int
    ) -> list[ReceivedMessage]:
        now = self._clock()
        with self._lock:
            visible = [m for m in where.values() if m.visible_at <= now][:max_messages]
            return [self._claim(m, visibility_timeout) for m in visible]

    def _claim(self, stored: _Stored, visibility_timeout: int) -> ReceivedMessage:
        stored.dequeue_count += 1
        stored.visible_at = self._clock() + visibility_timeout
        stored.pop_receipt = uuid.uuid4().hex
        return ReceivedMessage.from_raw(
            stored.message_id, stored.pop_receipt, stored.dequeue_count, stored.text
        )

    def delete(self, message: ReceivedMessage) -> None:
        with self._lock:
            stored = self._messages.get(message.message_id)
            if stored is not None and stored.pop_receipt == message.pop_receipt:
                del self._messages[message.message_id]

    def to_poison(
        self,
        message: ReceivedMessage,
        reason: str,
        events: Sequence[PaymentEvent | dict] | None = None,
        *,
        keep_original: bool = False,
    ) -> None:
        text = poison_envelope_text(message, reason, events)
        with self._lock:
            message_id = f"p{next(self._ids):08d}"
            self._poison[message_id] = _Stored(message_id, text)
        if not keep_original:
            self.delete(message)

    def depth(self) -> dict[str, int]:
        with self._lock:
            return {"messages": len(self._messages), "poison": len(self._poison)}

    # -- the poison queue ----------------------------------------------------------------------
    def poison_peek(self, limit: int = 32) -> list[ReceivedMessage]:
        with self._lock:
            stored = list(self._poison.values())[:limit]
        return [ReceivedMessage.from_raw(m.message_id, "", m.dequeue_count, m.text) for m in stored]

    def poison_receive(
        self, max_messages: int = 32, visibility_timeout: int = 30
    ) -> list[ReceivedMessage]:
        return self._take(self._poison, max_messages, visibility_timeout)

    def poison_find(self, message_id: str, visibility_timeout: int = 30) -> ReceivedMessage | None:
        with self._lock:
            stored = self._poison.get(message_id)
            if stored is None or stored.visible_at > self._clock():
                return None
            return self._claim(stored, visibility_timeout)

    def poison_delete(self, message: ReceivedMessage) -> None:
        with self._lock:
            stored = self._poison.get(message.message_id)
            if stored is not None and stored.pop_receipt == message.pop_receipt:
                del self._poison[message.message_id]

    # -- inspection, for tests and the demo ---------------------------------------------------
    def peek_events(self) -> list[dict[str, Any]]:
        """Every queued event as its canonical JSON dict, in queue order."""
        with self._lock:
            texts = [m.text for m in self._messages.values()]
        return [event for text in texts for event in decode_message(text).events]

    def poison_messages(self) -> list[dict[str, Any]]:
        with self._lock:
            texts = [m.text for m in self._poison.values()]
        return [decode_message(text).to_json() for text in texts]

    def __len__(self) -> int:
        return len(self._messages)
