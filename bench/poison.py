"""The poison book against the old per-message replay, on Azurite (queue and table services).

A file of unknown member numbers makes one poison message per event. This seeds ``--messages``
such messages (one event each) on a fresh poison queue, three times:

1. before: the old ``poison replay --all`` (take 32, then per message one send of its events
   and one delete), as it ran until the poison book;
2. absorb: the poison timer's :meth:`PoisonBook.absorb` (the queue drained into the book on
   Azure Table Storage);
3. replay: :meth:`PoisonBook.replay` by filter (``--reason unmatched``) from the book: the
   events back on the queue in as few messages as fit, then the records removed in bulk.

Prints each phase's time, messages per second and queue messages sent, then a RESULT line
with the speed-up of replay (and of absorb + replay) over the old way.

    .venv/bin/python bench/poison.py [--messages 1000]

(1,000 by default: the old way runs at about 10 messages a second on Azurite, so ``make bench``
stays short; bench/console.py replays 10,000 from a seeded book.)
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.storage.queue import QueueClient  # noqa: E402

from dynamics_bridge.app.poison import PoisonBook  # noqa: E402
from dynamics_bridge.model import PaymentEvent  # noqa: E402
from dynamics_bridge.ops.model import PoisonFilter  # noqa: E402
from dynamics_bridge.ops.tables import TableOpsStore  # noqa: E402
from dynamics_bridge.queue.azure import AzureStorageQueue  # noqa: E402
from dynamics_bridge.queue.poison import poison_envelope_text  # noqa: E402
from dynamics_bridge.queue.port import ReceivedMessage  # noqa: E402
from tests.support.azurite import azurite_binary, run_azurite  # noqa: E402
from tests.test_model import event  # noqa: E402


def seed(conn: str, queue: AzureStorageQueue, poison_name: str, count: int) -> None:
    """``count`` poison messages of one unmatched event each, as the sync leaves them."""
    queue.depth()  # creates both queues
    client = QueueClient.from_connection_string(conn, poison_name)

    def one(n: int) -> None:
        item = event(event_id=f"bgmax-{n:032x}", origin=f"/in/BGMAX.D261127.txt:{n + 3}")
        message = ReceivedMessage.from_raw(f"m{n}", "", 5, "")
        text = poison_envelope_text(
            message, "unmatched: no member with mbr_memberno = '999999'", [item]
        )
        client.send_message(text)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(one, range(count)))


def old_replay_all(queue: AzureStorageQueue) -> tuple[int, int]:
    """``poison replay --all`` as it was: per message, one send and one delete."""
    replayed = sent = 0
    while batch := queue.poison_receive(32, visibility_timeout=120):
        for message in batch:
            assert message.envelope is not None
            events = [PaymentEvent.from_json(e) for e in message.envelope.events]
            sent += len(queue.send(events))
            queue.poison_delete(message)
            replayed += len(events)
    return replayed, sent


def fresh(conn: str) -> tuple[AzureStorageQueue, str]:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    return AzureStorageQueue.from_connection_string(conn, name, f"{name}-poison"), f"{name}-poison"


def drop(conn: str, *names: str) -> None:
    for name in names:
        QueueClient.from_connection_string(conn, name).delete_queue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000)
    args = parser.parse_args()
    n = args.messages
    binary = azurite_binary(ROOT)
    if binary is None:
        sys.exit("Azurite is not installed: make test installs it with npm into node_modules")
    with run_azurite(binary, tables=True) as conn:
        queue, poison_name = fresh(conn)
        seed(conn, queue, poison_name, n)
        started = time.perf_counter()
        replayed, sent = old_replay_all(queue)
        before = time.perf_counter() - started
        print(
            f"before  replay --all per message: {replayed:,} events in {before:6.1f} s "
            f"({replayed / before:7.0f} msg/s), {sent:,} queue messages sent"
        )

        drop(conn, queue.name, poison_name)  # Azurite looks through every queue's messages
        queue, poison_name = fresh(conn)
        seed(conn, queue, poison_name, n)
        ops = TableOpsStore.from_connection_string(conn, prefix=f"b{uuid.uuid4().hex[:10]}")
        book = PoisonBook(queue, ops)
        started = time.perf_counter()
        absorbed = book.absorb()
        absorb = time.perf_counter() - started
        print(
            f"absorb  poison queue into book:   {absorbed:,} messages in {absorb:6.1f} s "
            f"({absorbed / absorb:7.0f} msg/s)"
        )
        started = time.perf_counter()
        counted = book.count(PoisonFilter(reason="unmatched"))
        count_s = time.perf_counter() - started
        print(f"count   --reason unmatched:       {counted:,} in {count_s:6.2f} s")
        started = time.perf_counter()
        report = book.replay(PoisonFilter(reason="unmatched"), who="bench", via="cli")
        replay = time.perf_counter() - started
        print(
            f"replay  by filter from the book:  {report.events:,} events in {replay:6.1f} s "
            f"({report.messages / replay:7.0f} msg/s), {report.queue_messages:,} queue "
            "messages sent"
        )
        print(
            f"RESULT messages={n} before_s={before:.1f} absorb_s={absorb:.1f} "
            f"replay_s={replay:.1f} replay_speedup={before / replay:.1f}x "
            f"absorb_plus_replay_speedup={before / (absorb + replay):.1f}x"
        )


if __name__ == "__main__":
    main()
