"""Triggers: which marketing events an applied payment event starts, and their outbox payload.

Pure. Only ``applied`` outcomes trigger: a ``duplicate`` was triggered when it was first applied
and a ``stale`` event changed nothing on the member. A ``replayed`` one (it arrived after a later
event of its member and was folded into place) starts its own triggers like any other, as long
as it is fresh (:func:`too_late`); an older one keeps its triggers in the outbox marked ``late``,
never sent, so they can be counted and seen.

The payload goes into the payment row in the same change set as the payment itself (see
:mod:`dynamics_bridge.activation.port`), so the trigger is durable exactly when the payment is,
and carries the event id as ``source_event_id``. Each trigger in it keeps its own state
(:data:`TRIGGER_STATES`); the row's state is derived from them (:func:`row_state`), so one
payment's confirmation can go out at once while its welcome waits (``hold_until``).

**First-payment triggers (welcome), exactly once per member.** A first-payment trigger belongs to
the member's earliest payment that fills ``first_payment_column`` in event order. It is held in
the outbox for ``first_payment_hold_minutes``; when it comes due the sender gives it up
(``withdrawn``) if the member already had one (``first_paid_column`` is set: the sender claims it
with the member's ETag before sending) or if an earlier payment row of the member holds one of
its own. So a late earlier payment that arrives within the hold takes the welcome over; one that
arrives after the welcome went out sends none (exactly once wins over the right event).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dynamics_bridge.activation.config import FixIt, TriggerRule, TriggersFile
from dynamics_bridge.apsis.models import MarketingEvent
from dynamics_bridge.errors import InputError
from dynamics_bridge.model import Outcome, PaymentEvent

if TYPE_CHECKING:
    from dynamics_bridge.pipeline import EventOutcome

__all__ = [
    "DONE",
    "TRIGGER_STATES",
    "OutboxPayload",
    "PlannedTrigger",
    "decode_payload",
    "encode_payload",
    "event_data",
    "is_first_payment",
    "member_data",
    "plan_triggers",
    "row_state",
    "too_late",
]

#: What one trigger in a payload can be: ``pending`` (to send, perhaps held), ``unconfirmed``
#: (sent, APSIS's answer lost), ``sent``, ``late`` (its event came too late to trigger),
#: ``withdrawn`` (a first-payment trigger another event of the member carries), ``skipped``
#: (the member is not pushed), ``failed`` (APSIS refused it), ``dropped`` (an admin said so).
TRIGGER_STATES = (
    "pending",
    "unconfirmed",
    "sent",
    "late",
    "withdrawn",
    "skipped",
    "failed",
    "dropped",
)
#: Trigger states that end its life.
DONE = frozenset({"sent", "late", "withdrawn", "skipped", "failed", "dropped"})


@dataclass(frozen=True, slots=True)
class PlannedTrigger:
    """One marketing event to send: our trigger name, its event type, time and data, and where
    it stands (``state``; ``hold_until``: not sent before then)."""

    name: str
    event_type: str
    occurred_at: datetime
    data: Mapping[str, Any]
    state: str = "pending"
    hold_until: datetime | None = None
    #: a first-payment trigger that won its member's claim: it goes, whatever the member says
    decided: bool = False

    def marketing_event(self, source_event_id: str) -> MarketingEvent:
        return MarketingEvent(self.event_type, self.occurred_at, dict(self.data), source_event_id)

    def due(self, now: datetime) -> bool:
        """To be sent now: pending, and not held any more."""
        return self.state == "pending" and (self.hold_until is None or self.hold_until <= now)

    def moved(self, state: str) -> PlannedTrigger:
        return replace(self, state=state)


@dataclass(frozen=True, slots=True)
class OutboxPayload:
    """What a payment row's outbox column holds: the member and the triggers of one event."""

    event_id: str
    member_key: str
    triggers: Sequence[PlannedTrigger]

    def with_triggers(self, triggers: Sequence[PlannedTrigger]) -> OutboxPayload:
        return OutboxPayload(self.event_id, self.member_key, list(triggers))


def row_state(triggers: Sequence[PlannedTrigger]) -> str:
    """The outbox row's state from its triggers' states: what still needs someone comes first."""
    states = {t.state for t in triggers}
    for word in ("unconfirmed", "pending", "failed", "sent", "dropped"):
        if word in states:
            return word
    return "skipped"  # late, withdrawn, skipped (or no triggers)


def too_late(outcome: EventOutcome, now: datetime, window: timedelta) -> bool:
    """A replayed event older than the freshness window: its triggers are not sent."""
    return outcome.replayed and now - outcome.event.occurred_at > window


def event_data(
    event: PaymentEvent, fields: Mapping[str, str], member_key: str, fix_it: FixIt
) -> dict[str, Any]:
    """The event's ``data`` object as far as the event gives it (APSIS field -> our value's
    name); the member's fields are added when it is sent (:func:`member_data`)."""
    values: dict[str, Any] = {
        "source_event_id": event.event_id,
        "payment_id": event.provider_ref,
        "amount": event.amount_minor / 100,
        "currency": event.currency,
        "method": event.method.value,
        "member_number": member_key,
        "reason": event.reason_text,
        "reason_code": event.reason_code,
        "fix_it": fix_it.text(event.method, event.reason_code),
        "kind": event.kind.value,
        "occurred_on": event.occurred_at.date().isoformat(),
    }
    return {field: values[source] for field, source in fields.items()}


def member_data(
    rule: TriggerRule, member: Mapping[str, Any], method: str | None, today: date
) -> dict[str, Any]:
    """The trigger's fields from the member (its view with derived facts and related values)
    and its personal text; a value the member has not is left out, not sent empty."""
    found: dict[str, Any] = {}
    for field, source in rule.member_fields().items():
        if source == "text" and rule.text is not None:
            found[field] = rule.text.text(method, member, today)
            continue
        value = member.get(source)
        if isinstance(value, date):
            value = value.isoformat()
        if value not in (None, ""):
            found[field] = value
    return found


def _first_payment(outcome: EventOutcome, column: str) -> bool:
    old, new = outcome.changes.get(column, (None, None))
    return old in (None, "") and new not in (None, "")


def plan_triggers(outcome: EventOutcome, config: TriggersFile) -> list[PlannedTrigger]:
    """The triggers of one outcome, in the order triggers.yaml lists them."""
    if outcome.outcome is not Outcome.APPLIED or outcome.member_key is None:
        return []
    event = outcome.event
    planned = []
    for name, rule in config.triggers.items():
        if event.kind not in rule.kinds:
            continue
        if rule.first_payment and not _first_payment(outcome, config.first_payment_column):
            continue
        planned.append(_planned(name, rule, event, outcome.member_key, config.fix_it))
    return planned


def _planned(
    name: str, rule: TriggerRule, event: PaymentEvent, member_key: str, fix_it: FixIt
) -> PlannedTrigger:
    return PlannedTrigger(
        name,
        rule.event or name,
        event.occurred_at,
        event_data(event, rule.event_fields(), member_key, fix_it),
    )


def is_first_payment(trigger: PlannedTrigger, config: TriggersFile) -> bool:
    rule = config.triggers.get(trigger.name)
    return rule is not None and rule.first_payment


def encode_payload(event_id: str, member_key: str, triggers: Sequence[PlannedTrigger]) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "member": member_key,
            "triggers": [_encode_trigger(t) for t in triggers],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _encode_trigger(t: PlannedTrigger) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": t.name,
        "type": t.event_type,
        "at": t.occurred_at.isoformat(),
        "data": dict(t.data),
        "state": t.state,
    }
    if t.hold_until is not None:
        out["hold_until"] = t.hold_until.isoformat()
    if t.decided:
        out["decided"] = True
    return out


def decode_payload(text: str) -> OutboxPayload:
    """A payment row's outbox column back as triggers; InputError when it is not ours. A
    trigger without a state (written before states existed) is pending."""
    try:
        raw = json.loads(text)
        triggers = []
        for t in raw["triggers"]:
            state = str(t.get("state") or "pending")
            if state not in TRIGGER_STATES:
                raise ValueError(f"unknown trigger state {state!r}")
            hold = t.get("hold_until")
            triggers.append(
                PlannedTrigger(
                    str(t["name"]),
                    str(t["type"]),
                    _aware(datetime.fromisoformat(t["at"])),
                    t["data"],
                    state,
                    _aware(datetime.fromisoformat(hold)) if hold else None,
                    bool(t.get("decided", False)),
                )
            )
        return OutboxPayload(str(raw["event_id"]), str(raw["member"]), triggers)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"outbox payload is not readable: {exc}", field="payload") from None


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a time without its UTC offset")
    return moment
