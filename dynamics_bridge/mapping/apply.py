"""Plan what one event writes: the payment row, and the member columns that really change.

Pure. The pipeline reads the members a batch touches once, calls :func:`plan_member_update` per
event in event-time order (feeding each plan's result into the next), and writes the plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dynamics_bridge.mapping.models import MappingFile
from dynamics_bridge.mapping.transforms import evaluate
from dynamics_bridge.model import PaymentEvent

__all__ = [
    "MemberPlan",
    "ReplayStep",
    "event_order",
    "key_literal",
    "latest_guard",
    "out_of_order",
    "payment_row",
    "plan_member_update",
    "plan_replay",
    "state_columns",
]


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
    moment = _utc_text(event.occurred_at)
    if changes or not _same(member.get(guard), moment):
        # The guard moves even when nothing else does: it tells a later, older event that it
        # arrives out of order (an event that is a no-op here may not be one in another order).
        changes[guard] = moment
    if not changes:
        return MemberPlan()
    return MemberPlan(changes, {c: member.get(c) for c in changes})


def event_order(event: PaymentEvent) -> tuple[datetime, str]:
    """The order a member's events apply in: event time, ties by event id."""
    return (event.occurred_at, event.event_id)


def state_columns(mapping: MappingFile) -> list[str]:
    """The member columns events fold into: every rule's columns and every ordering guard."""
    columns = {c for rule in mapping.rules.values() for c in rule.set}
    return sorted(columns | _guard_columns(mapping))


def _guard_columns(mapping: MappingFile) -> set[str]:
    """Every ordering guard: the member's, and the rules' own (mandates keep theirs)."""
    guards = {rule.guard for rule in mapping.rules.values() if rule.guard}
    return guards | {mapping.member.ordering_column}


def latest_guard(member: dict[str, Any], mapping: MappingFile) -> datetime | None:
    """The newest time any ordering guard of the member holds (None: no event applied yet)."""
    times = [t for g in _guard_columns(mapping) if (t := _parse_time(member.get(g))) is not None]
    return max(times) if times else None


def out_of_order(event: PaymentEvent, member: dict[str, Any], mapping: MappingFile) -> bool:
    """Whether a newer event of this member may have been applied already (guards hold whole
    seconds, so the same second counts): only then does the pipeline read its history."""
    latest = latest_guard(member, mapping)
    return latest is not None and event.occurred_at.replace(microsecond=0) <= latest


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One event of a replay: its member plan over the state before it, and that state."""

    event: PaymentEvent
    plan: MemberPlan
    before: dict[str, Any]
    #: why the event could not be planned (it then changes nothing and the fold goes on)
    error: Exception | None = None


def plan_replay(
    start: dict[str, Any],
    events: Sequence[PaymentEvent],
    mapping: MappingFile,
) -> tuple[list[ReplayStep], dict[str, Any]]:
    """Fold ``events`` in event order over ``start`` (the member as it was before the first of
    them): each event's plan and the member state before it (its rule and guard columns), and
    the final state. An in-order run and a replay of out-of-order arrivals are the same fold.
    Pure."""
    columns = state_columns(mapping)
    state = dict(start)
    steps: list[ReplayStep] = []
    for event in sorted(events, key=event_order):
        before = {c: state.get(c) for c in columns}
        try:
            plan = plan_member_update(event, state, mapping)
        except Exception as exc:  # noqa: BLE001 - one event's error must not stop the fold
            steps.append(ReplayStep(event, MemberPlan(), before, exc))
            continue
        state.update(plan.changes)
        steps.append(ReplayStep(event, plan, before))
    return steps, state


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
