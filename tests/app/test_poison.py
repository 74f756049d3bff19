"""Poison queue operations: what an operator sees, and that replay puts events back unchanged."""

from __future__ import annotations

import pytest

from dynamics_bridge.app import poison
from dynamics_bridge.errors import InputError, NotFoundError
from dynamics_bridge.queue import InMemoryQueue
from tests.test_pipeline import ev


def poisoned_queue() -> InMemoryQueue:
    queue = InMemoryQueue()
    queue.send([ev(1), ev(2)])
    (message,) = queue.receive()
    queue.to_poison(message, "unmatched: no member with mbr_memberno = '999999'", [ev(2)])
    return queue


def test_list_shows_reason_and_event_ids() -> None:
    (entry,) = poison.list_poison(poisoned_queue())
    assert entry.reason.startswith("unmatched")
    assert entry.event_ids == [ev(2).event_id]


def test_replay_puts_the_same_events_back_and_removes_the_message() -> None:
    queue = poisoned_queue()
    (entry,) = poison.list_poison(queue)
    assert poison.replay(queue, entry.message_id) == [ev(2).event_id]
    assert poison.list_poison(queue) == []
    assert queue.peek_events() == [ev(2).to_json()]


def test_replay_all_replays_every_message() -> None:
    queue = poisoned_queue()
    queue.send([ev(3)])
    (m,) = queue.receive()
    queue.to_poison(m, "failed: 400")
    count, skipped = poison.replay_all(queue)
    assert (count, skipped) == (2, [])


def test_a_message_without_events_cannot_be_replayed_and_stays() -> None:
    queue = InMemoryQueue()
    queue.send_raw("garbage")
    (m,) = queue.receive()
    queue.to_poison(m, "undecodable")
    (entry,) = poison.list_poison(queue)
    assert entry.raw == "garbage"
    with pytest.raises(InputError, match="nothing to replay"):
        poison.replay(queue, entry.message_id)


def test_purge_deletes_and_unknown_ids_are_not_found() -> None:
    queue = poisoned_queue()
    (entry,) = poison.list_poison(queue)
    poison.purge(queue, entry.message_id)
    assert poison.list_poison(queue) == []
    with pytest.raises(NotFoundError):
        poison.show(queue, entry.message_id)


# -- what an operator sees is masked -----------------------------------------------------------

PNR = "198112189876"  # fictitious, Luhn-valid


def test_a_masked_entry_hides_every_personnummer_and_keeps_the_rest() -> None:
    import base64

    from dynamics_bridge.model import MemberRef, MemberRefKind

    queue = InMemoryQueue()
    event = ev(1, member_ref=MemberRef(MemberRefKind.PERSONNUMMER, PNR))
    queue.send([event])
    (message,) = queue.receive()
    queue.to_poison(message, f"unmatched: no member with governmentid = '{PNR}'")
    queue.send_raw(base64.b64encode(f"not json {PNR}".encode()).decode())
    (garbage,) = queue.receive()
    queue.to_poison(garbage, "undecodable")
    entry, raw_entry = (e.masked() for e in poison.list_poison(queue))
    assert PNR not in repr(entry)
    assert PNR not in repr(raw_entry)
    assert entry.body["events"][0]["member_ref"]["value"] == "19811218-****"
    assert "19811218-****" in entry.reason
    assert entry.event_ids == [event.event_id]
    assert raw_entry.raw == "base64 of: not json 19811218-****"
    # unmasked, the entry still holds the real value (for --show-pnr and replay)
    assert poison.list_poison(queue)[0].body["events"][0]["member_ref"]["value"] == PNR
