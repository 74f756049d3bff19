"""Azure Storage Queue adapter (azure-storage-queue). Also runs against Azurite.

Messages are written as base64 text by :mod:`envelope` itself, so no SDK encode policy is set and
a message somebody put there by hand can still be read (and poisoned) instead of crashing receive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from dynamics_bridge._azure import default_credential
from dynamics_bridge.errors import TransientError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue.envelope import encode_messages
from dynamics_bridge.queue.poison import poison_envelope_text
from dynamics_bridge.queue.port import ReceivedMessage

__all__ = ["AzureStorageQueue"]


class AzureStorageQueue:
    """One queue plus its ``-poison`` sibling, created on first use."""

    def __init__(
        self, client: QueueClient, poison_client: QueueClient, *, max_message_bytes: int = 64 * 1024
    ) -> None:
        self._client = client
        self._poison = poison_client
        self.name = client.queue_name
        self.max_message_bytes = max_message_bytes
        self._ready: set[str] = set()

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        name: str,
        poison_name: str,
        *,
        max_message_bytes: int = 64 * 1024,
        api_version: str | None = None,
    ) -> AzureStorageQueue:
        kwargs: dict[str, Any] = {"api_version": api_version} if api_version else {}
        return cls(
            QueueClient.from_connection_string(connection_string, name, **kwargs),
            QueueClient.from_connection_string(connection_string, poison_name, **kwargs),
            max_message_bytes=max_message_bytes,
        )

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        name: str,
        poison_name: str,
        *,
        max_message_bytes: int = 64 * 1024,
        credential: Any = None,
    ) -> AzureStorageQueue:
        """Connect by identity (in Azure: the app's managed identity; no key in any setting)."""
        if credential is None:
            credential = default_credential("BRIDGE_QUEUE__ACCOUNT_URL")
        return cls(
            QueueClient(account_url, name, credential=credential),
            QueueClient(account_url, poison_name, credential=credential),
            max_message_bytes=max_message_bytes,
        )

    def _ensure(self, client: QueueClient) -> None:
        if client.queue_name in self._ready:
            return
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        self._ready.add(client.queue_name)

    def send(self, events: Sequence[PaymentEvent]) -> list[str]:
        # Encoded whole before the first send: an event too large for a message refuses the
        # call with nothing queued, never half of a callback's events.
        texts = list(encode_messages(events, max_bytes=self.max_message_bytes))
        return [self.send_raw(text) for text in texts]

    def send_raw(self, text: str) -> str:
        try:
            self._ensure(self._client)
            return str(self._client.send_message(text).id)
        except AzureError as exc:
            raise TransientError(f"queue {self.name}: send failed: {exc}") from exc

    def receive(
        self, max_messages: int = 32, visibility_timeout: int = 300
    ) -> list[ReceivedMessage]:
        try:
            self._ensure(self._client)
            batch = self._client.receive_messages(
                max_messages=min(max_messages, 32), visibility_timeout=visibility_timeout
            )
            received = []
            for msg in batch:
                received.append(
                    ReceivedMessage.from_raw(
                        str(msg.id),
                        str(msg.pop_receipt),
                        int(msg.dequeue_count or 0),
                        str(msg.content),
                    )
                )
                if len(received) >= max_messages:
                    break
            return received
        except AzureError as exc:
            raise TransientError(f"queue {self.name}: receive failed: {exc}") from exc

    #: Azure Storage returns at most this many messages to one peek, and cannot page further.
    PEEK_LIMIT = 32

    def peek(self, max_messages: int | None = None) -> list[ReceivedMessage]:
        count = min(max_messages or self.PEEK_LIMIT, self.PEEK_LIMIT)
        try:
            self._ensure(self._client)
            return [self._received(m) for m in self._client.peek_messages(max_messages=count)]
        except AzureError as exc:
            raise TransientError(f"queue {self.name}: peek failed: {exc}") from exc

    def delete(self, message: ReceivedMessage) -> None:
        try:
            self._client.delete_message(message.message_id, message.pop_receipt)
        except ResourceNotFoundError:
            pass  # already gone: another consumer finished it, or the receipt expired
        except AzureError as exc:
            raise TransientError(f"queue {self.name}: delete failed: {exc}") from exc

    def to_poison(
        self,
        message: ReceivedMessage,
        reason: str,
        events: Sequence[PaymentEvent | dict] | None = None,
        *,
        keep_original: bool = False,
    ) -> None:
        text = poison_envelope_text(message, reason, events)
        try:
            self._ensure(self._poison)
            self._poison.send_message(text)
        except AzureError as exc:
            raise TransientError(f"queue {self._poison.queue_name}: send failed: {exc}") from exc
        if not keep_original:
            self.delete(message)

    def depth(self) -> dict[str, int]:
        counts = {}
        for word, client in (("messages", self._client), ("poison", self._poison)):
            try:
                self._ensure(client)
                counts[word] = int(client.get_queue_properties().approximate_message_count or 0)
            except AzureError as exc:
                raise TransientError(f"queue {client.queue_name}: unreachable: {exc}") from exc
        return counts

    # -- the poison queue ------------------------------------------------------------------------
    def _received(self, msg: QueueMessage) -> ReceivedMessage:
        return ReceivedMessage.from_raw(
            str(msg.id),
            str(msg.pop_receipt or ""),
            int(msg.dequeue_count or 0),
            str(msg.content),
            inserted_at=getattr(msg, "inserted_on", None),
        )

    def poison_peek(self, limit: int = 32) -> list[ReceivedMessage]:
        try:
            self._ensure(self._poison)
            return [self._received(m) for m in self._poison.peek_messages(min(limit, 32))]
        except AzureError as exc:
            raise TransientError(f"queue {self._poison.queue_name}: peek failed: {exc}") from exc

    def poison_receive(
        self, max_messages: int = 32, visibility_timeout: int = 30
    ) -> list[ReceivedMessage]:
        try:
            self._ensure(self._poison)
            pages = self._poison.receive_messages(
                max_messages=min(max_messages, 32), visibility_timeout=visibility_timeout
            )
            return [self._received(m) for m in pages][:max_messages]
        except AzureError as exc:
            raise TransientError(f"queue {self._poison.queue_name}: receive failed: {exc}") from exc

    def poison_find(self, message_id: str, visibility_timeout: int = 30) -> ReceivedMessage | None:
        """Storage queues have no get-by-id: take batches, keep the match, release the rest."""
        released: list[ReceivedMessage] = []
        try:
            while batch := self.poison_receive(32, visibility_timeout):
                found = None
                for message in batch:
                    if message.message_id == message_id:
                        found = message
                    else:
                        released.append(message)
                if found is not None:
                    return found
            return None
        finally:
            for message in released:
                with contextlib.suppress(AzureError):
                    self._poison.update_message(
                        message.message_id, message.pop_receipt, visibility_timeout=0
                    )

    def poison_delete(self, message: ReceivedMessage) -> None:
        try:
            self._poison.delete_message(message.message_id, message.pop_receipt)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise TransientError(f"queue {self._poison.queue_name}: delete failed: {exc}") from exc
