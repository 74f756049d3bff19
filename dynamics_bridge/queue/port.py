"""The queue port: what intake and the sync loop need from a durable queue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue.envelope import Envelope, decode_message

__all__ = ["EventQueue", "ReceivedMessage"]


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One message taken off the queue. ``error`` is set when it could not be decoded;
    ``inserted_at`` when the backend says when the message was put there (Azure does)."""

    message_id: str
    pop_receipt: str
    dequeue_count: int
    raw: str
    envelope: Envelope | None
    error: str | None = None
    inserted_at: datetime | None = None

    @classmethod
    def from_raw(
        cls,
        message_id: str,
        pop_receipt: str,
        dequeue_count: int,
        raw: str,
        *,
        inserted_at: datetime | None = None,
    ) -> ReceivedMessage:
        try:
            envelope = decode_message(raw)
        except InputError as exc:
            return cls(message_id, pop_receipt, dequeue_count, raw, None, str(exc), inserted_at)
        return cls(message_id, pop_receipt, dequeue_count, raw, envelope, None, inserted_at)

    def events(self) -> list[PaymentEvent]:
        if self.envelope is None:
            raise InputError(
                self.error or "undecodable message", location=f"message {self.message_id}"
            )
        return self.envelope.parsed_events()


class EventQueue(Protocol):
    """Durable at-least-once queue of canonical events."""

    name: str

    def send(self, events: Sequence[PaymentEvent]) -> list[str]:
        """Queue the events (split into messages as needed); returns message ids.

        Every message is encoded before the first is sent: an event over the message limit is
        an InputError with nothing queued."""
        ...

    def receive(
        self, max_messages: int = 32, visibility_timeout: int = 300
    ) -> list[ReceivedMessage]: ...

    def peek(self, max_messages: int | None = None) -> list[ReceivedMessage]:
        """Look at visible messages without taking them: no dequeue count, no hiding.

        ``None``: as many as the backend shows in one look. Azure Storage shows at most 32, from
        the front of the queue (there is no paging past them); the in-memory queue shows all.
        Messages another consumer holds (invisible) are not shown. Never delete a peeked message.
        """
        ...

    def delete(self, message: ReceivedMessage) -> None: ...

    def to_poison(
        self,
        message: ReceivedMessage,
        reason: str,
        events: Sequence[PaymentEvent | dict] | None = None,
        *,
        keep_original: bool = False,
    ) -> None:
        """Move a message (or some of its events) to the poison queue with the reason.

        ``keep_original``: only copy; the message's owner deletes it (the Functions host does,
        when the function returns), so a crash between two copies loses nothing.
        """
        ...

    def depth(self) -> dict[str, int]:
        """Approximate message counts: ``{"messages": n, "poison": n}`` (health, monitoring)."""
        ...

    # The poison queue, for operators: list, show, replay, purge.
    def poison_peek(self, limit: int = 32) -> list[ReceivedMessage]:
        """Look without taking (Azure shows at most 32 this way)."""
        ...

    def poison_find(self, message_id: str, visibility_timeout: int = 30) -> ReceivedMessage | None:
        """Take one poison message by id; others stay visible."""
        ...

    def poison_receive(
        self, max_messages: int = 32, visibility_timeout: int = 30
    ) -> list[ReceivedMessage]: ...

    def poison_delete(self, message: ReceivedMessage) -> None: ...
