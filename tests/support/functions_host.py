"""A stand-in for the Azure Functions host's storage-queue listener (tests and benchmarks).

The real host cannot be installed offline (reference azure-functions.md §3), so this drives a
queue-triggered function the way the host does, on a real Azure Storage queue (Azurite). It
follows ``QueueProcessor`` of Microsoft.Azure.WebJobs.Extensions.Storage.Queues 5.x:

- messages are received in batches of ``batchSize`` and hidden while they run; every receive
  increments the message's ``dequeue_count`` (Azure Storage does that, not the host);
- before a run, a message whose ``dequeue_count`` is *above* ``maxDequeueCount`` goes straight to
  ``<queue>-poison`` (``BeginProcessingMessageAsync``);
- with ``messageEncoding: base64`` the body is base64-decoded first; a message that is not
  base64 goes to the poison queue at once (reference §1.3 gotcha);
- the function gets a ``QueueMessage`` with id, body, dequeue count and pop receipt;
- it returns: the message is deleted. It raises: when ``dequeue_count >= maxDequeueCount`` the
  message text is copied to ``<queue>-poison`` unchanged and deleted, otherwise it is made
  visible again after ``visibilityTimeout`` (``CompleteProcessingMessageAsync``).

A batch runs concurrently, up to ``batchSize`` at a time; the next batch is fetched when the
whole batch is done, which is the host's behaviour with ``newBatchThreshold: 0`` (ours). Tests
may pass a shorter visibility timeout than host.json's: the counting is the same, only sooner.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage as FunctionsQueueMessage
from azure.storage.queue import QueueClient, QueueMessage

from dynamics_bridge.hosting import QueueHostOptions

__all__ = ["HostRun", "QueueTriggerHost"]

log = logging.getLogger(__name__)

#: How long the host keeps a running message hidden (it renews this while the function runs).
RUN_VISIBILITY_SECONDS = 600


@dataclass
class HostRun:
    invocations: int = 0
    succeeded: int = 0
    failed: int = 0
    poisoned: int = 0  # moved to <queue>-poison by the host (not by the function)


class QueueTriggerHost:
    def __init__(
        self,
        connection_string: str,
        queue_name: str,
        function: Callable[[FunctionsQueueMessage], object],
        options: QueueHostOptions,
        *,
        visibility_timeout: float | None = None,
    ) -> None:
        self.queue = QueueClient.from_connection_string(connection_string, queue_name)
        self.poison = QueueClient.from_connection_string(connection_string, f"{queue_name}-poison")
        self.function = function
        self.options = options
        self.visibility_timeout = int(
            options.visibility_timeout_seconds if visibility_timeout is None else visibility_timeout
        )
        for client in (self.queue, self.poison):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()

    def run_batch(self) -> HostRun:
        """One receive and the runs of what it brought; an empty result means an empty queue."""
        run = HostRun()
        batch = list(
            self.queue.receive_messages(
                max_messages=self.options.batch_size, visibility_timeout=RUN_VISIBILITY_SECONDS
            )
        )
        if not batch:
            return run
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            for outcome in pool.map(self._one, batch):
                run.invocations += outcome != "poisoned_before"
                run.succeeded += outcome == "succeeded"
                run.failed += outcome in ("failed", "poisoned")
                run.poisoned += outcome in ("poisoned", "poisoned_before")
        return run

    def drain(self, *, max_batches: int = 10_000) -> HostRun:
        """Run batches until a receive finds nothing visible."""
        total = HostRun()
        for _ in range(max_batches):
            run = self.run_batch()
            if not (run.invocations or run.poisoned):
                break
            total.invocations += run.invocations
            total.succeeded += run.succeeded
            total.failed += run.failed
            total.poisoned += run.poisoned
        return total

    def _one(self, message: QueueMessage) -> str:
        count = int(message.dequeue_count or 0)
        if count > self.options.max_dequeue_count:
            self._to_poison(message)
            return "poisoned_before"
        try:
            body = base64.b64decode(str(message.content), validate=True)
        except (binascii.Error, ValueError):
            self._to_poison(message)
            return "poisoned_before"
        trigger = FunctionsQueueMessage(
            id=message.id,
            body=body,
            dequeue_count=count,
            pop_receipt=message.pop_receipt,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
        )
        try:
            self.function(trigger)
        except Exception as exc:  # noqa: BLE001 - the host catches everything a function raises
            log.info("function failed (attempt %d): %s", count, exc)
            if count >= self.options.max_dequeue_count:
                self._to_poison(message)
                return "poisoned"
            self.queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=self.visibility_timeout
            )
            return "failed"
        self.queue.delete_message(message.id, message.pop_receipt)
        return "succeeded"

    def _to_poison(self, message: QueueMessage) -> None:
        self.poison.send_message(message.content)  # the text as it was, still base64
        self.queue.delete_message(message.id, message.pop_receipt)
