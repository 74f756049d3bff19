"""Plan what one event writes: the payment row, and the member columns that really change.

Pure. The pipeline reads the members a batch touches once, calls :func:`plan_member_update` per
event in event-time order (feeding each plan's result into the next), and writes the plans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dynamics_bridge.mapping.models import MappingFile
from dynamics_bridge.mapping.transforms import evaluate
from dynamics_bridge.model import PaymentEvent

__all__ = ["MemberPlan", "key_literal", "payment_row", "plan_member_update"]


@dataclass(frozen=True, slots=True)
class MemberPlan:
    """Column → new value for one member; ``stale`` when the event is older than the guard."""

    changes: dict[str, Any] = field(default_factory=dict)
    old: dict[str, Any] = field(default_factory=dict)
    stale: bool = False


def plan_member_update(
    event: PaymentEvent, member: dict[str, Any], mapping: MappingFile
) -> MemberPlan:
    """The member columns this event changes, with no-op columns left out.

    The ordering guard (the rule's guard column, else the member's) holds the time of the last
    applied event; an older event changes nothing on the member (``stale``), so a late or
    redelivered fact never regresses a newer state.
    """
    rule = mapping.rules.get(event.kind)
    if rule is None or not rule.set:
        return MemberPlan()
    guard = rule.guard or mapping.member.ordering_column
    last = _parse_time(member.get(guard))
    if last is not None and event.occurred_at < last:
        return MemberPlan(stale=True)
    changes: dict[str, Any] = {}
    for column, transform in rule.set.items():
        value = evaluate(transform, event, member, column, mapping)
        if not _same(member.get(column), value):
            changes[column] = value
    if not changes:
        return MemberPlan()
    changes[guard] = _utc_text(event.occurred_at)
    return MemberPlan(changes, {c: member.get(c) for c in changes})


def payment_row(event: PaymentEvent, mapping: MappingFile, member_key: str) -> dict[str, Any]:
    """The payment table row for this event, bound to its member by alternate key."""
    payment = mapping.payment
    row: dict[str, Any] = {
        column: evaluate(transform, event, {}, column, mapping)
        for column, transform in payment.values.items()
    }
    row.pop(payment.key_column, None)  # the key travels in the URL, never in the body
    row[f"{payment.member_navigation}@odata.bind"] = (
        f"/{mapping.member.entity_set}({mapping.member.key_column}={key_literal(member_key)})"
    )
    return row


def key_literal(value: str) -> str:
    """An OData string literal: single quotes, inner apostrophes doubled (``'O''Brien'``)."""
    return "'" + value.replace("'", "''") + "'"


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _same(current: Any, new: Any) -> bool:
    if current is None or new is None:
        return current is new
    if isinstance(new, float) or isinstance(current, float):
        try:
            return round(float(current), 2) == round(float(new), 2)
        except (TypeError, ValueError):
            return False
    if isinstance(new, str) and isinstance(current, str) and len(new) == 10 and "T" in current:
        return current[:10] == new  # a date-only column may read back with a time part
    return bool(current == new)
