"""The canonical event: its JSON form is a contract, so its shape is specified here."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dynamics_bridge.errors import InputError
from dynamics_bridge.model import (
    JSON_KEYS,
    EventKind,
    MemberRef,
    MemberRefKind,
    PaymentEvent,
    Source,
    make_event_id,
)


def event(**changes: object) -> PaymentEvent:
    values: dict[str, object] = {
        "event_id": make_event_id(Source.SWISH, "p", "1"),
        "source": Source.SWISH,
        "kind": EventKind.PAYMENT_SUCCEEDED,
        "member_ref": MemberRef(MemberRefKind.MEMBER_NUMBER, "100234"),
        "amount_minor": 25000,
        "currency": "SEK",
        "occurred_at": datetime(2026, 11, 2, 7, 15, tzinfo=UTC),
        "provider_ref": "X1",
        "reason_code": None,
        "reason_text": None,
        "origin": "swish:X1:PAID",
    }
    values.update(changes)
    return PaymentEvent(**values)  # type: ignore[arg-type]


def test_the_json_form_has_exactly_the_contract_keys() -> None:
    data = event().to_json()
    assert list(data) == list(JSON_KEYS)
    assert data["member_ref"] == {"kind": "member_number", "value": "100234"}
    assert data["occurred_at"] == "2026-11-02T07:15:00+00:00"
    assert isinstance(data["amount_minor"], int)


def test_json_round_trips() -> None:
    original = event(occurred_at=datetime(2026, 1, 5, 9, 0, tzinfo=timezone(timedelta(hours=1))))
    assert PaymentEvent.from_json(json.loads(json.dumps(original.to_json()))) == original


@pytest.mark.parametrize("amount", [-1, 1.5, "100", True])
def test_amounts_are_non_negative_integers(amount: object) -> None:
    with pytest.raises(InputError) as caught:
        event(amount_minor=amount)
    assert caught.value.field == "amount_minor"


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(InputError, match="offset"):
        event(occurred_at=datetime(2026, 1, 1))


@pytest.mark.parametrize("currency", ["sek", "SE", "SEKK", ""])
def test_currency_is_three_upper_case_letters(currency: str) -> None:
    with pytest.raises(InputError):
        event(currency=currency)


def test_from_json_names_a_missing_key() -> None:
    data = event().to_json()
    del data["origin"]
    with pytest.raises(InputError) as caught:
        PaymentEvent.from_json(data)
    assert caught.value.field == "origin"


def test_from_json_refuses_extra_keys() -> None:
    with pytest.raises(InputError, match="unexpected"):
        PaymentEvent.from_json({**event().to_json(), "method": "swish"})


def test_from_json_refuses_unknown_kinds() -> None:
    with pytest.raises(InputError, match="canonical"):
        PaymentEvent.from_json({**event().to_json(), "kind": "payment.maybe"})


def test_event_ids_depend_on_identity_only() -> None:
    assert make_event_id("swish", "a", "b") == make_event_id(Source.SWISH, "a", "b")
    assert make_event_id("swish", "a", "b") != make_event_id("swish", "ab")
    assert make_event_id("swish", "a") != make_event_id("bgmax", "a")


@given(
    st.lists(st.text(max_size=20), min_size=1, max_size=4),
    st.lists(st.text(max_size=20), min_size=1, max_size=4),
)
def test_different_identities_never_share_an_id(a: list[str], b: list[str]) -> None:
    if a != b:
        assert make_event_id("bgmax", *a) != make_event_id("bgmax", *b)


@pytest.mark.parametrize(
    ("source", "kind", "reason", "method"),
    [
        ("swish", "payment.succeeded", None, "swish"),
        ("autogiro", "payment.failed", "1", "autogiro"),
        ("bgmax", "payment.succeeded", None, "bankgiro"),
        ("billogram", "payment.succeeded", None, "invoice"),
        ("billogram", "payment.failed", "AutogiroFailed", "autogiro"),
        ("billogram", "efaktura.registered", None, "efaktura"),
    ],
)
def test_the_payment_method_follows_from_source_and_kind(
    source: str, kind: str, reason: str | None, method: str
) -> None:
    assert event(source=Source(source), kind=EventKind(kind), reason_code=reason).method == method
