"""What every operations store does: one specification, run against the in-memory store and
the Table Storage store on Azurite (tests/ops/conftest.py gives both as ``store``)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from dynamics_bridge.errors import InputError, NotFoundError
from dynamics_bridge.ops.model import AuditRecord, PoisonFilter, PoisonRecord, RunRecord
from dynamics_bridge.ops.port import OpsStore

NOW = datetime.now(UTC).replace(microsecond=123456)
TODAY = NOW.date()


def run(
    run_id: str,
    at: datetime,
    *,
    kind: str = "queue",
    name: str = "sync",
    counts: dict[str, int] | None = None,
    errors: tuple[str, ...] = (),
) -> RunRecord:
    return RunRecord(
        run_id,
        kind,
        name,
        at,
        duration_ms=42,
        counts=counts if counts is not None else {"bgmax/payment/applied": 1},
        errors=errors,
        detail={"file": "in/bgmax/BG-1.txt"} if kind == "file" else {},
    )


def poison(
    message_id: str,
    at: datetime,
    *,
    reason: str = "unmatched: no member 4711",
    source: str = "bgmax",
    members: tuple[str, ...] = ("4711",),
    events: tuple[str, ...] | None = None,
    file: str = "in/bgmax/BG-20261130.txt",
    body: str | None = None,
) -> PoisonRecord:
    events = events if events is not None else (f"ev-{message_id}",)
    text = body if body is not None else json.dumps({"events": [{"event_id": e} for e in events]})
    return PoisonRecord(message_id, at, reason, source, events, members, file, text)


def ids(records) -> list[str]:
    return [r.message_id for r in records]


def all_pages(store: OpsStore, where: PoisonFilter, limit: int) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        page = store.poison_page(where, limit=limit, cursor=cursor)
        pages.append(ids(page.records))
        cursor = page.cursor
        if cursor is None:
            return pages


# --- run history ---------------------------------------------------------------------------


def test_runs_come_back_newest_first_across_days_within_the_window(store: OpsStore) -> None:
    times = [NOW - timedelta(days=d, hours=h) for d in (0, 1, 3) for h in (0, 5)]
    for i, at in enumerate(times):
        store.record_run(run(f"r{i}", at))
    store.record_run(run("too-old", NOW - timedelta(days=10)))

    got = list(store.runs(NOW - timedelta(days=5)))

    assert [r.started_at for r in got] == sorted(times, reverse=True)
    assert "too-old" not in [r.run_id for r in got]


def test_a_run_keeps_what_it_recorded(store: OpsStore) -> None:
    original = run(
        "file-1",
        NOW - timedelta(minutes=3),
        kind="file",
        name="bgmax",
        counts={"bgmax/payment/queued": 12, "bgmax/payment/unmatched": 2},
        errors=("row 4: bad amount",),
    )
    store.record_run(original)

    (got,) = store.runs(NOW - timedelta(hours=1))

    assert got == original
    assert not got.ok


def test_runs_filter_by_kind_and_until(store: OpsStore) -> None:
    store.record_run(run("q", NOW - timedelta(hours=1)))
    store.record_run(run("f", NOW - timedelta(hours=2), kind="file", name="bgmax"))
    store.record_run(run("t", NOW - timedelta(hours=3), kind="timer", name="segments"))
    store.record_run(run("f-late", NOW - timedelta(minutes=5), kind="file", name="autogiro"))

    files = list(store.runs(NOW - timedelta(days=1), kind="file"))
    earlier = list(store.runs(NOW - timedelta(days=1), NOW - timedelta(minutes=90)))

    assert [r.run_id for r in files] == ["f-late", "f"]
    assert [r.run_id for r in earlier] == ["f", "t"]


def test_day_totals_sum_each_day_asked_in_order_and_an_empty_day_is_empty(store: OpsStore) -> None:
    three_days_ago = NOW - timedelta(days=3)
    store.record_run(run("a", three_days_ago, counts={"bgmax/payment/applied": 5}))
    store.record_run(
        run("b", three_days_ago, counts={"bgmax/payment/applied": 2}, errors=("boom",))
    )
    store.record_run(run("c", NOW, counts={"swish/payment/unmatched": 1}))
    asked = [TODAY, (NOW - timedelta(days=2)).date(), three_days_ago.date()]

    today, empty, old = store.day_totals(asked)

    assert [t.day for t in (today, empty, old)] == asked
    assert old.counts["bgmax/payment/applied"] == 7
    assert old.runs["queue:sync"] == 2
    assert old.failed_runs == 1
    assert empty.counts == {}
    assert sum(empty.runs.values()) == 0
    assert today.counts == {"swish/payment/unmatched": 1}


def test_todays_totals_are_always_fresh(store: OpsStore) -> None:
    store.record_run(run("one", NOW - timedelta(seconds=2)))
    assert store.day_totals([TODAY])[0].runs["queue:sync"] == 1

    store.record_run(run("two", NOW - timedelta(seconds=1)))

    assert store.day_totals([TODAY])[0].runs["queue:sync"] == 2


def test_a_closed_days_totals_take_in_a_run_recorded_late_for_that_day(store: OpsStore) -> None:
    day = NOW - timedelta(days=4)
    store.record_run(run("early", day))
    assert store.day_totals([day.date()])[0].runs["queue:sync"] == 1  # kept now, if kept
    assert store.day_totals([day.date()])[0].runs["queue:sync"] == 1  # read back the same

    store.record_run(run("late", day + timedelta(minutes=1)))

    assert store.day_totals([day.date()])[0].runs["queue:sync"] == 2


def test_expire_removes_runs_and_audits_before_the_cut_and_says_how_many(store: OpsStore) -> None:
    cut = NOW - timedelta(days=90)
    for days in (91, 95, 120):
        store.record_run(run(f"old-{days}", NOW - timedelta(days=days)))
    store.record_run(run("kept", NOW - timedelta(days=89)))
    store.record_run(run("same-day-after-cut", cut + timedelta(seconds=1)))
    store.record_run(run("same-day-before-cut", cut - timedelta(seconds=1)))
    store.record_audit(AuditRecord(NOW - timedelta(days=100), "ops", "purge", "all", 3, "cli"))
    store.record_audit(AuditRecord(NOW - timedelta(days=1), "ops", "replay", "all", 1, "console"))
    store.put_poison([poison("ancient", NOW - timedelta(days=200))])
    old_totals = store.day_totals([(NOW - timedelta(days=95)).date()])[0]
    assert old_totals.runs["queue:sync"] == 1

    gone = store.expire(cut)

    assert gone == 5  # four runs, one audit
    left = {r.run_id for r in store.runs(NOW - timedelta(days=365))}
    assert left == {"kept", "same-day-after-cut"}
    assert [a.action for a in store.audits(NOW - timedelta(days=365))] == ["replay"]
    assert store.day_totals([(NOW - timedelta(days=95)).date()])[0].runs == {}
    assert store.poison_get("ancient").message_id == "ancient"  # poison is not expired


# --- audits --------------------------------------------------------------------------------


def test_audits_come_back_newest_first_since_a_time(store: OpsStore) -> None:
    entries = [
        AuditRecord(NOW - timedelta(hours=h), f"who{h}", "replay", "reason=unmatched", h, "cli")
        for h in (30, 2, 50, 1)
    ]
    for entry in entries:
        store.record_audit(entry)

    got = store.audits(NOW - timedelta(hours=40))

    assert got == sorted(
        [e for e in entries if e.at >= NOW - timedelta(hours=40)], key=lambda e: e.at, reverse=True
    )


# --- poison book ---------------------------------------------------------------------------


@pytest.fixture
def book(store: OpsStore) -> OpsStore:
    """Fourteen poison records over five days: sources, reasons, members and files mixed."""
    records = []
    for i in range(14):
        at = NOW - timedelta(hours=9 * i, minutes=i)
        reason = ("unmatched: no member", "failed: Dataverse said 400", "undecodable message")[
            i % 3
        ]
        records.append(
            poison(
                f"{i:02d}-msg",
                at,
                reason=reason,
                source=("bgmax", "autogiro", "swish")[i % 3 if i % 5 else 0],
                members=(f"M{i % 4}",),
                file=f"in/x/F{i % 2}.txt" if i % 3 != 2 else "",
            )
        )
    store.put_poison(records)
    store.records = records  # type: ignore[attr-defined]
    return store


def expected(book: OpsStore, where: PoisonFilter) -> list[str]:
    chosen = [r for r in book.records if where.matches(r)]  # type: ignore[attr-defined]
    return ids(sorted(chosen, key=lambda r: r.failed_at, reverse=True))


FILTERS = {
    "all": PoisonFilter(),
    "reason word": PoisonFilter(reason="unmatched"),
    "reason word, any case": PoisonFilter(reason="UNMATCHED"),
    "reason text": PoisonFilter(reason="said 400"),
    "source": PoisonFilter(source="BgMax"),
    "since": PoisonFilter(since=NOW - timedelta(hours=40)),
    "until": PoisonFilter(until=NOW - timedelta(hours=40)),
    "window mid-hour": PoisonFilter(
        since=NOW - timedelta(hours=80, minutes=17), until=NOW - timedelta(hours=20, minutes=41)
    ),
    "reason, source, since": PoisonFilter(
        reason="unmatched", source="bgmax", since=NOW - timedelta(days=4)
    ),
    "member": PoisonFilter(search="M1"),
    "event id": PoisonFilter(search="ev-05-msg"),
    "file path": PoisonFilter(search="in/x/F0.txt"),
    "file name": PoisonFilter(search="F1.txt"),
    "message id prefix": PoisonFilter(search="1"),
    "search and source": PoisonFilter(search="M2", source="swish"),
    "nothing": PoisonFilter(search="nobody"),
}


@pytest.mark.parametrize("where", FILTERS.values(), ids=FILTERS.keys())
def test_a_filtered_page_is_the_matching_records_newest_first(
    book: OpsStore, where: PoisonFilter
) -> None:
    page = book.poison_page(where, limit=100)

    assert ids(page.records) == expected(book, where)
    assert page.cursor is None


@pytest.mark.parametrize("where", FILTERS.values(), ids=FILTERS.keys())
def test_the_count_is_the_number_of_records_iterated(book: OpsStore, where: PoisonFilter) -> None:
    iterated = ids(book.poison_iter(where))

    assert iterated == expected(book, where)
    assert book.poison_count(where) == len(iterated)


@pytest.mark.parametrize("limit", [1, 3, 5, 14])
def test_pages_follow_the_cursor_until_none_and_cover_every_record_once(
    book: OpsStore, limit: int
) -> None:
    pages = all_pages(book, PoisonFilter(), limit)

    assert [i for page in pages for i in page] == expected(book, PoisonFilter())
    assert all(len(page) == limit for page in pages[:-1])
    assert 0 < len(pages[-1]) <= limit


def test_filtered_pages_follow_the_cursor_too(book: OpsStore) -> None:
    where = PoisonFilter(reason="said 400")

    pages = all_pages(book, where, 2)

    assert [i for page in pages for i in page] == expected(book, where)


def test_a_record_comes_back_whole(store: OpsStore) -> None:
    original = poison(
        "whole",
        NOW - timedelta(minutes=1),
        members=("198001011234", "42"),
        events=("e1", "e2", "e3"),
        reason="failed: " + "x" * 100,
    )
    store.put_poison([original])

    assert store.poison_get("whole") == original
    assert store.poison_page(PoisonFilter()).records == [original]


def test_a_body_longer_than_one_table_property_survives(store: OpsStore) -> None:
    events = [{"event_id": f"e{i}", "note": "å" * 500} for i in range(150)]
    big = poison("big", NOW, body=json.dumps({"events": events}))
    assert len(big.body) > 64 * 1024

    store.put_poison([big])

    assert store.poison_get("big").body == big.body
    assert len(store.poison_get("big").events()) == 150


def test_members_and_events_past_the_first_few_are_still_found(store: OpsStore) -> None:
    members = tuple(f"m{i}" for i in range(8))
    store.put_poison([poison("many", NOW, members=members, events=("a", "b", "c", "d"))])
    store.put_poison([poison("other", NOW - timedelta(minutes=1), members=("x",))])

    for needle in ("m7", "d", "m0"):
        assert ids(store.poison_iter(PoisonFilter(search=needle))) == ["many"]
        assert store.poison_count(PoisonFilter(search=needle)) == 1


def test_put_replaces_by_message_id(store: OpsStore) -> None:
    at = NOW - timedelta(hours=2)
    store.put_poison([poison("same", at, reason="unmatched: no member")])

    store.put_poison([poison("same", at, reason="failed: retried", source="swish")])

    assert store.poison_get("same").reason == "failed: retried"
    assert store.poison_count(PoisonFilter()) == 1
    assert store.poison_count(PoisonFilter(reason="unmatched")) == 0
    assert store.poison_count(PoisonFilter(reason="failed", source="swish")) == 1


def test_put_of_the_same_id_at_another_time_keeps_one_record(store: OpsStore) -> None:
    store.put_poison([poison("moving", NOW - timedelta(days=3))])

    store.put_poison([poison("moving", NOW - timedelta(minutes=5))])

    assert [r.failed_at for r in store.poison_iter(PoisonFilter())] == [NOW - timedelta(minutes=5)]
    assert store.poison_count(PoisonFilter()) == 1


def test_put_and_delete_in_bulk_keep_the_counts(store: OpsStore) -> None:
    records = [
        poison(f"bulk-{i:04d}", NOW - timedelta(minutes=i), source=("bgmax", "swish")[i % 2])
        for i in range(250)
    ]
    store.put_poison(records)
    assert store.poison_count(PoisonFilter()) == 250
    assert store.poison_count(PoisonFilter(source="swish")) == 125

    gone = store.delete_poison([r.message_id for r in records[:180]])

    assert gone == 180
    assert store.poison_count(PoisonFilter()) == 70
    assert store.poison_count(PoisonFilter(source="swish", reason="unmatched")) == 35
    assert len(list(store.poison_iter(PoisonFilter()))) == 70


def test_delete_returns_how_many_were_there(store: OpsStore) -> None:
    store.put_poison([poison("a", NOW), poison("b", NOW - timedelta(seconds=1))])

    assert store.delete_poison(["a", "missing", "a"]) == 1
    assert store.delete_poison(["a"]) == 0
    assert ids(store.poison_iter(PoisonFilter())) == ["b"]
    with pytest.raises(NotFoundError):
        store.poison_get("a")


def test_delete_by_id_works_from_a_store_that_never_read_the_record(
    store: OpsStore, request: pytest.FixtureRequest
) -> None:
    store.put_poison([poison("elsewhere", NOW)])
    other = _second_handle(store, request)

    assert other.delete_poison(["elsewhere"]) == 1
    assert store.poison_count(PoisonFilter()) == 0


def _second_handle(store: OpsStore, request: pytest.FixtureRequest) -> OpsStore:
    """Another process's view of the same store (tables: a new client on the same tables)."""
    from dynamics_bridge.ops.tables import TableOpsStore

    if isinstance(store, TableOpsStore):
        conn = request.getfixturevalue("azurite")
        return TableOpsStore.from_connection_string(conn, prefix=store._prefix)
    return store


def test_a_unique_prefix_finds_the_record(book: OpsStore) -> None:
    assert book.poison_get("07").message_id == "07-msg"
    assert book.poison_get("  07-msg ").message_id == "07-msg"


def test_an_ambiguous_prefix_is_refused_naming_the_candidates(book: OpsStore) -> None:
    with pytest.raises(InputError) as caught:
        book.poison_get("1")

    message = str(caught.value)
    assert "message id" in message
    for candidate in ("10-msg", "11-msg", "12-msg"):
        assert candidate in message


def test_an_unknown_id_is_not_found(book: OpsStore) -> None:
    with pytest.raises(NotFoundError):
        book.poison_get("zz")
    with pytest.raises(NotFoundError):
        book.poison_get("")


def test_message_ids_with_awkward_characters_are_kept_and_found(store: OpsStore) -> None:
    odd = "a/b#c?d\\e%f"
    store.put_poison([poison(odd, NOW), poison("a/b#x", NOW - timedelta(seconds=1))])

    assert store.poison_get(odd).message_id == odd
    assert store.poison_get("a/b#c").message_id == odd
    with pytest.raises(InputError, match="a/b#x"):
        store.poison_get("a/b#")
    assert store.delete_poison([odd]) == 1


def test_an_empty_book_has_no_pages_and_counts_nothing(store: OpsStore) -> None:
    page = store.poison_page(PoisonFilter(reason="unmatched"))

    assert page.records == []
    assert page.cursor is None
    assert store.poison_count(PoisonFilter()) == 0
    assert store.delete_poison([]) == 0
    store.put_poison([])


def test_day_totals_of_no_days_is_empty(store: OpsStore) -> None:
    assert store.day_totals([]) == []


def test_days_are_utc(store: OpsStore) -> None:
    late = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    store.record_run(run("late", late))

    nov30, dec1 = store.day_totals([date(2026, 11, 30), date(2026, 12, 1)])

    assert nov30.runs["queue:sync"] == 1
    assert dec1.runs == {}


def test_two_writers_on_the_same_day_keep_the_counts_right(
    store: OpsStore, request: pytest.FixtureRequest
) -> None:
    other = _second_handle(store, request)
    store.put_poison([poison("w1", NOW - timedelta(seconds=1))])
    other.put_poison([poison("w2", NOW - timedelta(seconds=2))])
    store.put_poison([poison("w3", NOW - timedelta(seconds=3))])  # its view of the day is stale
    other.delete_poison(["w1"])

    assert store.delete_poison(["w2"]) == 1
    assert store.poison_count(PoisonFilter()) == 1
    assert other.poison_count(PoisonFilter(reason="unmatched")) == 1
    assert ids(other.poison_iter(PoisonFilter())) == ["w3"]


def test_a_record_another_writer_removed_or_moved_is_handled_by_id(
    store: OpsStore, request: pytest.FixtureRequest
) -> None:
    other = _second_handle(store, request)
    store.put_poison([poison("gone", NOW), poison("moved", NOW - timedelta(minutes=1))])
    assert len(list(store.poison_iter(PoisonFilter()))) == 2  # both seen (and where they are)
    other.delete_poison(["gone"])
    other.put_poison([poison("moved", NOW - timedelta(days=2))])

    assert store.delete_poison(["gone", "moved"]) == 1
    assert store.poison_count(PoisonFilter()) == 0
    assert other.poison_count(PoisonFilter()) == 0
    assert list(other.poison_iter(PoisonFilter())) == []


def test_many_runs_come_back_whole_across_pages(store: OpsStore) -> None:
    times = [NOW - timedelta(minutes=7 * i) for i in range(130)]
    if hasattr(store, "record_runs"):
        store.record_runs([run(f"r{i}", at) for i, at in enumerate(times)])
    else:
        for i, at in enumerate(times):
            store.record_run(run(f"r{i}", at))

    got = list(store.runs(NOW - timedelta(days=1)))

    assert [r.started_at for r in got] == times


def test_a_record_changed_by_another_writer_after_it_was_read_is_deleted_with_its_counts(
    store: OpsStore, request: pytest.FixtureRequest
) -> None:
    other = _second_handle(store, request)
    at = NOW - timedelta(minutes=3)
    store.put_poison([poison("x", at, reason="unmatched: no member", source="bgmax")])
    assert ids(store.poison_iter(PoisonFilter())) == ["x"]  # read as unmatched, bgmax
    other.put_poison([poison("x", at, reason="failed: later", source="swish")])

    assert store.delete_poison(["x"]) == 1

    for where in (PoisonFilter(), PoisonFilter(reason="failed"), PoisonFilter(source="bgmax")):
        assert other.poison_count(where) == 0
    assert other.poison_count(PoisonFilter(reason="unmatched")) == 0
