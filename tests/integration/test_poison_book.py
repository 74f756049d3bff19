"""The poison book on the real local parts: the poison queue on Azurite's queue service drained
into the ops store on Azurite's table service, replayed by filter back onto the queue, and the
CLI doing the same through the settings an operator sets."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue import QueueClient
from typer.testing import CliRunner

from dynamics_bridge.app.poison import HOST_MOVED, PoisonBook, record_of
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.ops.model import PoisonFilter
from dynamics_bridge.queue import EventQueue, encode_messages, open_queue
from dynamics_bridge.settings import Settings, load_settings
from tests.test_model import event

pytestmark = pytest.mark.integration
ALL = PoisonFilter()


@pytest.fixture
def settings(azurite: str) -> Settings:
    """A fresh queue and fresh tables: the settings the function app and the CLI read."""
    return load_settings(
        queue={
            "backend": "azure",
            "connection_string": azurite,
            "name": f"events-{uuid.uuid4().hex[:12]}",
        },
        ops={"backend": "tables", "table_prefix": f"p{uuid.uuid4().hex[:12]}"},
    )


def poison(queue: EventQueue, reason: str, *events) -> None:
    queue.send(list(events))
    (message,) = queue.receive(visibility_timeout=30)
    queue.to_poison(message, reason)


def test_absorb_then_replay_by_filter_through_azure_storage(settings, azurite) -> None:
    services = Services(settings)
    queue, book = services.queue, services.poison_book
    assert isinstance(book, PoisonBook)
    unmatched = [event(event_id=f"bgmax-{i:032x}") for i in range(40)]
    for one in unmatched:
        poison(queue, "unmatched: no member with mbr_memberno = '999999'", one)
    poison(queue, "failed: member locked", event(event_id="swish-1"), event(event_id="swish-2"))
    raw_poison = QueueClient.from_connection_string(azurite, settings.queue.poison_queue_name)
    (text,) = encode_messages([event(event_id="swish-host")])
    raw_poison.send_message(text)  # as the Functions host moves a message: unchanged, no reason

    assert book.absorb() == 42  # more than one look (32) at the queue
    assert raw_poison.peek_messages() == []
    assert book.count(ALL) == 42
    waiting, oldest = book.waiting()  # what the poison timer logs, from the tables' counts
    assert waiting == 42
    assert oldest is not None
    assert abs(oldest - datetime.now(UTC)) < timedelta(minutes=2)
    host = book.show(book.page(PoisonFilter(reason="host")).records[0].message_id)
    assert host.reason == HOST_MOVED
    assert abs(host.failed_at - datetime.now(UTC)) < timedelta(minutes=2)  # its insertion time

    report = book.replay(PoisonFilter(reason="unmatched"), who="anna", via="cli")
    assert (report.messages, report.events, report.skipped) == (40, 40, [])
    assert report.queue_messages == 1  # 40 events fit one 64 KiB message
    back = []
    while batch := queue.receive(visibility_timeout=30):
        for message in batch:
            back.extend(e.to_json() for e in message.events())
            queue.delete(message)
    assert sorted(back, key=lambda e: e["event_id"]) == [e.to_json() for e in unmatched]
    assert sorted(r.reason for r in book.page(ALL).records) == [
        "failed: member locked",
        HOST_MOVED,
    ]
    (audit,) = services.ops.audits(datetime.now(UTC) - timedelta(minutes=5))
    assert (audit.action, audit.count, audit.what) == ("replay", 40, "reason=unmatched")


def test_a_second_absorb_after_a_lost_delete_doubles_nothing(settings) -> None:
    services = Services(settings)
    queue = services.queue
    poison(queue, "failed: 400", event(event_id="swish-1"))
    (message,) = queue.poison_receive(1, visibility_timeout=1)  # taken, never deleted
    services.ops.put_poison([record_of(message)])  # the book written, then the process died
    assert services.poison_book.absorb() == 0  # still hidden: as if another absorb had it
    time.sleep(1.5)
    assert services.poison_book.absorb() == 1  # back on the queue: the same id, written again
    assert services.poison_book.count(ALL) == 1


def test_the_poison_cli_works_against_azure_storage(settings, azurite, monkeypatch) -> None:
    from dynamics_bridge.cli import app

    queue = open_queue(settings.queue)
    poison(queue, "unmatched: no member with mbr_memberno = '999999'", event(event_id="swish-9"))
    poison(queue, "failed: 400", event(event_id="swish-10"))
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")
    monkeypatch.setenv("BRIDGE_QUEUE__CONNECTION_STRING", azurite)
    monkeypatch.setenv("BRIDGE_QUEUE__NAME", settings.queue.name)
    monkeypatch.setenv("BRIDGE_OPS__BACKEND", "tables")
    monkeypatch.setenv("BRIDGE_OPS__TABLE_PREFIX", settings.ops.table_prefix)
    runner = CliRunner()
    listed = runner.invoke(app, ["poison", "list", "--json", "--reason", "unmatched"])
    assert listed.exit_code == 0, listed.output
    line, count = (json.loads(x) for x in listed.stdout.splitlines())
    assert line["event_ids"] == ["swish-9"]
    assert count["count"] == 1
    replayed = runner.invoke(app, ["poison", "replay", line["message_id"][:13]])
    assert replayed.exit_code == 0, replayed.output
    assert "replayed 1 poison message(s): 1 event(s)" in replayed.stdout
    (back,) = queue.receive(visibility_timeout=30)
    assert [e.event_id for e in back.events()] == ["swish-9"]
    missing = runner.invoke(app, ["poison", "purge", line["message_id"], "--yes"])
    assert missing.exit_code == 2
    assert "no poison message" in missing.stderr
    purged = runner.invoke(app, ["poison", "purge", "--reason", "failed", "--yes"])
    assert purged.exit_code == 0, purged.output
    assert "purged 1 poison message(s)" in purged.stdout
    shown = runner.invoke(app, ["poison", "list", "--json"])
    assert json.loads(shown.stdout.splitlines()[-1])["count"] == 0
