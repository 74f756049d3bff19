"""Events of one member that arrive out of order end as an in-order run ends.

Each payment row keeps its event and the member's columns right before it; an event older than
what the member has seen is folded into place from the next later row's snapshot, through the
later rows' events again. In-order arrivals read nothing more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    Outcome,
    PaymentEvent,
    Source,
    make_event_id,
)
from dynamics_bridge.pipeline import EventOutcome, Pipeline
from tests.fakes import FakeMemberStore
from tests.test_model import event

MAPPING = load_mapping()
JAN_10 = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
MEMBER = "100001"
FAILED, SUCCEEDED = EventKind.PAYMENT_FAILED, EventKind.PAYMENT_SUCCEEDED


def ev(n: str, kind: EventKind, days: int, **changes: Any) -> PaymentEvent:
    source = changes.pop("source", Source.SWISH)
    values: dict[str, Any] = {
        "event_id": make_event_id(source, n),
        "source": source,
        "kind": kind,
        "member_ref": MemberRef(MemberRefKind.MEMBER_NUMBER, MEMBER),
        "occurred_at": JAN_10 + timedelta(days=days),
        "amount_minor": 25000,
    }
    return event(**{**values, **changes})


def fresh() -> FakeMemberStore:
    return FakeMemberStore({MEMBER: {"mbr_arrears": 0}, "100002": {"mbr_arrears": 0}})


def deliver(batches: Sequence[Sequence[PaymentEvent]], store: FakeMemberStore | None = None):
    store = store or fresh()
    pipeline = Pipeline(store, MAPPING)
    outcomes = [o for batch in batches for o in pipeline.apply(list(batch))]
    return store, outcomes


def in_order(events: Sequence[PaymentEvent]) -> dict[str, Any]:
    store, _ = deliver([[e] for e in sorted(events, key=lambda e: e.occurred_at)])
    return store.rows[MEMBER]


def test_two_failed_months_delivered_newest_first_owe_two_months() -> None:
    january, february = ev("jan", FAILED, 0), ev("feb", FAILED, 31)
    store, outcomes = deliver([[february], [january]])
    assert [o.outcome for o in outcomes] == [Outcome.APPLIED, Outcome.APPLIED]
    assert store.rows[MEMBER]["mbr_arrears"] == 500.0
    assert store.rows[MEMBER]["mbr_lastfailedon"] == "2026-02-10"
    assert store.rows[MEMBER] == in_order([january, february])


def test_three_failed_months_newest_first_owe_three_months() -> None:
    months = [ev(f"m{i}", FAILED, 31 * i) for i in range(3)]
    store, _ = deliver([[months[2]], [months[1]], [months[0]]])
    assert store.rows[MEMBER]["mbr_arrears"] == 750.0
    assert store.rows[MEMBER] == in_order(months)


def test_a_payment_then_an_older_failure_ends_paid_with_nothing_owed() -> None:
    failure, payment = ev("f", FAILED, 0), ev("p", SUCCEEDED, 5)
    store, outcomes = deliver([[payment], [failure]])
    member = store.rows[MEMBER]
    assert member["mbr_paymentstatus"] == 100000000  # paid: the payment is the newer fact
    assert member["mbr_arrears"] == 0.0  # the failure was owed, then paid
    assert member["mbr_lastfailedon"] == "2026-01-10"
    assert member == in_order([failure, payment])
    assert outcomes[1].replayed
    assert outcomes[1].reason is not None


def test_two_yearly_payments_newest_first_pay_through_two_years() -> None:
    first, second = ev("y1", SUCCEEDED, 0), ev("y2", SUCCEEDED, 40)
    store, _ = deliver([[second], [first]])
    assert store.rows[MEMBER]["mbr_paidthrough"] == "2027-12-31"
    assert store.rows[MEMBER] == in_order([first, second])


def test_a_mandate_event_older_than_a_payment_leaves_the_payment_method() -> None:
    approved = ev("m", EventKind.MANDATE_APPROVED, 0, source=Source.AUTOGIRO, amount_minor=0)
    paid_by_swish = ev("p", SUCCEEDED, 3)
    store, outcomes = deliver([[paid_by_swish], [approved]])
    assert store.rows[MEMBER]["mbr_paymentmethod"] == 100000000  # swish, the newer fact
    assert store.rows[MEMBER]["mbr_mandatestatus"] == 100000001
    assert store.rows[MEMBER] == in_order([approved, paid_by_swish])
    # Not older than its own guard: it was never stale, and triggers as it always did.
    assert outcomes[1].outcome is Outcome.APPLIED
    assert not outcomes[1].replayed


def test_events_at_the_same_time_apply_in_event_id_order_however_they_arrive() -> None:
    a, b = ev("a", FAILED, 0), ev("b", SUCCEEDED, 0)
    first, second = sorted([a, b], key=lambda e: e.event_id)
    one_batch, _ = deliver([[b, a]])
    forwards, _ = deliver([[first], [second]])
    backwards, _ = deliver([[second], [first]])
    assert one_batch.rows[MEMBER] == forwards.rows[MEMBER] == backwards.rows[MEMBER]
    status = 100000001 if second.kind is FAILED else 100000000
    assert backwards.rows[MEMBER]["mbr_paymentstatus"] == status


def test_an_event_that_was_a_no_op_still_counts_when_an_older_one_arrives() -> None:
    reminded = [ev("r1", EventKind.INVOICE_REMINDED, 0), ev("r2", EventKind.INVOICE_REMINDED, 20)]
    paid_between = ev("p", SUCCEEDED, 10)
    store, _ = deliver([[reminded[0]], [reminded[1]], [paid_between]])
    assert store.rows[MEMBER]["mbr_paymentstatus"] == 100000005  # reminded: the newest fact
    assert store.rows[MEMBER] == in_order([*reminded, paid_between])


def test_any_arrival_order_of_a_members_events_ends_as_in_order() -> None:
    events = [
        ev("1", FAILED, 0),
        ev("2", SUCCEEDED, 3),
        ev("3", EventKind.MANDATE_APPROVED, 5, source=Source.AUTOGIRO, amount_minor=0),
        ev("4", FAILED, 33, source=Source.AUTOGIRO),
        ev("5", EventKind.PAYMENT_CANCELLED, 34),
        ev("6", FAILED, 60, source=Source.AUTOGIRO),
        ev("7", SUCCEEDED, 61, source=Source.AUTOGIRO, amount_minor=50000),
    ]
    expected = in_order(events)
    for batches in (
        [[e] for e in reversed(events)],
        [[events[6], events[1]], [events[3]], [events[0], events[5], events[2]], [events[4]]],
        [[events[2]], [events[6], events[4], events[0]], [events[5], events[1], events[3]]],
    ):
        store, outcomes = deliver(batches)
        assert store.rows[MEMBER] == expected
        assert {o.outcome for o in outcomes} == {Outcome.APPLIED}
        assert len(store.payments) == len(events)


def test_in_order_arrivals_read_no_history() -> None:
    events = [ev(str(i), FAILED if i % 3 else SUCCEEDED, 31 * i) for i in range(6)]
    store, _ = deliver([[e] for e in events])
    assert store.history_reads == 0
    assert store.requests == 3 * len(events)  # members, existing rows, one write each


def test_only_a_batch_with_an_out_of_order_event_reads_history_once() -> None:
    store, _ = deliver([[ev("feb", FAILED, 31)]])
    other = ev("x", FAILED, 0, member_ref=MemberRef(MemberRefKind.MEMBER_NUMBER, "100002"))
    before = store.requests
    deliver([[ev("jan", FAILED, 0), ev("dec", FAILED, -30), other]], store)
    assert store.history_reads == 1
    assert store.requests - before == 4  # members, existing rows, history, one write


def test_a_replay_rewrites_the_later_rows_member_snapshots() -> None:
    january, february = ev("jan", FAILED, 0), ev("feb", FAILED, 31)
    store, _ = deliver([[february], [january]])
    before_feb = store.payments[february.event_id]["mbr_memberbefore"]
    assert '"mbr_arrears":250.0' in before_feb  # january's failure comes first now


def test_an_etag_conflict_during_a_replay_rereads_and_recomputes() -> None:
    store, _ = deliver([[ev("feb", FAILED, 31)]])
    store.conflicts_left = 1
    deliver([[ev("jan", FAILED, 0)]], store)
    assert store.rows[MEMBER]["mbr_arrears"] == 500.0
    assert store.rows[MEMBER]["touched_by_someone_else"] is True


def test_rows_written_before_the_history_columns_keep_an_older_event_stale() -> None:
    store, _ = deliver([[ev("feb", FAILED, 31)]])
    for row in store.payments.values():  # as written by a bridge without replays
        row.pop("mbr_event")
        row.pop("mbr_memberbefore")
    _, (outcome,) = deliver([[ev("jan", FAILED, 0)]], store)
    assert outcome.outcome is Outcome.STALE
    assert "not replayed" in (outcome.reason or "")
    assert store.rows[MEMBER]["mbr_arrears"] == 250.0


class RecordingHooks:
    def __init__(self) -> None:
        self.extras: list[tuple[str, bool]] = []

    def payment_extras(self, outcome: EventOutcome) -> Mapping[str, Any]:
        self.extras.append((outcome.event.event_id, outcome.replayed))
        return {}

    def after_apply(self, outcomes: Sequence[EventOutcome]) -> object:
        return None


def test_an_event_once_stale_still_asks_for_its_triggers_marked_replayed() -> None:
    # The hook (activation) decides what a late event's triggers become: sent while fresh,
    # kept unsent when too old, a first payment's welcome exactly once per member.
    store = fresh()
    hooks = RecordingHooks()
    pipeline = Pipeline(store, MAPPING, hooks)
    pipeline.apply([ev("feb", SUCCEEDED, 31)])
    late_first_payment, newest = ev("jan", SUCCEEDED, 0), ev("mar", FAILED, 60)
    late, new = pipeline.apply([late_first_payment, newest])
    assert late.replayed
    assert not new.replayed
    assert hooks.extras == [
        (ev("feb", SUCCEEDED, 31).event_id, False),
        (late_first_payment.event_id, True),
        (newest.event_id, False),
    ]
    assert store.rows[MEMBER] == in_order([late_first_payment, ev("feb", SUCCEEDED, 31), newest])


class CutIn(FakeMemberStore):
    """A store where another worker's whole delivery lands between this one's read and write."""

    def __init__(self) -> None:
        super().__init__({MEMBER: {"mbr_arrears": 0}})
        self.other: list[PaymentEvent] = []

    def write(self, units):  # type: ignore[no-untyped-def]
        if self.other:
            other, self.other = self.other, []
            Pipeline(self, MAPPING).apply(other)
        return super().write(units)


def test_two_workers_replaying_late_events_of_one_member_at_once_end_in_order() -> None:
    # Both replays end where the member already is (no member column changes), yet each
    # rewrites the later rows' snapshots: only the member's ETag keeps them from both committing.
    months = [ev("jan", FAILED, 0), ev("feb", FAILED, 20), ev("mar", SUCCEEDED, 40)]
    newest = ev("apr", FAILED, 60)
    store = CutIn()
    Pipeline(store, MAPPING).apply([months[2]])
    Pipeline(store, MAPPING).apply([newest])
    store.other = [months[1]]
    (outcome,) = Pipeline(store, MAPPING).apply([months[0]])
    assert outcome.outcome is Outcome.APPLIED
    assert store.rows[MEMBER] == in_order([*months, newest])
    assert store.rows[MEMBER]["mbr_arrears"] == 500.0


def test_a_change_set_that_changes_no_member_column_still_carries_the_members_etag() -> None:
    # A failure older than the payment that settled it: the member ends where it is, but the
    # payment's snapshot changes, and that write must still meet the member's ETag.
    store = fresh()
    Pipeline(store, MAPPING).apply([ev("mar", SUCCEEDED, 40)])
    Pipeline(store, MAPPING).apply([ev("apr", FAILED, 60)])
    columns, version = dict(store.rows[MEMBER]), store.versions[MEMBER]
    (outcome,) = Pipeline(store, MAPPING).apply([ev("feb", FAILED, 20)])
    assert outcome.outcome is Outcome.APPLIED
    assert store.rows[MEMBER] == columns
    assert store.versions[MEMBER] == version + 1
