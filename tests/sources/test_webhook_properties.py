"""Properties of webhook intake under generated hostile input (hypothesis).

Bodies are the valid Swish and Billogram bodies of tests/support/hostile_webhooks.py
with random and hostile JSON fragments spliced in (NaN, 1e999999999, 5,000-digit integers,
deep nesting, unpaired surrogates, non-ASCII digits...), some cut short, some plain bytes.
Requests through ``handle_webhook`` are signed (Billogram) or carry the identifier (Swish) in
the test, so the parsers behind authentication are reached.

- the parsers return events or raise InputError, nothing else; every event they return is
  well-formed (amount in range, ASCII reference, UTC time in range, encodable);
- ``handle_webhook`` answers 202, 400, 401, 413 or 415 (503 only for a fault of ours, which
  these settings do not have), and the queue receives events exactly when the answer is 202.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynamics_bridge.app.handlers import handle_webhook
from dynamics_bridge.errors import InputError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import BillogramSettings, SwishSettings
from dynamics_bridge.sources import billogram, swish
from dynamics_bridge.sources._common import (
    LATEST_YEAR,
    MAX_AMOUNT,
    WebhookParse,
    load_json,
    reference,
    to_minor_units,
)
from tests.support.hostile_webhooks import (
    FuzzRequest,
    fuzz_settings,
    webhook_bodies,
    webhook_requests,
)

#: Examples per property; the suite stays fast (bench/fuzz_webhooks.py runs 20,000+ per parser).
EXAMPLES = 400
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SETTINGS = fuzz_settings()
T = TypeVar("T")


def attempt(call: Callable[[], T]) -> tuple[T | None, InputError | None]:
    """What ``call`` returned, or the InputError it raised (anything else propagates)."""
    try:
        return call(), None
    except InputError as exc:
        return None, exc


def is_plain_reference(value: str) -> bool:
    return bool(value) and value.isascii() and value.isprintable()


def assert_well_formed(parsed: WebhookParse) -> None:
    for event in parsed.events:
        assert isinstance(event, PaymentEvent)
        assert 0 <= event.amount_minor <= MAX_AMOUNT * 100
        assert is_plain_reference(event.member_ref.value), event.member_ref
        assert event.occurred_at.utcoffset() is not None
        assert 2000 <= event.occurred_at.year <= LATEST_YEAR
        json.dumps(event.to_json(), ensure_ascii=False).encode("utf-8")


def parse_or_refuse(parse: Callable[[bytes], WebhookParse], raw: bytes) -> None:
    parsed, refused = attempt(lambda: parse(raw))
    if refused is not None:
        assert refused.field, f"an InputError without a field: {refused}"
    else:
        assert parsed is not None
        assert_well_formed(parsed)


@FUZZ
@given(webhook_bodies("swish"))
def test_the_swish_parser_returns_events_or_refuses_naming_a_field(raw: bytes) -> None:
    parse_or_refuse(lambda body: swish.parse_callback(body, SwishSettings()), raw)


@FUZZ
@given(webhook_bodies("billogram"))
def test_the_billogram_parser_returns_events_or_refuses_naming_a_field(raw: bytes) -> None:
    parse_or_refuse(lambda body: billogram.parse_callback(body, BillogramSettings()), raw)


@pytest.mark.parametrize("provider", ["swish", "billogram"])
def test_handle_webhook_answers_as_documented_and_queues_only_on_202(provider: str, caplog):
    seen: dict[int, int] = {}

    @FUZZ
    @given(webhook_requests(provider))
    def run(request: FuzzRequest) -> None:
        queue = InMemoryQueue()
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="dynamics_bridge.intake"):
            result = handle_webhook(
                request.provider, request.body, request.headers, settings=SETTINGS, queue=queue
            )
        seen[result.status] = seen.get(result.status, 0) + 1
        # 503 is for faults of ours (settings, queue): none here, so none may appear.
        assert result.status in {202, 400, 401, 413, 415}, (result, caplog.text)
        queued = [e["event_id"] for e in queue.peek_events()]
        if result.status == 202:
            assert queued == result.body["event_ids"]
        else:
            assert queued == []
            if result.status == 400:
                assert result.body["field"]
        assert "unexpected failure" not in caplog.text

    run()
    # The generator reaches the parsers, not only the door: both answers occur.
    assert seen.get(202, 0) > 0, seen
    assert seen.get(400, 0) > 0, seen


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=100).map(lambda t: t.encode("utf-8")))
def test_load_json_returns_a_value_or_refuses_the_body(raw: bytes) -> None:
    _, refused = attempt(lambda: load_json(raw))
    assert refused is None or refused.field == "body"


@FUZZ
@given(st.text(max_size=40) | st.integers() | st.booleans() | st.none())
def test_a_reference_is_printable_ascii_or_refused(value) -> None:
    found, refused = attempt(lambda: reference(value, "ref"))
    if refused is not None:
        assert refused.field == "ref"
    else:
        assert found is not None
        assert is_plain_reference(found)
        assert found == (str(value) if isinstance(value, int) else value.strip(" "))


@FUZZ
@given(
    st.decimals(allow_nan=True, allow_infinity=True)
    | st.integers()
    | st.text(alphabet="0123456789.-eE+ ١５", max_size=25)
)
def test_an_amount_is_whole_ore_in_dataverse_range_or_refused(amount) -> None:
    minor, refused = attempt(lambda: to_minor_units(amount, path="amount"))
    if refused is not None:
        assert refused.field == "amount"
    else:
        exact = Decimal(amount.strip(" ") if isinstance(amount, str) else amount)
        assert 0 <= exact <= MAX_AMOUNT
        assert minor == exact * 100
