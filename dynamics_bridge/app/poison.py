"""Operators' view of the poison queue: list, show, replay (once the cause is fixed), purge.

What an operator is shown is masked by default (:meth:`PoisonEntry.masked`): every
personnummer-shaped value keeps its birth date and loses its last four digits.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from dataclasses import dataclass
from typing import Any

from dynamics_bridge.errors import InputError, NotFoundError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.personnummer import PNR_PATTERN, mask_text
from dynamics_bridge.queue import EventQueue, ReceivedMessage

__all__ = ["PoisonEntry", "list_poison", "purge", "replay", "replay_all", "show"]


@dataclass(frozen=True, slots=True)
class PoisonEntry:
    message_id: str
    reason: str
    failed_at: str
    event_ids: list[str]
    raw: str | None
    body: dict[str, Any]

    @classmethod
    def of(cls, message: ReceivedMessage) -> PoisonEntry:
        if message.envelope is None:  # put there by the Functions host, not by us
            return cls(message.message_id, f"undecodable: {message.error}", "", [], message.raw, {})
        poison = message.envelope.poison or {}
        return cls(
            message.message_id,
            str(poison.get("reason") or "moved by the Functions host after maxDequeueCount"),
            str(poison.get("failed_at") or ""),
            [str(e.get("event_id")) for e in message.envelope.events],
            poison.get("raw"),
            message.envelope.to_json(),
        )

    def masked(self) -> PoisonEntry:
        """The same entry with every personnummer-shaped value masked (``19811218-****``), in
        the reason, the events and the raw text (base64 raw text is decoded first when the
        decoded text holds one)."""
        return dataclasses.replace(
            self,
            reason=mask_text(self.reason),
            raw=_masked_raw(self.raw),
            body=_masked(self.body),
        )


def list_poison(queue: EventQueue, limit: int = 32) -> list[PoisonEntry]:
    return [PoisonEntry.of(m) for m in queue.poison_peek(limit)]


def show(queue: EventQueue, message_id: str) -> PoisonEntry:
    message = queue.poison_find(message_id, visibility_timeout=1)
    if message is None:
        raise NotFoundError(f"no poison message {message_id}")
    return PoisonEntry.of(message)


def replay(queue: EventQueue, message_id: str) -> list[str]:
    """Put the message's events back on the main queue and remove it; returns the event ids."""
    message = queue.poison_find(message_id)
    if message is None:
        raise NotFoundError(f"no poison message {message_id}")
    return _replay(queue, message)


def replay_all(queue: EventQueue) -> tuple[int, list[str]]:
    """Replay every replayable message; returns (events replayed, ids left for a human)."""
    replayed, skipped = 0, []
    while batch := queue.poison_receive(32, visibility_timeout=120):
        for message in batch:
            try:
                replayed += len(_replay(queue, message))
            except InputError:
                skipped.append(message.message_id)
        if all(m.message_id in skipped for m in batch):
            break
    return replayed, skipped


def purge(queue: EventQueue, message_id: str) -> None:
    message = queue.poison_find(message_id)
    if message is None:
        raise NotFoundError(f"no poison message {message_id}")
    queue.poison_delete(message)


def _replay(queue: EventQueue, message: ReceivedMessage) -> list[str]:
    if message.envelope is None or not message.envelope.events:
        raise InputError(
            "nothing to replay: the message holds no events (see its raw text)",
            location=f"poison message {message.message_id}",
        )
    events = [PaymentEvent.from_json(e) for e in message.envelope.events]
    queue.send(events)
    queue.poison_delete(message)
    return [e.event_id for e in events]


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def _masked_raw(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        decoded = base64.b64decode(raw.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64 text (UnicodeDecodeError is a ValueError)
        return mask_text(raw)
    if PNR_PATTERN.search(decoded):
        return "base64 of: " + mask_text(decoded)
    return mask_text(raw)
