"""The pipeline, specified: one outcome per event, idempotent, never regressing a member."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.model import (
    EventKind,
    MemberRef,
    MemberRefKind,
    Outcome,
    Source,
    make_event_id,
)
from dynamics_bridge.pipeline import Pipeline, summarize
from tests.fakes import FakeMemberStore
from tests.test_model import event

MAPPING = load_mapping()
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def ev(
    n: int,
    member: str = "100001",
    kind: EventKind = EventKind.PAYMENT_SUCCEEDED,
    minutes: int = 0,
    **changes,
):
    values = {
        "event_id": make_event_id(Source.SWISH, str(n)),
        "kind": kind,
        "member_ref": MemberRef(MemberRefKind.MEMBER_NUMBER, member),
        "occurred_at": T0 + timedelta(minutes=minutes),
    }
    return event(**{**values, **changes})


@pytest.fixture
def store() -> FakeMemberStore:
    return FakeMemberStore({str(100001 + i): {"mbr_arrears": 0} for i in range(5)})


def test_a_payment_is_applied_with_its_row_and_member_columns(store) -> None:
    (outcome,) = Pipeline(store, MAPPING).apply([ev(1)])
    assert outcome.outcome is Outcome.APPLIED
    assert outcome.member_key == "100001"
    assert store.rows["100001"]["mbr_paymentstatus"] == 100000000
    assert store.rows["100001"]["mbr_paidthrough"] == "2026-12-31"
    assert ev(1).event_id in store.payments


def test_a_replayed_event_is_a_duplicate_and_changes_nothing(store) -> None:
    Pipeline(store, MAPPING).apply([ev(1)])
    before = dict(store.rows["100001"])
    (outcome,) = Pipeline(store, MAPPING).apply([ev(1)])
    assert outcome.outcome is Outcome.DUPLICATE
    assert store.rows["100001"] == before


def test_the_same_event_twice_in_one_batch_is_applied_once(store) -> None:
    outcomes = Pipeline(store, MAPPING).apply([ev(1), ev(1)])
    assert [o.outcome for o in outcomes] == [Outcome.APPLIED, Outcome.DUPLICATE]


def test_an_unknown_member_is_unmatched_and_named(store) -> None:
    (outcome,) = Pipeline(store, MAPPING).apply([ev(1, member="999999")])
    assert outcome.outcome is Outcome.UNMATCHED
    assert "'999999'" in (outcome.reason or "")
    assert store.payments == {}


def test_an_older_event_is_applied_in_event_order_the_member_not_regressed(store) -> None:
    pipeline = Pipeline(store, MAPPING)
    pipeline.apply([ev(2, minutes=60)])
    late_failure = ev(1, kind=EventKind.PAYMENT_FAILED, minutes=0, reason_code="RF07")
    (outcome,) = pipeline.apply([late_failure])
    assert outcome.outcome is Outcome.APPLIED
    assert outcome.replayed  # once stale: folded into place, its triggers judged as late
    assert late_failure.event_id in store.payments
    assert store.rows["100001"]["mbr_paymentstatus"] == 100000000  # the newer payment wins
    assert store.rows["100001"]["mbr_lastfailedon"] == "2026-11-02"  # the failure is counted


def test_without_history_columns_an_older_event_is_stale(store) -> None:
    payment = MAPPING.payment.model_copy(update={"event_column": None, "before_column": None})
    mapping = MAPPING.model_copy(update={"payment": payment})
    pipeline = Pipeline(store, mapping)
    pipeline.apply([ev(2, minutes=60)])
    late_failure = ev(1, kind=EventKind.PAYMENT_FAILED, minutes=0, reason_code="RF07")
    (outcome,) = pipeline.apply([late_failure])
    assert outcome.outcome is Outcome.STALE
    assert late_failure.event_id in store.payments
    assert store.rows["100001"]["mbr_paymentstatus"] == 100000000
    assert "mbr_lastfailedon" not in store.rows["100001"]


def test_events_of_one_member_in_a_batch_apply_in_event_time_order(store) -> None:
    failed_later = ev(2, kind=EventKind.PAYMENT_FAILED, minutes=30, amount_minor=25000)
    paid_first = ev(1, minutes=0)
    outcomes = Pipeline(store, MAPPING).apply([failed_later, paid_first])
    assert [o.outcome for o in outcomes] == [Outcome.APPLIED, Outcome.APPLIED]
    assert store.rows["100001"]["mbr_paymentstatus"] == 100000001
    assert store.rows["100001"]["mbr_arrears"] == 250.0


def test_a_batch_costs_a_constant_number_of_requests(store) -> None:
    events = [ev(i, member=str(100001 + i % 5), minutes=i) for i in range(200)]
    Pipeline(store, MAPPING).apply(events)
    assert store.requests == 3  # read members, check existing rows, one write


def test_an_etag_conflict_rereads_and_recomputes(store) -> None:
    store.conflicts_left = 1
    (outcome,) = Pipeline(store, MAPPING).apply([ev(1)])
    assert outcome.outcome is Outcome.APPLIED
    assert store.rows["100001"]["touched_by_someone_else"] is True
    assert store.rows["100001"]["mbr_paymentstatus"] == 100000000


def test_a_failing_row_fails_its_event_and_the_others_still_apply(store) -> None:
    store.fail_payment[ev(2).event_id] = "400 0x80044331 text too long"
    outcomes = Pipeline(store, MAPPING).apply([ev(1, minutes=0), ev(2, minutes=5)])
    assert [o.outcome for o in outcomes] == [Outcome.APPLIED, Outcome.FAILED]
    assert "too long" in (outcomes[1].reason or "")
    assert not outcomes[1].retryable


def test_a_transient_failure_is_failed_and_retryable(store) -> None:
    store.transient_left = 1
    (outcome,) = Pipeline(store, MAPPING).apply([ev(1)])
    assert outcome.outcome is Outcome.FAILED
    assert outcome.retryable


def test_a_refund_naming_only_the_original_payment_finds_its_member(store) -> None:
    pipeline = Pipeline(store, MAPPING)
    pipeline.apply([ev(1, member="100003", provider_ref="PAY-77")])
    refund = ev(
        2,
        kind=EventKind.PAYMENT_REFUNDED,
        minutes=10,
        member_ref=MemberRef(MemberRefKind.PAYMENT, "PAY-77"),
    )
    (outcome,) = pipeline.apply([refund])
    assert (outcome.outcome, outcome.member_key) == (Outcome.APPLIED, "100003")
    assert store.rows["100003"]["mbr_paymentstatus"] == 100000002


def test_dry_run_plans_old_and_new_values_and_writes_nothing(store) -> None:
    (outcome,) = Pipeline(store, MAPPING).apply([ev(1)], dry_run=True)
    assert outcome.outcome is Outcome.APPLIED
    assert outcome.changes["mbr_paymentstatus"] == (None, 100000000)
    assert store.payments == {}
    assert "mbr_paymentstatus" not in store.rows["100001"]


def test_summarize_counts_every_outcome(store) -> None:
    outcomes = Pipeline(store, MAPPING).apply([ev(1), ev(1), ev(2, member="404")])
    assert summarize(outcomes) == {
        "applied": 1,
        "duplicate": 1,
        "stale": 0,
        "unmatched": 1,
        "failed": 0,
    }


# -- an event the mapping cannot plan fails alone ---------------------------------------------


def mapping_without_refunded_status():
    """A mapping that loads, but cannot turn a refund into a payment status (no such option)."""
    mapping = MAPPING.model_copy(deep=True)
    del mapping.choices["payment_status"].options["refunded"]
    return mapping


def test_a_transform_config_error_fails_only_its_event_naming_the_column(store) -> None:
    refund = ev(2, kind=EventKind.PAYMENT_REFUNDED, minutes=10)
    events = [ev(1), refund, ev(3, member="100002"), ev(4, minutes=20)]
    outcomes = Pipeline(store, mapping_without_refunded_status()).apply(events)
    assert [o.outcome for o in outcomes] == [
        Outcome.APPLIED,
        Outcome.FAILED,
        Outcome.APPLIED,
        Outcome.APPLIED,
    ]
    failed = outcomes[1]
    assert not failed.retryable
    assert "contact.mbr_paymentstatus (choice)" in (failed.reason or "")
    assert "no option 'refunded'" in (failed.reason or "")
    assert refund.event_id not in store.payments
    assert {ev(1).event_id, ev(3).event_id, ev(4).event_id} <= set(store.payments)
    assert store.rows["100001"]["mbr_paymentstatus"] == 100000000  # the later payment applied


def test_an_unexpected_error_in_a_payment_transform_fails_only_its_event(store) -> None:
    from dynamics_bridge.mapping.models import Transform

    mapping = MAPPING.model_copy(deep=True)
    # Formats a text field: an event without a reason code makes it raise a TypeError.
    mapping.payment.values["mbr_name"] = Transform.model_validate({"template": "{reason_code:.3}"})
    with_code = ev(1, reason_code="RF07")
    without = ev(2, member="100002")
    outcomes = Pipeline(store, mapping).apply([with_code, without])
    assert [o.outcome for o in outcomes] == [Outcome.APPLIED, Outcome.FAILED]
    assert "mbr_payment.mbr_name (template)" in (outcomes[1].reason or "")
    assert "TypeError" in (outcomes[1].reason or "")
    assert store.payments[with_code.event_id]["mbr_name"] == "RF0"
    assert without.event_id not in store.payments


def test_a_batch_where_every_event_fails_to_plan_writes_nothing(store) -> None:
    refunds = [ev(i, kind=EventKind.PAYMENT_REFUNDED) for i in (1, 2)]
    outcomes = Pipeline(store, mapping_without_refunded_status()).apply(refunds)
    assert [o.outcome for o in outcomes] == [Outcome.FAILED, Outcome.FAILED]
    assert store.payments == {}
    assert store.requests == 2  # read members, check existing rows: no write


def test_dry_run_shows_the_payment_row_each_event_would_create(store) -> None:
    pipeline = Pipeline(store, MAPPING)
    pipeline.apply([ev(1, minutes=60)])
    written = dict(store.payments)
    outcomes = pipeline.apply(
        [ev(2, member="100002"), ev(3, minutes=0), ev(4, member="999999")], dry_run=True
    )
    applied, late, unmatched = outcomes
    assert (applied.outcome, late.outcome) == (Outcome.APPLIED, Outcome.APPLIED)
    assert applied.payment_row is not None
    assert applied.payment_row["mbr_Member@odata.bind"] == "/contacts(mbr_memberno='100002')"
    assert late.replayed
    assert late.payment_row is not None  # an out-of-order event writes its payment row
    assert unmatched.payment_row is None
    assert store.payments == written
