"""Triggers: which marketing events an applied payment event starts, and their outbox payload.

Pure. Only ``applied`` outcomes trigger: a ``duplicate`` was triggered when it was first applied,
a ``stale`` event changed nothing on the member, and a ``replayed`` one (applied into place after
newer events of its member, older than its own guard) triggers as a stale one did: nothing, so a
late first payment does not welcome a member twice, nor a late failure ask to pay what is paid.
The payload goes into the payment row in the same change set as the payment itself (see
:mod:`dynamics_bridge.activation.outbox`), so the trigger is durable exactly when the payment
is, and carries the event id as ``source_event_id``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dynamics_bridge.activation.config import FixIt, TriggerRule, TriggersFile
from dynamics_bridge.apsis.models import MarketingEvent
from dynamics_bridge.errors import InputError
from dynamics_bridge.model import Outcome, PaymentEvent

if TYPE_CHECKING:
    from dynamics_bridge.pipeline import EventOutcome

__all__ = [
    "OutboxPayload",
    "PlannedTrigger",
    "decode_payload",
    "encode_payload",
    "event_data",
    "plan_triggers",
]


@dataclass(frozen=True, slots=True)
class PlannedTrigger:
    """One marketing event to send: our trigger name, its event type, time and data."""

    name: str
    event_type: str
    occurred_at: datetime
    data: Mapping[str, Any]

    def marketing_event(self, source_event_id: str) -> MarketingEvent:
        return MarketingEvent(self.event_type, self.occurred_at, dict(self.data), source_event_id)


@dataclass(frozen=True, slots=True)
class OutboxPayload:
    """What a payment row's outbox column holds: the member and the triggers of one event."""

    event_id: str
    member_key: str
    triggers: Sequence[PlannedTrigger]


def event_data(
    event: PaymentEvent, fields: Sequence[str], member_key: str, fix_it: FixIt
) -> dict[str, Any]:
    """The event's ``data`` object: only the fields its APSIS event version defines."""
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
    return {name: values[name] for name in fields}


def _first_payment(outcome: EventOutcome, column: str) -> bool:
    old, new = outcome.changes.get(column, (None, None))
    return old in (None, "") and new not in (None, "")


def plan_triggers(outcome: EventOutcome, config: TriggersFile) -> list[PlannedTrigger]:
    """The triggers of one outcome, in the order triggers.yaml lists them."""
    if outcome.outcome is not Outcome.APPLIED or outcome.member_key is None or outcome.replayed:
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
        event_data(event, rule.fields, member_key, fix_it),
    )


def encode_payload(event_id: str, member_key: str, triggers: Sequence[PlannedTrigger]) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "member": member_key,
            "triggers": [
                {
                    "name": t.name,
                    "type": t.event_type,
                    "at": t.occurred_at.isoformat(),
                    "data": dict(t.data),
                }
                for t in triggers
            ],
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode_payload(text: str) -> OutboxPayload:
    """A payment row's outbox column back as triggers; InputError when it is not ours."""
    try:
        raw = json.loads(text)
        return OutboxPayload(
            str(raw["event_id"]),
            str(raw["member"]),
            [
                PlannedTrigger(
                    str(t["name"]), str(t["type"]), datetime.fromisoformat(t["at"]), t["data"]
                )
                for t in raw["triggers"]
            ],
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"outbox payload is not readable: {exc}", field="payload") from None
