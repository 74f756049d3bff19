"""Which applied events start which marketing events, and what they carry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest

from dynamics_bridge.activation.config import TriggerRule
from dynamics_bridge.activation.triggers import (
    decode_payload,
    encode_payload,
    member_data,
    plan_triggers,
    row_state,
    too_late,
)
from dynamics_bridge.errors import InputError
from dynamics_bridge.model import EventKind, MemberRef, MemberRefKind, Outcome, PaymentEvent, Source
from dynamics_bridge.pipeline import EventOutcome

AT = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def event(kind: EventKind, source: Source = Source.SWISH, code: str | None = None) -> PaymentEvent:
    return PaymentEvent(
        event_id=f"{source.value}-0001",
        source=source,
        kind=kind,
        member_ref=MemberRef(MemberRefKind.MEMBER_NUMBER, "100001"),
        amount_minor=25000,
        currency="SEK",
        occurred_at=AT,
        provider_ref="PAY-1",
        reason_code=code,
        reason_text="Täckning saknas" if code else None,
        origin="test",
    )


def outcome(ev: PaymentEvent, result: Outcome = Outcome.APPLIED, **changes) -> EventOutcome:
    return EventOutcome(ev, result, None, "100001", changes)


def names(triggers) -> list[str]:
    return [t.name for t in triggers]


def test_a_payment_confirmed_carries_the_event_id_and_the_amount_in_kronor(config) -> None:
    (confirmed,) = plan_triggers(outcome(event(EventKind.PAYMENT_SUCCEEDED)), config.triggers)
    assert confirmed.event_type == "payment_confirmed"
    assert confirmed.data["source_event_id"] == "swish-0001"
    assert confirmed.data["amount"] == 250.0
    assert confirmed.occurred_at == AT


def test_a_first_payment_also_welcomes_the_member(config) -> None:
    first = outcome(event(EventKind.PAYMENT_SUCCEEDED), mbr_lastpaidon=(None, "2026-11-02"))
    later = outcome(event(EventKind.PAYMENT_SUCCEEDED), mbr_lastpaidon=("2026-10-02", "2026-11-02"))
    assert names(plan_triggers(first, config.triggers)) == ["payment_confirmed", "welcome"]
    assert names(plan_triggers(later, config.triggers)) == ["payment_confirmed"]


@pytest.mark.parametrize("result", [Outcome.DUPLICATE, Outcome.STALE, Outcome.UNMATCHED])
def test_only_applied_events_trigger(config, result) -> None:
    ev = event(EventKind.PAYMENT_SUCCEEDED)
    assert plan_triggers(outcome(ev, result, mbr_lastpaidon=(None, "x")), config.triggers) == []


def test_an_event_applied_into_place_after_newer_ones_still_plans_its_own_triggers(config) -> None:
    # Folded into place after a later payment: its confirmation (and, as the member's first
    # payment in event order, a welcome candidate) are planned; the sender decides the welcome.
    late = outcome(event(EventKind.PAYMENT_SUCCEEDED), mbr_lastpaidon=(None, "2026-11-02"))
    late.replayed = True
    assert names(plan_triggers(late, config.triggers)) == ["payment_confirmed", "welcome"]


@pytest.mark.parametrize(
    ("replayed", "age", "expected"),
    [
        (True, timedelta(days=6, hours=23), False),  # inside the window: triggers
        (True, timedelta(days=7, seconds=1), True),  # outside: kept, marked late
        (False, timedelta(days=30), False),  # in order for its member: never late
    ],
)
def test_only_a_replayed_event_older_than_the_window_is_too_late(replayed, age, expected) -> None:
    late = outcome(event(EventKind.PAYMENT_FAILED, code="1"))
    late.replayed = replayed
    assert too_late(late, AT + age, timedelta(days=7)) is expected


def test_the_row_state_is_what_its_triggers_still_need(config) -> None:
    confirmed, welcome = plan_triggers(
        outcome(event(EventKind.PAYMENT_SUCCEEDED), mbr_lastpaidon=(None, "d")), config.triggers
    )
    assert row_state([confirmed, welcome]) == "pending"
    assert row_state([confirmed.moved("sent"), welcome]) == "pending"  # the welcome is held
    assert row_state([confirmed.moved("sent"), welcome.moved("unconfirmed")]) == "unconfirmed"
    assert row_state([confirmed.moved("sent"), welcome.moved("withdrawn")]) == "sent"
    assert row_state([confirmed.moved("late"), welcome.moved("late")]) == "skipped"
    assert row_state([confirmed.moved("dropped"), welcome.moved("withdrawn")]) == "dropped"


def test_a_held_trigger_is_due_only_once_its_hold_has_passed(config) -> None:
    (confirmed,) = plan_triggers(outcome(event(EventKind.PAYMENT_SUCCEEDED)), config.triggers)
    held = replace(confirmed, hold_until=AT + timedelta(minutes=30))
    assert confirmed.due(AT)
    assert not held.due(AT + timedelta(minutes=29))
    assert held.due(AT + timedelta(minutes=30))
    assert not held.moved("sent").due(AT + timedelta(hours=1))


@pytest.mark.parametrize(
    ("kind", "trigger"),
    [
        (EventKind.MANDATE_APPROVED, "mandate_approved"),
        (EventKind.MANDATE_CANCELLED, "mandate_cancelled"),
        (EventKind.MANDATE_REJECTED, "mandate_rejected"),
        (EventKind.INVOICE_OVERDUE, "invoice_overdue"),
        (EventKind.PAYMENT_REFUNDED, "refund"),
        (EventKind.PAYMENT_FAILED, "payment_failed"),
        (EventKind.INVOICE_SENT, None),
    ],
)
def test_each_kind_has_its_trigger(config, kind, trigger) -> None:
    found = names(plan_triggers(outcome(event(kind, Source.BILLOGRAM)), config.triggers))
    assert found == ([trigger] if trigger else [])


def test_a_failed_payment_says_what_to_do_by_method_and_reason_code(config) -> None:
    def fix_it(source: Source, code: str | None) -> str:
        ev = event(EventKind.PAYMENT_FAILED, source, code)
        (failed,) = plan_triggers(outcome(ev), config.triggers)
        return failed.data["fix_it"]

    assert "täckning på kontot" in fix_it(Source.AUTOGIRO, "1")
    assert "medgivande" in fix_it(Source.AUTOGIRO, "2")
    assert "beloppsgränsen" in fix_it(Source.SWISH, "RF07")
    assert fix_it(Source.SWISH, "UNKNOWN") == config.triggers.fix_it.by_method["swish"].default
    assert "OCR" in fix_it(Source.BILLOGRAM, "PaymentFailed")  # invoice: its default


def test_the_payload_round_trips_through_the_outbox_column(config) -> None:
    ev = event(EventKind.PAYMENT_SUCCEEDED)
    triggers = plan_triggers(outcome(ev, mbr_lastpaidon=(None, "d")), config.triggers)
    payload = decode_payload(encode_payload(ev.event_id, "100001", triggers))
    assert payload.event_id == ev.event_id
    assert payload.member_key == "100001"
    assert list(payload.triggers) == triggers
    assert payload.triggers[0].marketing_event(ev.event_id).id == ev.event_id


def test_trigger_states_holds_and_decisions_survive_the_outbox_column(config) -> None:
    ev = event(EventKind.PAYMENT_SUCCEEDED)
    confirmed, welcome = plan_triggers(outcome(ev, mbr_lastpaidon=(None, "d")), config.triggers)
    triggers = [
        confirmed.moved("unconfirmed"),
        replace(welcome, hold_until=AT + timedelta(minutes=30), decided=True),
    ]
    assert list(decode_payload(encode_payload(ev.event_id, "100001", triggers)).triggers) == (
        triggers
    )


def test_a_payload_written_before_trigger_states_reads_as_pending() -> None:
    text = (
        '{"event_id":"e1","member":"100001","triggers":[{"name":"payment_confirmed",'
        '"type":"payment_confirmed","at":"2026-11-02T08:00:00+00:00","data":{}}]}'
    )
    (trigger,) = decode_payload(text).triggers
    assert (trigger.state, trigger.hold_until, trigger.decided) == ("pending", None, False)


@pytest.mark.parametrize(
    "text",
    [
        '{"member": 1}',
        '{"event_id":"e","member":"m","triggers":[{"name":"n","type":"t",'
        '"at":"2026-11-02T08:00:00+00:00","data":{},"state":"lost"}]}',
        '{"event_id":"e","member":"m","triggers":[{"name":"n","type":"t",'
        '"at":"2026-11-02T08:00:00","data":{}}]}',
    ],
    ids=["not ours", "unknown state", "naive time"],
)
def test_a_payload_that_is_not_ours_is_an_input_error(text) -> None:
    with pytest.raises(InputError, match="outbox payload"):
        decode_payload(text)


WELCOME = TriggerRule.model_validate(
    {
        "kinds": "payment.succeeded",
        "first_payment": True,
        "fields": [
            "source_event_id",
            "method",
            "age_band",
            {"industry": "employer.industry"},
            {"since": "mbr_joinedon"},
            "text",
        ],
        "text": {
            "default": "Välkommen!",
            "variants": [
                {"when": {"column": "age_band", "eq": "18-25"}, "text": "Välkommen, ung!"}
            ],
        },
    }
)


def test_a_trigger_takes_the_events_fields_when_applied_and_the_members_when_sent() -> None:
    assert WELCOME.event_fields() == {"source_event_id": "source_event_id", "method": "method"}
    assert WELCOME.member_fields() == {
        "age_band": "age_band",
        "industry": "employer.industry",
        "since": "mbr_joinedon",
        "text": "text",
    }
    member = {"age_band": "18-25", "employer.industry": "86.101", "mbr_joinedon": date(2026, 1, 5)}
    assert member_data(WELCOME, member, "swish", AT.date()) == {
        "age_band": "18-25",
        "industry": "86.101",
        "since": "2026-01-05",
        "text": "Välkommen, ung!",
    }
    # What the member lacks is left out; the text falls back to its default.
    assert member_data(WELCOME, {"age_band": "36-50"}, "swish", AT.date()) == {
        "age_band": "36-50",
        "text": "Välkommen!",
    }


def test_the_shipped_welcome_carries_age_band_region_industry_member_type_and_method(
    config,
) -> None:
    fields = config.triggers.triggers["welcome"].field_map()
    assert {"age_band", "region", "industry", "member_type", "method", "text"} <= set(fields)
    assert fields["industry"] == "employer.industry"


def test_a_renamed_field_is_one_pair_and_the_id_must_be_carried() -> None:
    with pytest.raises(ValueError, match=r"one \{field: value\} pair"):
        TriggerRule.model_validate(
            {"kinds": "payment.succeeded", "fields": ["source_event_id", {"a": "b", "c": "d"}]}
        )
    with pytest.raises(ValueError, match="source_event_id"):
        TriggerRule.model_validate({"kinds": "payment.succeeded", "fields": [{"id": "method"}]})
