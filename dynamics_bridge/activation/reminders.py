"""Reminders: which member is due which reminder today, once per period.

Pure. A reminder is timed ``before`` a date (payment due, membership expiring) or ``after`` one
(first payment, membership ended; several steps make winback nudges). Its *period* names the
date and step it is about, so it is sent once for that period: the period is kept in the
member's reminders column (JSON ``{reminder: period}``) and claimed there before sending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from dynamics_bridge.activation.config import Reminder
from dynamics_bridge.apsis.models import MarketingEvent

__all__ = [
    "DueReminder",
    "due_period",
    "encode_sent",
    "parse_sent",
    "query_window",
    "reminder_event",
]


@dataclass(frozen=True, slots=True)
class DueReminder:
    name: str
    member_key: str
    period: str
    about: date

    @property
    def event_id(self) -> str:
        """Deterministic: a retry of the same reminder carries the same id."""
        return f"reminder:{self.name}:{self.member_key}:{self.period}"


def _date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else None


def due_period(
    reminder: Reminder, member: Mapping[str, Any], today: date
) -> tuple[str, date] | None:
    """``(period, the date it is about)`` when the member is due this reminder today."""
    step = reminder.step
    when = _date(member.get(step.column))
    if when is None:
        return None
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


def query_window(reminder: Reminder, today: date) -> tuple[date, date]:
    """The range of the reminder's date column worth reading today (inclusive)."""
    step = reminder.step
    if reminder.before is not None:
        return today, today + timedelta(days=max(step.days))
    return (
        today - timedelta(days=max(step.days) + step.catch_up_days),
        today - timedelta(days=min(step.days)),
    )


def reminder_event(
    reminder: Reminder, item: DueReminder, method: str | None, today: date
) -> MarketingEvent:
    values = {
        "source_event_id": item.event_id,
        "member_number": item.member_key,
        "date": item.about.isoformat(),
        "method": method,
        "text": reminder.text.text(method).format(date=item.about.isoformat()),
    }
    data = {key: values[ours] for ours, key in reminder.fields.items()}
    moment = datetime.combine(today, time(0, 0), UTC)  # the same on a retry the same day
    return MarketingEvent(reminder.event, moment, data, item.event_id)


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
