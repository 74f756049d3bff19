"""Reminders: due before or after a date, once per period."""

from __future__ import annotations

from datetime import date

import pytest
import yaml

from dynamics_bridge.activation.config import Reminder
from dynamics_bridge.activation.reminders import (
    DueReminder,
    due_period,
    encode_sent,
    parse_sent,
    query_window,
    reminder_event,
)

TODAY = date(2026, 11, 28)


def reminder(text: str) -> Reminder:
    return Reminder.model_validate(yaml.safe_load(text))


UPCOMING = reminder("""
before: {column: due, days: 7}
event: payment_reminder
text: {default: "Förfaller {date}.", by_method: {autogiro: "Vi drar avgiften {date}."}}
fields: {source_event_id: source_event_id, member_number: member_number, date: due_on, text: text}
""")
WINBACK = reminder("""
after: {column: ended, days: [30, 90, 180], catch_up_days: 7}
event: winback_nudge
""")


def test_a_before_reminder_is_due_from_n_days_ahead_until_the_day() -> None:
    assert due_period(UPCOMING, {"due": date(2026, 12, 5)}, TODAY) == (
        "2026-12-05-7",
        date(2026, 12, 5),
    )
    assert due_period(UPCOMING, {"due": TODAY}, TODAY) is not None
    assert due_period(UPCOMING, {"due": date(2026, 12, 6)}, TODAY) is None  # 8 days ahead
    assert due_period(UPCOMING, {"due": date(2026, 11, 27)}, TODAY) is None  # passed
    assert due_period(UPCOMING, {"due": None}, TODAY) is None


def test_the_period_is_the_date_so_every_due_date_gets_one_reminder() -> None:
    first = due_period(UPCOMING, {"due": date(2026, 12, 1)}, TODAY)
    again = due_period(UPCOMING, {"due": date(2026, 12, 1)}, date(2026, 11, 30))
    next_month = due_period(UPCOMING, {"due": date(2026, 12, 31)}, date(2026, 12, 28))
    assert first == again  # a later run the same period: the same period, so not sent again
    assert next_month is not None
    assert next_month[0] != first[0]


def test_winback_nudges_step_after_the_end_each_once() -> None:
    ended = date(2026, 8, 30)  # 90 days before TODAY
    assert due_period(WINBACK, {"ended": ended}, TODAY) == ("2026-08-30+90", ended)
    assert due_period(WINBACK, {"ended": date(2026, 10, 29)}, TODAY)[0].endswith("+30")
    assert due_period(WINBACK, {"ended": date(2026, 10, 10)}, TODAY) is None  # 49 days: between
    assert due_period(WINBACK, {"ended": date(2026, 10, 22)}, TODAY)[0].endswith("+30")  # caught up


def test_the_query_window_covers_every_date_that_can_be_due() -> None:
    assert query_window(UPCOMING, TODAY) == (TODAY, date(2026, 12, 5))
    assert query_window(WINBACK, TODAY) == (date(2026, 5, 25), date(2026, 10, 29))


def test_the_event_says_it_by_method_and_carries_a_deterministic_id() -> None:
    item = DueReminder("upcoming_payment", "100001", "2026-12-05-7", date(2026, 12, 5))
    event = reminder_event(UPCOMING, item, "autogiro", TODAY)
    assert event.type == "payment_reminder"
    assert event.data == {
        "source_event_id": "reminder:upcoming_payment:100001:2026-12-05-7",
        "member_number": "100001",
        "due_on": "2026-12-05",
        "text": "Vi drar avgiften 2026-12-05.",
    }
    assert reminder_event(UPCOMING, item, "swish", TODAY).data["text"] == "Förfaller 2026-12-05."
    assert event == reminder_event(UPCOMING, item, "autogiro", TODAY)  # a retry sends the same


def test_the_sent_column_round_trips_and_garbage_is_nothing_sent() -> None:
    assert parse_sent(encode_sent({"b": "2", "a": "1"})) == {"a": "1", "b": "2"}
    assert parse_sent("[1]") == {}
    assert parse_sent(None) == {}


def test_a_reminder_is_timed_one_way_and_carries_its_id() -> None:
    with pytest.raises(ValueError, match="exactly one of 'before' or 'after'"):
        reminder("{event: e}")
    with pytest.raises(ValueError, match="source_event_id"):
        reminder("{before: {column: d, days: 1}, event: e, fields: {date: d}}")
