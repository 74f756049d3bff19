"""Hostile webhook requests (issue 12, section 1): each one answered as documented, none queued.

The catalogue (tests/support/hostile_webhooks.py) names each request; a row "held"
when the answer is the expected status (400 naming the field, 401, 413, 415 or 503) and the
queue stayed empty. Billogram requests carry a valid signature and Swish ones the configured
identifier, so the parsers behind authentication are what is tried.
"""

from __future__ import annotations

import json
import logging

import pytest

from dynamics_bridge.app.handlers import handle_webhook
from dynamics_bridge.queue import InMemoryQueue
from tests.support.hostile_webhooks import (
    BASE_BODIES,
    HostileRequest,
    fuzz_settings,
    hostile_requests,
    provider_headers,
)

CATALOGUE = hostile_requests()


def deliver(request: HostileRequest, queue: InMemoryQueue):
    return handle_webhook(
        request.provider,
        request.body,
        request.headers,
        request.client_ip,
        settings=fuzz_settings(**request.settings),
        queue=queue,
    )


@pytest.mark.parametrize("request_", CATALOGUE, ids=[r.name for r in CATALOGUE])
def test_a_hostile_request_is_held(request_: HostileRequest, caplog) -> None:
    queue = InMemoryQueue()
    with caplog.at_level(logging.WARNING, logger="dynamics_bridge.intake"):
        result = deliver(request_, queue)
    assert request_.held(result.status, result.body, len(queue)) is None
    assert "unexpected failure" not in caplog.text


@pytest.mark.parametrize("name", sorted(BASE_BODIES))
def test_each_base_body_of_the_catalogue_is_accepted_as_it_stands(name: str) -> None:
    """The rows above differ from these by one thing: so that one thing is what is refused."""
    provider, body = BASE_BODIES[name]
    raw = json.dumps(body, ensure_ascii=False).encode()
    queue = InMemoryQueue()
    result = handle_webhook(
        provider, raw, provider_headers(provider, raw), settings=fuzz_settings(), queue=queue
    )
    assert result.status == 202, result.body
    assert len(queue.peek_events()) == len(result.body["event_ids"]) >= 1


def test_the_catalogue_covers_every_case_the_issue_lists() -> None:
    names = {r.name for r in CATALOGUE}
    expected = {
        "swish_paid/arrays_1000_deep",
        "billogram_payment/arrays_1000_deep",
        "swish_paid/amount_integer_of_5000_digits",
        "billogram_payment/amount_exponent_1e999999999",
        "billogram_payment/amount_exponent_1e400",
        "billogram_payment/amount_ten_to_the_30",
        "billogram_payment/amount_two_to_the_63",
        "billogram_payment/amount_exponent_1e15",
        "billogram_payment/amount_exponent_tiny_negative",
        "billogram_payment/remaining_sum_letters",
        "billogram_payment/remaining_sum_nan",
        "billogram_payment/customer_string",
        "billogram_payment/event_data_string",
        "billogram_payment/timestamp_year_9999_minus_23_59",
        "billogram_payment/timestamp_year_1_plus_23_59",
        "billogram_payment/legacy_md5_signature_non_ascii",
        "billogram_payment/customer_no_json_object",
        "swish_paid/payeePaymentReference_arabic_indic_digits",
        "swish_paid/payeePaymentReference_fullwidth_digits",
        "swish_paid/payeePaymentReference_devanagari_digits",
        "swish_paid/payeePaymentReference_zero_width_space",
        "swish_paid/payeePaymentReference_right_to_left_override",
        "swish_paid/payeePaymentReference_nul",
        "swish_paid/payeePaymentReference_trailing_newline",
        "swish_paid/payeePaymentReference_combining_acute_accent",
        "billogram_payment/signature_timestamp_nan",
        "billogram_payment/signature_timestamp_NaN",
        "swish_paid/no_identifier_configured",
        "billogram_payment/signature_header_twice_in_two_spellings",
        "swish_paid/identifier_twice_in_two_spellings",
        "swish_paid/identifier_in_a_1000_deep_body",
        "swish_paid/content_length_over_the_limit",
    }
    assert expected <= names, sorted(expected - names)
    assert len(names) == len(CATALOGUE), "catalogue names are unique"
