"""Durable queue of canonical events: a small port, an Azure adapter and an in-memory one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dynamics_bridge.queue.envelope import (
    ENVELOPE_VERSION,
    Envelope,
    decode_message,
    encode_messages,
)
from dynamics_bridge.queue.memory import InMemoryQueue
from dynamics_bridge.queue.port import EventQueue, ReceivedMessage

if TYPE_CHECKING:
    from dynamics_bridge.settings import QueueSettings

__all__ = [
    "ENVELOPE_VERSION",
    "Envelope",
    "EventQueue",
    "InMemoryQueue",
    "ReceivedMessage",
    "decode_message",
    "encode_messages",
    "open_queue",
]

_memory_queues: dict[str, InMemoryQueue] = {}


def open_queue(settings: QueueSettings) -> EventQueue:
    """The configured backend. Memory queues are shared per name within one process."""
    if settings.backend == "memory":
        return _memory_queues.setdefault(
            settings.name,
            InMemoryQueue(settings.name, max_message_bytes=settings.max_message_bytes),
        )
    from dynamics_bridge.queue.azure import AzureStorageQueue  # the SDK only when it is used

    if settings.connection_string is None:  # settings validation guarantees an account URL
        assert settings.account_url is not None
        return AzureStorageQueue.from_account_url(
            settings.account_url,
            settings.name,
            settings.poison_queue_name,
            max_message_bytes=settings.max_message_bytes,
        )
    return AzureStorageQueue.from_connection_string(
        settings.connection_string.get_secret_value(),
        settings.name,
        settings.poison_queue_name,
        max_message_bytes=settings.max_message_bytes,
    )
