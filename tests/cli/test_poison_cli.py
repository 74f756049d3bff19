"""`poison list|show|replay|purge`: the true count, pages, filters, whole ids, unique prefixes,
bulk replay and purge with an audit, and personnummer masked unless --show-pnr."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli import app
from dynamics_bridge.cli import poison as poison_cli
from dynamics_bridge.model import MemberRef, MemberRefKind, Source
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.ops.model import PoisonFilter, PoisonRecord
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings
from tests.test_pipeline import ev

runner = CliRunner()
PNR = "198112189876"  # fictitious, Luhn-valid
ALL = PoisonFilter()
#: Azure Storage message ids are GUIDs: wider than a narrow column
GUID = "3f2a9c1e-5b7d-4e21-9c0a-{:012d}"


class Book:
    """The memory queue and ops store every CLI call of one test shares (as one process's
    settings would reach the same Azure queue and tables)."""

    def __init__(self) -> None:
        self.queue = InMemoryQueue()
        self.ops = InMemoryOpsStore()

    def poison(self, reason: str, *events) -> None:
        """Poison one message on the queue, as the sync does (not yet in the book)."""
        self.queue.send(list(events))
        (message,) = self.queue.receive()
        self.queue.to_poison(message, reason)

    def record(
        self, n: int, reason: str, *, minutes_ago: int = 0, message_id: str = "", **changes
    ) -> PoisonRecord:
        """A record already in the book, with a GUID id as Azure gives."""
        event = ev(n, member=str(100000 + n), **changes)
        body = json.dumps({"v": 1, "events": [event.to_json()], "poison": {"reason": reason}})
        record = PoisonRecord(
            message_id or GUID.format(n),
            datetime.now(UTC) - timedelta(minutes=minutes_ago),
            reason,
            event.source.value,
            (event.event_id,),
            (event.member_ref.value,),
            "",
            body,
        )
        self.ops.put_poison([record])
        return record


@pytest.fixture
def book(monkeypatch: pytest.MonkeyPatch) -> Book:
    shared = Book()
    monkeypatch.setattr(
        poison_cli,
        "_services",
        lambda: Services(load_settings(), queue=shared.queue, ops=shared.ops),
    )
    return shared


def invoke(*args: str, stdin: str | None = None):
    return runner.invoke(app, ["poison", *args], input=stdin)


# --- list -------------------------------------------------------------------------------------


def test_list_absorbs_the_poison_queue_and_says_the_true_count(book: Book) -> None:
    for n in range(1, 71):  # more than one look at a storage queue shows
        book.poison("unmatched: no member", ev(n))
    result = invoke("list", "--limit", "20")
    assert result.exit_code == 0, result.output
    assert "70 poison message(s) match; showing 1–20" in result.stdout
    assert "next: --page 2" in result.stdout
    assert book.queue.depth()["poison"] == 0


def test_list_pages_and_the_last_page_says_where_it_is(book: Book) -> None:
    for n in range(1, 46):
        book.record(n, "failed: 400", minutes_ago=n)
    third = invoke("list", "--limit", "20", "--page", "3", "--json")
    assert third.exit_code == 0, third.output
    *lines, count = [json.loads(x) for x in third.stdout.splitlines()]
    assert count == {"count": 45, "shown": 5, "page": 3, "next_cursor": None}
    # newest first: the 41st to 45th newest are the oldest five
    assert [x["message_id"] for x in lines] == [GUID.format(n) for n in range(41, 46)]
    text = invoke("list", "--limit", "20", "--page", "3")
    assert "45 poison message(s) match; showing 41–45" in text.stdout


def test_a_cursor_goes_on_where_the_last_page_stopped(book: Book) -> None:
    for n in range(1, 8):
        book.record(n, "failed: 400", minutes_ago=n)
    first = [json.loads(x) for x in invoke("list", "--limit", "4", "--json").stdout.splitlines()]
    cursor = first[-1]["next_cursor"]
    rest = invoke("list", "--limit", "4", "--cursor", cursor, "--json")
    ids = [json.loads(x).get("message_id") for x in rest.stdout.splitlines()][:-1]
    assert ids == [GUID.format(n) for n in range(5, 8)]


def test_a_page_and_a_cursor_together_are_refused(book: Book) -> None:
    result = invoke("list", "--page", "2", "--cursor", "50")
    assert result.exit_code == 2
    assert "give --page or --cursor, not both" in result.stderr


def test_list_filters_by_reason_source_time_and_search(book: Book) -> None:
    book.record(1, "unmatched: no member", minutes_ago=10)
    book.record(2, "failed: 400", minutes_ago=20, source=Source.BILLOGRAM)
    book.record(3, "unmatched: no member", minutes_ago=60 * 24 * 3)

    def ids(*args: str) -> list[str]:
        result = invoke("list", "--json", *args)
        assert result.exit_code == 0, result.output
        return [json.loads(x)["message_id"] for x in result.stdout.splitlines()[:-1]]

    assert ids("--reason", "unmatched") == [GUID.format(1), GUID.format(3)]
    assert ids("--source", "billogram") == [GUID.format(2)]
    assert ids("--since", "2d") == [GUID.format(1), GUID.format(2)]
    assert ids("--until", "1d") == [GUID.format(3)]
    assert ids("--search", "100002") == [GUID.format(2)]  # a member number
    assert ids("--search", ev(3, member="100003").event_id) == [GUID.format(3)]
    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert ids("--reason", "unmatched", "--since", since) == [GUID.format(1)]


def test_a_bad_time_is_refused_naming_the_option(book: Book) -> None:
    result = invoke("list", "--since", "yesterday")
    assert result.exit_code == 2
    assert "--since: 'yesterday' is neither a date" in result.stderr


def test_ids_are_never_cut_on_a_narrow_terminal(book: Book) -> None:
    reason = "unmatched: no member with mbr_memberno = '100001' " + "and a long story " * 5
    book.record(1, reason)
    result = runner.invoke(app, ["poison", "list"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert GUID.format(1) in result.stdout  # whole, on one line


def test_list_masks_the_reasons_and_members(book: Book) -> None:
    event = ev(1, member_ref=MemberRef(MemberRefKind.PERSONNUMMER, PNR))
    book.poison(f"unmatched: no member with governmentid = '{PNR}'", event)
    result = invoke("list", "--json")
    assert result.exit_code == 0, result.output
    assert PNR not in result.stdout
    assert json.loads(result.stdout.splitlines()[0])["member_refs"] == ["19811218-****"]
    table = invoke("list")
    assert PNR not in table.stdout
    assert "19811218-****" in table.stdout


# --- show -------------------------------------------------------------------------------------


@pytest.fixture
def poisoned(book: Book) -> str:
    book.poison(
        f"unmatched: no member with governmentid = '{PNR}'",
        ev(1, member_ref=MemberRef(MemberRefKind.PERSONNUMMER, PNR)),
    )
    (entry,) = book.queue.poison_peek()
    return entry.message_id


def test_poison_show_masks_personnummer(poisoned: str) -> None:
    result = invoke("show", poisoned)
    assert result.exit_code == 0, result.output
    assert PNR not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["events"][0]["member_ref"]["value"] == "19811218-****"
    assert shown["reason"] == "unmatched: no member with governmentid = '19811218-****'"


def test_poison_show_with_show_pnr_prints_it_in_full(poisoned: str) -> None:
    result = invoke("show", poisoned, "--show-pnr")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["events"][0]["member_ref"]["value"] == PNR


def test_show_takes_a_unique_prefix_and_names_the_candidates_of_an_ambiguous_one(
    book: Book,
) -> None:
    book.record(1, "failed: 400")
    book.record(2, "failed: 400")
    book.record(3, "failed: 400")
    other = "7b1d04aa-0000-4000-8000-000000000009"
    book.ops.put_poison(
        [PoisonRecord(other, datetime.now(UTC), "failed: 500", "swish", (), (), "", "")]
    )
    unique = invoke("show", "7b1d")
    assert unique.exit_code == 0, unique.output
    assert json.loads(unique.stdout)["message_id"] == other
    ambiguous = invoke("show", "3f2a9c1e")
    assert ambiguous.exit_code == 2
    for n in (1, 2, 3):
        assert GUID.format(n) in ambiguous.stderr
    missing = invoke("show", "0000")
    assert missing.exit_code == 2
    assert "no poison message 0000" in missing.stderr


# --- replay -----------------------------------------------------------------------------------


def test_replay_by_filter_puts_the_events_back_and_leaves_the_rest(book: Book) -> None:
    for n in range(1, 31):
        book.poison("unmatched: no member", ev(n, member=str(200000 + n)))
    book.poison("failed: 400", ev(99))
    result = invoke("replay", "--reason", "unmatched")
    assert result.exit_code == 0, result.output
    assert "replayed 30 poison message(s): 30 event(s) back on the queue in 1 message(s)" in (
        result.stdout
    )
    assert len(book.queue.peek_events()) == 30
    assert [r.reason for r in book.ops.poison_iter(ALL)] == ["failed: 400"]
    (audit,) = book.ops.audits(datetime.now(UTC) - timedelta(minutes=1))
    assert (audit.action, audit.via, audit.what, audit.count) == (
        "replay",
        "cli",
        "reason=unmatched",
        30,
    )
    assert audit.who


def test_replay_by_ids_and_prefixes(book: Book) -> None:
    for n in (1, 2):
        book.record(n, "failed: 400")
    book.record(3, "failed: 400", message_id="7b1d04aa-0000-4000-8000-000000000009")
    result = invoke("replay", GUID.format(1), "7b1d")
    assert result.exit_code == 0, result.output
    assert "replayed 2 poison message(s)" in result.stdout
    assert [r.message_id for r in book.ops.poison_iter(ALL)] == [GUID.format(2)]


def test_replay_all_says_which_records_it_skipped_and_exits_1(book: Book) -> None:
    book.queue.send_raw("garbage")
    (message,) = book.queue.receive()
    book.queue.to_poison(message, "undecodable: not base64")
    book.poison("failed: 400", ev(1))
    result = invoke("replay", "--all")
    assert result.exit_code == 1
    (kept,) = book.ops.poison_iter(ALL)
    assert "replayed 1 poison message(s)" in result.stdout
    assert "skipped 1 message(s)" in result.stderr
    assert kept.message_id in result.stderr


@pytest.mark.parametrize(
    "args",
    [(), ("some-id", "--all"), ("some-id", "--reason", "failed")],
    ids=["nothing", "ids-and-all", "ids-and-filter"],
)
def test_replay_needs_one_clear_choice(book: Book, args: tuple[str, ...]) -> None:
    book.record(1, "failed: 400")
    result = invoke("replay", *args)
    assert result.exit_code == 2
    assert book.ops.poison_count(ALL) == 1


def test_replaying_an_unknown_id_is_exit_2_and_replays_nothing(book: Book) -> None:
    book.record(1, "failed: 400")
    result = invoke("replay", GUID.format(1), "nope")
    assert result.exit_code == 2
    assert "no poison message nope" in result.stderr
    assert len(book.queue) == 0


# --- purge ------------------------------------------------------------------------------------


def test_purge_by_filter_asks_with_the_count_and_removes_only_the_matches(book: Book) -> None:
    for n in range(1, 5):
        book.record(n, "unmatched: no member")
    book.record(9, "failed: 400")
    declined = invoke("purge", "--reason", "unmatched", stdin="n\n")
    assert declined.exit_code == 1
    assert "Purge 4 poison message(s) (reason=unmatched) for good?" in declined.stdout
    assert book.ops.poison_count(ALL) == 5
    accepted = invoke("purge", "--reason", "unmatched", stdin="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert "purged 4 poison message(s)" in accepted.stdout
    assert [r.message_id for r in book.ops.poison_iter(ALL)] == [GUID.format(9)]
    assert len(book.queue) == 0
    (audit,) = book.ops.audits(datetime.now(UTC) - timedelta(minutes=1))
    assert (audit.action, audit.count, audit.via) == ("purge", 4, "cli")


def test_purge_ids_with_yes_does_not_ask(book: Book) -> None:
    book.record(1, "failed: 400", message_id="7b1d04aa-0000-4000-8000-000000000009")
    book.record(2, "failed: 400")
    result = invoke("purge", "7b1d04", GUID.format(2), "--yes")
    assert result.exit_code == 0, result.output
    assert "purged 2 poison message(s)" in result.stdout
    assert book.ops.poison_count(ALL) == 0


def test_purging_an_unknown_id_is_exit_2(book: Book) -> None:
    result = invoke("purge", "nope", "--yes")
    assert result.exit_code == 2
    assert "no poison message nope" in result.stderr


def test_an_azure_queue_with_the_book_in_memory_is_refused_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_QUEUE__BACKEND", "azure")
    monkeypatch.setenv(
        "BRIDGE_QUEUE__CONNECTION_STRING",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;",
    )
    result = invoke("list")
    assert result.exit_code == 2
    assert "BRIDGE_OPS__BACKEND=tables" in result.stderr


def test_the_who_of_an_audit_is_the_os_user(book: Book, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poison_cli.getpass, "getuser", lambda: "anna.admin")
    book.record(1, "failed: 400")
    assert invoke("replay", "--all").exit_code == 0
    (audit,) = book.ops.audits(datetime.now(UTC) - timedelta(minutes=1))
    assert (audit.who, audit.what) == ("anna.admin", "all")
