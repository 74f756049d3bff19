"""The poison book: the poison queue drained into the ops store, then counted, paged, shown,
replayed and purged by filter, with an audit of every replay and purge, and masked for eyes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest

from dynamics_bridge.app.poison import HOST_MOVED, PoisonBook, masked, record_of
from dynamics_bridge.errors import ConfigError, InputError, NotFoundError
from dynamics_bridge.model import MemberRef, MemberRefKind, Source
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.model import PoisonFilter
from dynamics_bridge.queue import InMemoryQueue, ReceivedMessage, encode_messages
from tests.test_pipeline import ev

PNR = "198112189876"  # fictitious, Luhn-valid
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ALL = PoisonFilter()


def poison(queue: InMemoryQueue, reason: str, *events, raw: str | None = None) -> None:
    """Poison one message as the sync does: received from the main queue, moved with a reason."""
    if raw is None:
        queue.send(list(events))
    else:
        queue.send_raw(raw)
    (message,) = queue.receive()
    queue.to_poison(message, reason)


def book_with(*reasons: str) -> tuple[PoisonBook, InMemoryQueue, InMemoryOpsStore]:
    queue, ops = InMemoryQueue(), InMemoryOpsStore()
    for n, reason in enumerate(reasons, start=1):
        poison(queue, reason, ev(n, member=str(100000 + n)))
    return PoisonBook(queue, ops, clock=lambda: NOW), queue, ops


# --- absorb -----------------------------------------------------------------------------------


def test_absorb_moves_every_poison_message_into_the_book_and_off_the_queue() -> None:
    book, queue, _ = book_with(*[f"unmatched: no member {n}" for n in range(70)])
    assert book.absorb() == 70  # three looks of at most 32
    assert queue.depth()["poison"] == 0
    assert book.count(ALL) == 70
    assert book.absorb() == 0


def test_absorb_stops_at_its_limit_and_leaves_the_rest_on_the_queue() -> None:
    book, queue, _ = book_with(*["failed: 400"] * 40)
    assert book.absorb(limit=33) == 33
    assert queue.depth()["poison"] == 7


def test_a_record_holds_reason_time_source_events_members_and_file() -> None:
    queue = InMemoryQueue()
    first = ev(1, member="100007", source=Source.BGMAX, origin="/drop/in/BGMAX.D261127.txt:14")
    second = ev(2, member="100008", source=Source.BGMAX, origin="/drop/in/BGMAX.D261127.txt:15")
    poison(queue, "unmatched: no member with mbr_memberno = '100007'", first, second)
    book = PoisonBook(queue, InMemoryOpsStore())
    book.absorb()
    (record,) = book.page(ALL).records
    assert record.reason == "unmatched: no member with mbr_memberno = '100007'"
    assert record.category == "unmatched"
    assert abs(record.failed_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert record.source == "bgmax"
    assert record.event_ids == (first.event_id, second.event_id)
    assert record.member_refs == ("100007", "100008")
    assert record.file == "BGMAX.D261127.txt"
    assert [e["event_id"] for e in record.events()] == [first.event_id, second.event_id]


def test_webhook_events_have_no_file_and_several_sources_are_mixed() -> None:
    queue = InMemoryQueue()
    poison(queue, "failed: 400", ev(1, origin="efaktura:4711"), ev(2, source=Source.BILLOGRAM))
    book = PoisonBook(queue, InMemoryOpsStore())
    book.absorb()
    (record,) = book.page(ALL).records
    assert (record.source, record.file) == ("mixed", "")


def test_a_message_the_host_moved_has_the_host_reason_and_its_insertion_time() -> None:
    (text,) = encode_messages([ev(1)])  # the original message, unchanged: no poison block
    inserted = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    moved = ReceivedMessage.from_raw("host-1", "r", 1, text, inserted_at=inserted)
    record = record_of(moved, now=NOW)
    assert (record.reason, record.category, record.failed_at) == (HOST_MOVED, "host", inserted)
    assert record.event_ids == (ev(1).event_id,)
    assert record_of(ReceivedMessage.from_raw("host-2", "r", 1, text), now=NOW).failed_at == NOW


def test_an_undecodable_message_the_host_moved_keeps_its_text_and_says_why() -> None:
    record = record_of(ReceivedMessage.from_raw("host-3", "r", 1, "hello"), now=NOW)
    assert record.reason.startswith(HOST_MOVED)
    assert "neither base64 nor JSON" in record.reason
    assert json.loads(record.body)["poison"]["raw"] == "hello"
    assert record.events() == []


def test_a_crash_between_writing_the_book_and_deleting_the_messages_doubles_nothing() -> None:
    class DeleteFails(InMemoryQueue):
        def poison_delete(self, message: ReceivedMessage) -> None:
            raise RuntimeError("connection reset")

    queue, ops = DeleteFails(clock=lambda: 0.0), InMemoryOpsStore()
    poison(queue, "failed: 400", ev(1))
    with pytest.raises(RuntimeError):
        PoisonBook(queue, ops, workers=1).absorb()
    assert ops.poison_count(ALL) == 1  # written before the delete was tried
    queue._clock = lambda: 10_000.0  # the visibility timeout is over: the message is back
    queue.poison_delete = InMemoryQueue.poison_delete.__get__(queue)  # type: ignore[method-assign]
    assert PoisonBook(queue, ops).absorb() == 1
    assert ops.poison_count(ALL) == 1
    assert queue.depth()["poison"] == 0


def test_absorbing_a_durable_queue_into_memory_is_refused_and_loses_nothing() -> None:
    class DurableQueue:
        """Stands for the Azure queue: anything but this process's memory."""

        def __init__(self, inner: InMemoryQueue) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

    queue = InMemoryQueue()
    poison(queue, "failed: 400", ev(1))
    book = PoisonBook(DurableQueue(queue), InMemoryOpsStore())  # type: ignore[arg-type]
    assert not book.durable
    with pytest.raises(ConfigError, match="BRIDGE_OPS__BACKEND=tables"):
        book.absorb()
    assert queue.depth()["poison"] == 1


def test_waiting_counts_the_book_and_names_its_oldest_failure() -> None:
    _, queue, ops = book_with("failed: 400", "failed: 500")
    book = PoisonBook(queue, ops)  # the clock of the poison blocks' failed_at: the real one
    assert book.waiting() == (0, None)
    book.absorb()
    first = min(r.failed_at for r in ops.poison_iter(ALL))
    count, oldest = book.waiting()
    assert count == 2
    assert oldest is not None
    assert first - timedelta(seconds=1) <= oldest <= first


@pytest.mark.parametrize("age", [timedelta(minutes=16), timedelta(days=40), timedelta(0)])
def test_the_oldest_is_found_from_counts_alone_to_the_second(age: timedelta) -> None:
    class CountsOnly(InMemoryOpsStore):
        def poison_iter(self, where: PoisonFilter):  # type: ignore[no-untyped-def]
            raise AssertionError("waiting() reads no records")

    ops = CountsOnly()
    (text,) = encode_messages([ev(1)])
    for n, ago in enumerate((age, age / 2, timedelta(0))):
        message = ReceivedMessage.from_raw(f"m{n}", "", 1, text)
        ops.put_poison([record_of(message, now=NOW - ago)])
    count, oldest = PoisonBook(InMemoryQueue(), ops, clock=lambda: NOW).waiting()
    assert count == 3
    assert oldest is not None
    assert NOW - age - timedelta(seconds=1) <= oldest <= NOW - age


# --- reading ----------------------------------------------------------------------------------


def test_pages_walk_every_match_newest_first_and_the_count_is_the_true_one() -> None:
    book, _, _ = book_with(*(["unmatched: x"] * 120 + ["failed: 400"] * 5))
    book.absorb()
    where = PoisonFilter(reason="unmatched")
    assert book.count(where) == 120
    seen, cursor = [], None
    while True:
        page = book.page(where, limit=50, cursor=cursor)
        seen.extend(page.records)
        if page.cursor is None:
            break
        cursor = page.cursor
    assert len({r.message_id for r in seen}) == 120
    assert [r.failed_at for r in seen] == sorted((r.failed_at for r in seen), reverse=True)


def test_show_takes_a_unique_prefix_and_names_the_candidates_of_an_ambiguous_one() -> None:
    ops = InMemoryOpsStore()
    ids = ["3f2a9c1e-0000-4000-8000-000000000001", "3f2a9c1e-0000-4000-8000-000000000002"]
    ids.append("7b1d04aa-0000-4000-8000-000000000003")
    (text,) = encode_messages([ev(1)])
    ops.put_poison([record_of(ReceivedMessage.from_raw(i, "", 1, text), now=NOW) for i in ids])
    book = PoisonBook(InMemoryQueue(), ops)
    assert book.show("7b1d").message_id == ids[2]
    assert book.show(ids[0]).message_id == ids[0]
    with pytest.raises(InputError, match="2 poison messages start with '3f2a9c1e'") as err:
        book.show("3f2a9c1e")
    assert ids[0] in str(err.value)
    assert ids[1] in str(err.value)
    with pytest.raises(NotFoundError):
        book.show("nope")


# --- replay -----------------------------------------------------------------------------------


def test_replay_by_filter_sends_the_events_back_removes_the_records_and_audits() -> None:
    book, queue, ops = book_with("unmatched: a", "unmatched: b", "failed: 400")
    book.absorb()
    ticks: list[tuple[int, int]] = []
    report = book.replay(
        PoisonFilter(reason="unmatched"), who="anna", via="cli", progress=lambda *t: ticks.append(t)
    )
    assert (report.messages, report.events, report.skipped) == (2, 2, [])
    assert sorted(e["event_id"] for e in queue.peek_events()) == sorted(
        [ev(1).event_id, ev(2).event_id]
    )
    assert report.queue_messages == len(queue) == 1  # both events in one queue message
    assert [r.reason for r in book.page(ALL).records] == ["failed: 400"]
    assert ticks[0] == (0, 2)
    assert ticks[-1] == (2, 2)
    (audit,) = ops.audits(NOW - timedelta(days=1))
    assert (audit.who, audit.via, audit.action, audit.count) == ("anna", "cli", "replay", 2)
    assert audit.what == "reason=unmatched"
    assert audit.at == NOW


def test_ten_thousand_poisoned_events_go_back_in_few_queue_messages() -> None:
    queue, ops = InMemoryQueue(), InMemoryOpsStore()
    for n in range(1, 1001):  # one event per poison message, as a file of unknown members makes
        poison(queue, "unmatched: nobody", ev(n, member=str(200000 + n)))
    book = PoisonBook(queue, ops)
    book.absorb()
    report = book.replay(ALL, who="anna", via="cli")
    assert (report.messages, report.events) == (1000, 1000)
    assert report.queue_messages == len(queue) < 20  # not one message per event
    assert sorted(e["event_id"] for e in queue.peek_events()) == sorted(
        ev(n, member=str(200000 + n)).event_id for n in range(1, 1001)
    )
    assert book.count(ALL) == 0


def test_replay_by_ids_takes_prefixes_and_an_unknown_id_replays_nothing() -> None:
    book, queue, _ = book_with("failed: 400", "failed: 500")
    book.absorb()
    first, second = sorted(r.message_id for r in book.page(ALL).records)
    with pytest.raises(NotFoundError):
        book.replay(ids=[first, "unknown"], who="anna", via="cli")
    assert len(queue) == 0
    assert book.count(ALL) == 2
    report = book.replay(ids=[second], who="anna", via="console")
    assert report.messages == 1
    assert [r.message_id for r in book.page(ALL).records] == [first]


def test_records_without_events_are_skipped_named_and_kept() -> None:
    queue, ops = InMemoryQueue(), InMemoryOpsStore()
    poison(queue, "undecodable", raw="garbage")
    poison(queue, "failed: 400", ev(1))
    book = PoisonBook(queue, ops, clock=lambda: NOW)
    book.absorb()
    garbage = next(r for r in book.page(ALL).records if r.reason == "undecodable")
    report = book.replay(ALL, who="anna", via="cli")
    assert (report.messages, report.events, report.skipped) == (1, 1, [garbage.message_id])
    assert [r.message_id for r in book.page(ALL).records] == [garbage.message_id]
    assert ops.audits(NOW)[0].count == 1


def test_a_replay_names_what_it_takes() -> None:
    book, queue, _ = book_with("failed: 400")
    book.absorb()
    with pytest.raises(InputError, match="say which poison messages"):
        book.replay(who="anna", via="cli")
    assert len(queue) == 0


def test_a_failed_send_removes_nothing_and_a_second_replay_sends_the_events_again() -> None:
    class SendFails(InMemoryQueue):
        fail = False

        def send(self, events):  # type: ignore[no-untyped-def]
            if self.fail:
                raise RuntimeError("queue down")
            return super().send(events)

    queue, ops = SendFails(), InMemoryOpsStore()
    poison(queue, "failed: 400", ev(1))
    book = PoisonBook(queue, ops, clock=lambda: NOW)
    book.absorb()
    queue.fail = True
    with pytest.raises(RuntimeError):
        book.replay(ALL, who="anna", via="cli")
    assert book.count(ALL) == 1
    assert ops.audits(NOW) == []
    queue.fail = False
    assert book.replay(ALL, who="anna", via="cli").events == 1


# --- purge ------------------------------------------------------------------------------------


def test_purge_by_filter_removes_only_the_matches_sends_nothing_and_audits() -> None:
    book, queue, ops = book_with("unmatched: a", "unmatched: b", "failed: 400")
    book.absorb()
    ticks: list[tuple[int, int]] = []
    gone = book.purge(
        PoisonFilter(reason="unmatched"),
        who="anna",
        via="console",
        progress=lambda *t: ticks.append(t),
    )
    assert gone == 2
    assert len(queue) == 0
    assert [r.reason for r in book.page(ALL).records] == ["failed: 400"]
    assert ticks[-1] == (2, 2)
    (audit,) = ops.audits(NOW)
    assert (audit.action, audit.count, audit.via, audit.what) == (
        "purge",
        2,
        "console",
        "reason=unmatched",
    )


def test_purge_by_ids_is_audited_with_the_ids() -> None:
    book, _, ops = book_with("failed: 400", "failed: 500")
    book.absorb()
    first = book.page(ALL).records[0].message_id
    assert book.purge(ids=[first], who="anna", via="cli") == 1
    assert ops.audits(NOW)[0].what == f"ids: {first}"


# --- what an operator sees is masked ----------------------------------------------------------


def test_a_masked_record_hides_every_personnummer_and_keeps_the_rest() -> None:
    queue = InMemoryQueue()
    event = ev(1, member_ref=MemberRef(MemberRefKind.PERSONNUMMER, PNR))
    poison(queue, f"unmatched: no member with governmentid = '{PNR}'", event)
    poison(queue, "undecodable", raw=base64.b64encode(f"not json {PNR}".encode()).decode())
    book = PoisonBook(queue, InMemoryOpsStore())
    book.absorb()
    by_reason = {r.category: r for r in book.page(ALL).records}
    record, raw_record = masked(by_reason["unmatched"]), masked(by_reason["undecodable"])
    assert PNR not in repr(record)
    assert PNR not in repr(raw_record)
    assert record.events()[0]["member_ref"]["value"] == "19811218-****"
    assert record.member_refs == ("19811218-****",)
    assert "19811218-****" in record.reason
    assert record.event_ids == (event.event_id,)
    assert json.loads(raw_record.body)["poison"]["raw"] == "base64 of: not json 19811218-****"
    # unmasked, the book still holds the real value (for --show-pnr and replay)
    assert by_reason["unmatched"].events()[0]["member_ref"]["value"] == PNR


def test_a_bank_serial_under_its_own_label_stays_readable_when_masked() -> None:
    queue = InMemoryQueue()
    poison(queue, "failed: 400", ev(1, provider_ref="000000000012"))
    book = PoisonBook(queue, InMemoryOpsStore())
    book.absorb()
    (record,) = book.page(ALL).records
    assert masked(record).events()[0]["provider_ref"] == "000000000012"
