"""Reminders: due before or after a date, once per period."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
import yaml

from dynamics_bridge.activation.config import Reminder
from dynamics_bridge.activation.reminders import (
    DueReminder,
    anniversary,
    due_period,
    encode_sent,
    parse_sent,
    query_windows,
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
    assert query_windows(UPCOMING, TODAY) == [(TODAY, date(2026, 12, 5))]
    assert query_windows(WINBACK, TODAY) == [(date(2026, 5, 25), date(2026, 10, 29))]


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
    with pytest.raises(ValueError, match="exactly one of 'before', 'after' or 'every_year'"):
        reminder("{event: e}")
    with pytest.raises(ValueError, match="source_event_id"):
        reminder("{before: {column: d, days: 1}, event: e, fields: {date: d}}")


BIRTHDAY = reminder("""
every_year: {column: born}
event: birthday
fields: {source_event_id: source_event_id, member_number: member_number, date: day, years: age}
""")
ANNIVERSARY = reminder("""
every_year: {column: joined, years: [1, 5, 10, 25], catch_up_days: 3}
event: anniversary
""")


def test_a_thirtieth_birthday_is_due_on_the_day_whatever_the_leap_years_between() -> None:
    born = date(1996, 11, 28)  # 30 years: 10,958 days, not 30 * 365
    assert due_period(BIRTHDAY, {"born": born}, TODAY) == ("2026-11-28", TODAY)
    assert due_period(BIRTHDAY, {"born": date(1996, 11, 29)}, TODAY) is None  # tomorrow


def test_a_yearly_reminder_is_once_a_year_and_catches_up_over_new_year() -> None:
    born = date(1980, 12, 30)
    first = due_period(BIRTHDAY, {"born": born}, date(2026, 12, 30))
    again = due_period(BIRTHDAY, {"born": born}, date(2027, 1, 2))  # caught up, same period
    next_year = due_period(BIRTHDAY, {"born": born}, date(2027, 12, 30))
    assert first == again == ("2026-12-30", date(2026, 12, 30))
    assert next_year == ("2027-12-30", date(2027, 12, 30))
    assert due_period(BIRTHDAY, {"born": born}, date(2027, 1, 7)) is None  # 8 days: too late


def test_anniversaries_are_the_listed_years_only_and_never_the_day_itself() -> None:
    assert due_period(ANNIVERSARY, {"joined": date(2021, 11, 28)}, TODAY)[0] == "2026-11-28"
    assert due_period(ANNIVERSARY, {"joined": date(2022, 11, 28)}, TODAY) is None  # 4 years
    assert due_period(ANNIVERSARY, {"joined": TODAY}, TODAY) is None  # joined today: 0 years
    assert due_period(BIRTHDAY, {"born": TODAY}, TODAY) is None


@pytest.mark.parametrize(
    ("rule", "year", "day"),
    [
        ("feb28", 2027, date(2027, 2, 28)),
        ("mar1", 2027, date(2027, 3, 1)),
        ("feb28", 2028, date(2028, 2, 29)),
        ("mar1", 2028, date(2028, 2, 29)),
    ],
)
def test_29_february_comes_round_on_the_configured_day_in_other_years(
    rule: str, year: int, day: date
) -> None:
    assert anniversary(date(2004, 2, 29), year, rule) == day


def test_a_leap_day_member_gets_one_birthday_message_a_year() -> None:
    member = {"born": date(2004, 2, 29)}
    days = [date(2027, 2, 20) + timedelta(days=n) for n in range(20)]
    periods = {p for d in days if (p := due_period(BIRTHDAY, member, d))}
    assert periods == {("2027-02-28", date(2027, 2, 28))}


def test_a_yearly_query_reads_the_members_whose_day_it_is_and_no_others() -> None:
    windows = query_windows(ANNIVERSARY, TODAY)
    assert len(windows) == 4  # one range per anniversary looked for
    in_window = lambda d: any(low <= d <= high for low, high in windows)  # noqa: E731
    for joined in (date(2021, 11, 28), date(2001, 11, 25), date(2025, 11, 26)):
        assert due_period(ANNIVERSARY, {"joined": joined}, TODAY) is not None
        assert in_window(joined)
    assert not in_window(date(2024, 11, 28))  # 2 years: not an anniversary listed
    assert not in_window(date(2021, 6, 1))


def test_every_date_due_today_lies_in_a_window_leap_days_included() -> None:
    for today in (date(2027, 2, 28), date(2028, 2, 29), date(2027, 3, 1), TODAY):
        windows = query_windows(BIRTHDAY, today)
        for born in (date(2004, 2, 29), date(1990, 2, 28), date(1970, 3, 1), date(1996, 11, 28)):
            if due_period(BIRTHDAY, {"born": born}, today):
                assert any(low <= born <= high for low, high in windows), (today, born)


def test_the_event_of_a_yearly_reminder_carries_the_years() -> None:
    item = DueReminder("birthday", "100001", "2026-11-28", TODAY, date(1996, 11, 28))
    event = reminder_event(BIRTHDAY, item, None, TODAY)
    assert event.data == {
        "source_event_id": "reminder:birthday:100001:2026-11-28",
        "member_number": "100001",
        "day": "2026-11-28",
        "age": 30,
    }


def test_a_yearly_reminder_has_one_timing_and_anniversaries_a_person_can_reach() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        reminder("{every_year: {column: born}, after: {column: born, days: 3}, event: b}")
    with pytest.raises(ValueError, match="between 1 and 120"):
        reminder("{every_year: {column: born, years: [0]}, event: b}")


PERSONAL = reminder("""
before: {column: due, days: 7}
event: payment_reminder
text:
  default: "Förfaller {date}."
  by_method: {autogiro: "Vi drar avgiften {date}."}
  variants:
    - when: {column: member_type, eq: student}
      text: "Studentavgiften förfaller {date}."
    - when: {all: [{column: age_band, eq: "66+"}, {column: employer.industry, is_set: true}]}
      text: "Pensionsavgiften förfaller {date}."
fields:
  {source_event_id: source_event_id, date: due_on, text: text, age_band: band,
   employer.industry: industry}
""")


@pytest.mark.parametrize(
    ("member", "method", "expected"),
    [
        ({"member_type": "student", "age_band": "66+"}, "autogiro", "Studentavgiften förfaller"),
        ({"age_band": "66+", "employer.industry": "86.101"}, "autogiro", "Pensionsavgiften"),
        ({"age_band": "66+"}, "autogiro", "Vi drar avgiften"),  # no industry: by method
        ({"age_band": "26-35"}, "swish", "Förfaller"),  # then the default
        (None, "autogiro", "Vi drar avgiften"),  # no member view: by method
    ],
)
def test_the_text_is_the_first_matching_variant_then_by_method_then_the_default(
    member, method, expected
) -> None:
    item = DueReminder("upcoming", "100001", "2026-12-05", date(2026, 12, 5))
    event = reminder_event(PERSONAL, item, method, TODAY, member)
    assert event.data["text"].startswith(expected)
    assert event.data["text"].endswith("2026-12-05.")


def test_a_reminder_carries_member_fields_and_leaves_out_those_the_member_lacks() -> None:
    item = DueReminder("upcoming", "100001", "2026-12-05", date(2026, 12, 5))
    with_all = reminder_event(
        PERSONAL, item, None, TODAY, {"age_band": "36-50", "employer.industry": "85.201"}
    )
    assert (with_all.data["band"], with_all.data["industry"]) == ("36-50", "85.201")
    without = reminder_event(PERSONAL, item, None, TODAY, {"age_band": "36-50"})
    assert "industry" not in without.data
    assert without.data["due_on"] == "2026-12-05"
