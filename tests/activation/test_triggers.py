"""Which applied events start which marketing events, and what they carry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dynamics_bridge.activation.triggers import decode_payload, encode_payload, plan_triggers
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


def test_an_event_applied_into_place_after_newer_ones_triggers_as_a_stale_one_did(config) -> None:
    # Once stale, now folded into place: a late first payment must not welcome twice.
    late = outcome(event(EventKind.PAYMENT_SUCCEEDED), mbr_lastpaidon=(None, "2026-11-02"))
    late.replayed = True
    assert plan_triggers(late, config.triggers) == []


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


def test_a_payload_that_is_not_ours_is_an_input_error() -> None:
    with pytest.raises(InputError, match="outbox payload"):
        decode_payload('{"member": 1}')
