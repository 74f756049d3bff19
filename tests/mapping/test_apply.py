"""Planning writes: only real changes, never a regression by an older event."""

from __future__ import annotations

from datetime import UTC, datetime

from dynamics_bridge.mapping import key_literal, load_mapping, payment_row, plan_member_update
from dynamics_bridge.model import EventKind, MemberRef, MemberRefKind, Source

# Re-applying one event is prevented by the pipeline, not here: its payment row is written
# create-only in the same change set, so a replay fails as a duplicate and rolls back.
from tests.test_model import event

MAPPING = load_mapping()
NOV_2 = datetime(2026, 11, 2, 7, 15, tzinfo=UTC)


def test_a_payment_sets_status_method_dates_arrears_and_the_guard() -> None:
    plan = plan_member_update(event(), {"mbr_arrears": 250.0}, MAPPING)
    assert plan.changes == {
        "mbr_paymentstatus": 100000000,
        "mbr_paymentmethod": 100000000,
        "mbr_lastpaidon": "2026-11-02",
        "mbr_paidthrough": "2026-12-31",
        "mbr_arrears": 0.0,
        "mbr_lastpaymentevent": "2026-11-02T07:15:00Z",
    }
    assert plan.old["mbr_arrears"] == 250.0
    assert not plan.stale


def test_columns_that_already_hold_the_value_are_left_out() -> None:
    member = {
        "mbr_paymentstatus": 100000000,
        "mbr_paymentmethod": 100000000,
        "mbr_lastpaidon": "2026-11-02T00:00:00Z",
        "mbr_arrears": 0,
    }
    plan = plan_member_update(event(), member, MAPPING)
    assert set(plan.changes) == {"mbr_paidthrough", "mbr_lastpaymentevent"}


def test_an_event_that_changes_nothing_moves_only_its_guard() -> None:
    # The guard tells a later, older event that it arrives out of order: an event that is a
    # no-op in this order may not be one in event order.
    approved = event(source=Source.AUTOGIRO, kind=EventKind.MANDATE_APPROVED, amount_minor=0)
    member = {"mbr_mandatestatus": 100000001, "mbr_paymentmethod": 100000001}
    changes = plan_member_update(approved, member, MAPPING).changes
    assert changes == {"mbr_lastmandateevent": "2026-11-02T07:15:00Z"}


def test_an_event_that_changes_nothing_at_its_guard_time_plans_no_write() -> None:
    approved = event(source=Source.AUTOGIRO, kind=EventKind.MANDATE_APPROVED, amount_minor=0)
    member = {
        "mbr_mandatestatus": 100000001,
        "mbr_paymentmethod": 100000001,
        "mbr_lastmandateevent": "2026-11-02T07:15:00Z",
    }
    assert plan_member_update(approved, member, MAPPING).changes == {}


def test_an_older_event_is_stale_and_changes_nothing() -> None:
    member = {"mbr_lastpaymentevent": "2026-11-10T00:00:00Z", "mbr_paymentstatus": 100000000}
    failed_earlier = event(kind=EventKind.PAYMENT_FAILED, reason_code="RF07")
    plan = plan_member_update(failed_earlier, member, MAPPING)
    assert plan.stale
    assert plan.changes == {}


def test_mandate_events_have_their_own_guard() -> None:
    member = {"mbr_lastpaymentevent": "2026-12-01T00:00:00Z"}
    mandate = event(source=Source.AUTOGIRO, kind=EventKind.MANDATE_APPROVED, amount_minor=0)
    plan = plan_member_update(mandate, member, MAPPING)
    assert not plan.stale
    assert plan.changes["mbr_mandatestatus"] == 100000001
    assert plan.changes["mbr_lastmandateevent"] == "2026-11-02T07:15:00Z"
    assert "mbr_lastpaymentevent" not in plan.changes


def test_a_kind_without_member_columns_writes_only_its_payment_row() -> None:
    assert plan_member_update(event(kind=EventKind.PAYMENT_CANCELLED), {}, MAPPING).changes == {}


def test_the_payment_row_is_bound_to_its_member_by_alternate_key() -> None:
    row = payment_row(event(), MAPPING, "100234")
    assert row["mbr_Member@odata.bind"] == "/contacts(mbr_memberno='100234')"
    assert row["mbr_amount"] == 250.0
    assert row["mbr_kind"] == 100000000
    assert row["mbr_memberref"] == "member_number:100234"
    assert "mbr_eventid" not in row  # the key goes in the URL, never twice


def test_key_literals_double_inner_apostrophes() -> None:
    assert key_literal("O'Brien") == "'O''Brien'"


def test_a_refund_naming_only_a_payment_still_gets_a_row() -> None:
    refund = event(
        kind=EventKind.PAYMENT_REFUNDED, member_ref=MemberRef(MemberRefKind.PAYMENT, "6D6C")
    )
    row = payment_row(refund, MAPPING, "100234")
    assert row["mbr_memberref"] == "payment:6D6C"
