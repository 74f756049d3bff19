"""Evaluate mapping transforms: event + the member's current row → Dataverse column values.

Pure. Values come out in the Web API's JSON forms (reference dataverse.md §3): choices as
integers, money as numbers, date-only columns as ``YYYY-MM-DD``, date-times as UTC ``...Z``.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any
from zoneinfo import ZoneInfo

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping.models import MappingFile, Transform
from dynamics_bridge.model import PaymentEvent

__all__ = ["evaluate", "event_value", "period_end", "to_money"]

_PERIOD_MONTHS = {"month": 1, "quarter": 3, "half_year": 6, "year": 12}


def event_value(event: PaymentEvent, name: str) -> Any:
    """A named event field (see ``EVENT_FIELDS``), in its canonical JSON form."""
    if name == "method":
        return event.method.value
    if name == "member_ref.kind":
        return event.member_ref.kind.value
    if name == "member_ref.value":
        return event.member_ref.value
    if name == "occurred_at":
        return event.occurred_at.isoformat()
    value = getattr(event, name)  # the other fields are plain attributes (enums by value)
    return value.value if isinstance(value, Enum) else value


def evaluate(
    transform: Transform,
    event: PaymentEvent,
    member: dict[str, Any],
    column: str,
    mapping: MappingFile,
) -> Any:
    """The value ``column`` gets for this event, given the member's current values."""
    tz = ZoneInfo(mapping.timezone)
    op = transform.operation
    if op == "constant":
        return transform.constant
    if op == "copy":
        return event_value(event, transform.copy_)  # type: ignore[arg-type]
    if op == "choice":
        assert transform.choice is not None
        word = transform.choice.value or str(event_value(event, transform.choice.from_))  # type: ignore[arg-type]
        value = mapping.choices[transform.choice.set].value_of(word)
        if value is None:
            raise ConfigError(
                f"{column}: choice set {transform.choice.set} has no option {word!r} "
                f"(needed by {event.kind.value})"
            )
        return value
    if op == "date":
        return _as_datetime(event_value(event, transform.date)).astimezone(tz).date().isoformat()  # type: ignore[arg-type]
    if op == "datetime":
        moment = _as_datetime(event_value(event, transform.datetime))  # type: ignore[arg-type]
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if op == "money":
        return to_money(int(event_value(event, transform.money)))  # type: ignore[arg-type]
    if op == "template":
        assert transform.template is not None
        return _render(transform.template, event)
    if op == "paid_through":
        assert transform.paid_through is not None
        current = _as_date(member.get(column))
        paid_on = event.occurred_at.astimezone(tz).date()
        rule = transform.paid_through
        period = rule.by_method.get(event.method, rule.period)
        return paid_through(paid_on, current, period).isoformat()
    if op == "arrears":
        current_minor = round(float(member.get(column) or 0) * 100)
        if transform.arrears == "clear":
            return 0.0
        delta = event.amount_minor if transform.arrears == "increase" else -event.amount_minor
        return to_money(max(0, current_minor + delta))
    raise ConfigError(f"{column}: unknown transform {op!r}")


def to_money(minor: int) -> float:
    """Öre → the JSON number Dataverse money columns take (two decimals, exact for < 2**53)."""
    return round(minor / 100, 2)


def period_end(day: date, period: str) -> date:
    """Last day of the calendar period (month, quarter, half year, year) that contains ``day``."""
    months = _PERIOD_MONTHS[period]
    last_month = ((day.month - 1) // months + 1) * months
    return date(day.year, last_month, calendar.monthrange(day.year, last_month)[1])


def paid_through(paid_on: date, current: date | None, period: str) -> date:
    """End of the period the payment covers.

    A payment covers the period it falls in; made while the member is already paid up (the
    current paid-through date is on or after the payment), it covers the next period after that.
    It never moves the date backwards.
    """
    covered = period_end(paid_on, period)
    if current is not None and current >= paid_on:
        months = _PERIOD_MONTHS[period]
        year, month = divmod(current.month - 1 + months, 12)
        covered = max(covered, period_end(date(current.year + year, month + 1, 1), period))
    return max(covered, current) if current else covered


def _render(template: str, event: PaymentEvent) -> str:
    fields = {
        name.replace(".", "_"): event_value(event, name)
        for name in (
            "event_id",
            "source",
            "kind",
            "member_ref.kind",
            "member_ref.value",
            "currency",
            "provider_ref",
            "reason_code",
            "reason_text",
            "origin",
            "method",
        )
    }
    fields["amount"] = f"{event.amount_minor / 100:.2f}"
    fields["date"] = event.occurred_at.date().isoformat()
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"template {template!r}: {exc}") from None


def _as_datetime(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def _as_date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])
