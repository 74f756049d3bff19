"""Log lines are JSON, carry the event id, and never show a personnummer or a secret."""

from __future__ import annotations

import io
import json
import logging

import pytest

from dynamics_bridge.app.handlers import handle_webhook
from dynamics_bridge.logs import configure_logging, log_context
from dynamics_bridge.personnummer import mask_text
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings
from tests.conftest import FIXTURES


@pytest.fixture
def captured():
    stream = io.StringIO()
    handler = configure_logging("DEBUG", secrets=["hunter2-sign-key"], stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    "pnr",
    [
        "198112189876",
        "19811218-9876",
        "811218-9876",
        "811218+9876",
        "8112189876",
        "19811218 9876",
        "19811218\u20139876",
        "811218\u22129876",
        "1981.12.18-9876",
        "１９８１１２１８９８７６",
        "pnr198112189876",
    ],
)
def test_personnummer_in_any_form_is_masked(captured, pnr: str) -> None:
    # Every written form is listed in tests/test_personnummer.py; here: the filter uses them.
    logging.getLogger("t").info("member %s paid", pnr)
    (line,) = lines(captured)
    assert pnr not in line["message"]
    assert "9876" not in line["message"]
    assert "-****" in line["message"]


def test_the_birth_date_part_stays_readable_for_support() -> None:
    assert mask_text("pnr 19811218-9876 x") == "pnr 19811218-**** x"


def test_numbers_of_other_lengths_are_left_alone() -> None:
    assert mask_text("amount 25000 invoice 10042 ocr 1002345") == (
        "amount 25000 invoice 10042 ocr 1002345"
    )


def test_a_bank_serial_stays_readable_for_the_admin(captured) -> None:
    logging.getLogger("t").warning(
        "bgmax.txt:14: payment with BGC serial %s not matched", "000000000012"
    )
    assert "000000000012" in lines(captured)[0]["message"]


def test_a_structured_field_name_labels_its_value(captured) -> None:
    # 198112189876 passes the date and Luhn checks; as a request id it names no one.
    logging.getLogger("t").info("x", extra={"request_id": "198112189876", "reason": "198112189876"})
    (line,) = lines(captured)
    assert line["request_id"] == "198112189876"
    assert line["reason"] == "19811218-****"


def test_configured_secrets_are_removed(captured) -> None:
    logging.getLogger("t").warning("signing with hunter2-sign-key failed")
    assert "hunter2" not in captured.getvalue()
    assert "***" in lines(captured)[0]["message"]


def test_structured_fields_are_scrubbed_too(captured) -> None:
    logging.getLogger("t").info("x", extra={"reason": "no member 198112189876"})
    assert "198112189876" not in captured.getvalue()


def test_exceptions_are_scrubbed(captured) -> None:
    try:
        raise ValueError("bad pnr 198112189876")
    except ValueError:
        logging.getLogger("t").exception("failed")
    assert "198112189876" not in captured.getvalue()
    assert "ValueError" in lines(captured)[0]["exception"]


def test_the_event_id_is_the_correlation_id(captured) -> None:
    with log_context(event_id="swish-abc"):
        logging.getLogger("t").info("inside")
    logging.getLogger("t").info("outside")
    inside, outside = lines(captured)
    assert inside["event_id"] == "swish-abc"
    assert "event_id" not in outside


def test_webhook_intake_logs_each_event_with_its_id_and_no_personal_data(captured) -> None:
    raw = (FIXTURES / "webhooks" / "swish_payment_paid.json").read_bytes()
    raw = raw.replace(b'"100234"', b'"198112189876"')
    settings = load_settings(
        swish={
            "member_ref_pattern": r"^(?P<value>\d{12})$",
            "member_ref_kind": "personnummer",
            "callback_identifier": "c0ffee-union-2026",  # the fixture's callbackIdentifier
        }
    )
    result = handle_webhook("swish", raw, {}, settings=settings, queue=InMemoryQueue())
    assert result.status == 202
    queued = [line for line in lines(captured) if line["message"] == "event queued"]
    assert [line["event_id"] for line in queued] == result.body["event_ids"]
    assert queued[0]["source"] == "swish"
    assert queued[0]["kind"] == "payment.succeeded"
    assert "duration_ms" in queued[0]
    assert "198112189876" not in captured.getvalue()
