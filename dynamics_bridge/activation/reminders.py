"""Reminders: which member is due which reminder today, once per period.

Pure. A reminder is timed ``before`` a date (payment due, membership expiring), ``after`` one
(first payment, membership ended; several steps make winback nudges) or on the date's anniversary
``every_year`` (birthdays, years of membership). Its *period* names the date and step it is about,
so it is sent once for that period: the period is kept in the member's reminders column (JSON
``{reminder: period}``) and claimed there before sending. A yearly reminder's period is the day
of that year's anniversary: once a year per member.

29 February: in a year without one, the anniversary falls on 28 February (``leap_day: feb28``,
the default, so it stays in its month) or on 1 March (``leap_day: mar1``); either way once.
"""

from __future__ import annotations

import json
from calendar import isleap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dynamics_bridge.activation.config import MAX_YEARS, Reminder, Yearly
from dynamics_bridge.activation.rules import as_date
from dynamics_bridge.apsis.models import MarketingEvent

__all__ = [
    "DueReminder",
    "anniversary",
    "due_period",
    "encode_sent",
    "parse_sent",
    "query_windows",
    "reminder_event",
]


@dataclass(frozen=True, slots=True)
class DueReminder:
    name: str
    member_key: str
    period: str
    about: date
    #: a yearly reminder's date itself (the birth date, the day the member joined)
    origin: date | None = None

    @property
    def event_id(self) -> str:
        """Deterministic: a retry of the same reminder carries the same id."""
        return f"reminder:{self.name}:{self.member_key}:{self.period}"


def anniversary(origin: date, year: int, leap_day: str = "feb28") -> date:
    """The day ``origin`` comes round in ``year`` (29 February: see the module)."""
    if origin.month == 2 and origin.day == 29 and not isleap(year):
        return date(year, 3, 1) if leap_day == "mar1" else date(year, 2, 28)
    return origin.replace(year=year)


def due_period(
    reminder: Reminder, member: Mapping[str, Any], today: date
) -> tuple[str, date] | None:
    """``(period, the date it is about)`` when the member is due this reminder today."""
    step = reminder.step
    when = as_date(member.get(step.column))
    if when is None:
        return None
    if isinstance(step, Yearly):
        return _yearly_period(step, when, today)
    if reminder.before is not None:
        left = (when - today).days
        ahead = [n for n in sorted(step.days) if left <= n]
        if left < 0 or not ahead:
            return None
        return f"{when.isoformat()}-{ahead[0]}", when
    passed = (today - when).days
    reached = [n for n in sorted(step.days) if n <= passed <= n + step.catch_up_days]
    if not reached:
        return None
    return f"{when.isoformat()}+{reached[-1]}", when


def _yearly_period(step: Yearly, origin: date, today: date) -> tuple[str, date] | None:
    """This year's anniversary, or last year's while it may still be caught up (a run on 2
    January still sends 30 December's); the period is that anniversary's day."""
    for year in (today.year, today.year - 1):
        years = year - origin.year
        if years < 1 or years > MAX_YEARS or (step.years is not None and years not in step.years):
            continue
        day = anniversary(origin, year, step.leap_day)
        if 0 <= (today - day).days <= step.catch_up_days:
            return day.isoformat(), day
    return None


def query_windows(reminder: Reminder, today: date) -> list[tuple[date, date]]:
    """The ranges of the reminder's date column worth reading today (inclusive, disjoint).

    A yearly reminder asks for one range per anniversary it looks for: the dates that come round
    between ``today - catch_up_days`` and today, a day wider on each side for 29 February, so a
    day's read is the members whose day it is, not every member with a date."""
    step = reminder.step
    if isinstance(step, Yearly):
        first = today - timedelta(days=step.catch_up_days + 1)
        last = today + timedelta(days=1)
        windows = sorted(
            (anniversary(first, first.year - n), anniversary(last, last.year - n))
            for n in (step.years or range(1, MAX_YEARS + 1))
        )
        merged: list[tuple[date, date]] = []
        for low, high in windows:
            if merged and low <= merged[-1][1] + timedelta(days=1):
                merged[-1] = (merged[-1][0], max(high, merged[-1][1]))
            else:
                merged.append((low, high))
        return merged
    if reminder.before is not None:
        return [(today, today + timedelta(days=max(step.days)))]
    return [
        (
            today - timedelta(days=max(step.days) + step.catch_up_days),
            today - timedelta(days=min(step.days)),
        )
    ]


def reminder_event(
    reminder: Reminder,
    item: DueReminder,
    method: str | None,
    today: date,
    member: Mapping[str, Any] | None = None,
) -> MarketingEvent:
    """The reminder's APSIS event. ``member``: the member's view with derived facts and
    related values, for the text's variants and the member fields (left out when unknown)."""
    years = _years_of(reminder, item)
    text = reminder.text.text(method, member, today).format(
        date=item.about.isoformat(), years=years
    )
    values = {
        "source_event_id": item.event_id,
        "member_number": item.member_key,
        "date": item.about.isoformat(),
        "method": method,
        "years": years,
        "text": text,
    }
    data: dict[str, Any] = {}
    for ours, key in reminder.fields.items():
        value = values[ours] if ours in values else (member or {}).get(ours)
        if isinstance(value, date):
            value = value.isoformat()
        if ours in values or value not in (None, ""):
            data[key] = value
    moment = datetime.combine(today, time(0, 0), UTC)  # the same on a retry the same day
    return MarketingEvent(reminder.event, moment, data, item.event_id)


def _years_of(reminder: Reminder, item: DueReminder) -> int | None:
    """A yearly reminder's count of years (the age, the years of membership)."""
    if reminder.every_year is None:
        return None
    return item.about.year - item.origin.year if item.origin else None


def parse_sent(text: Any) -> dict[str, str]:
    """The reminders column: reminder -> the last period it was sent for."""
    if not text:
        return {}
    try:
        raw = json.loads(str(text))
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def encode_sent(sent: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(sent.items())), separators=(",", ":"))
