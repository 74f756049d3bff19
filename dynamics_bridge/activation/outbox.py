"""The trigger outbox and its sender: the pipeline's hooks, the sweep, and the admin's part.

The triggers of an applied event are written with its payment row
(:meth:`TriggerOutbox.payment_extras`), then sent right after the batch
(:meth:`TriggerOutbox.after_apply`); whatever a crash or an outage leaves behind is sent by
:meth:`TriggerOutbox.sweep` (the timer job).

Never pushed: members without consent, with protected identity or an excluded register status;
those pushed before are erased. The member's state column (what APSIS holds) moves only once
APSIS confirmed that profile's change.

Delivery is exactly once where it can be told, never twice silently: an event is marked sent
only after APSIS's 2xx. One whose fate is unknown (timeout, dropped connection, 5xx, a sender
that crashed holding its claim) becomes ``unconfirmed``; the sweep reads APSIS's event export
(when ``BRIDGE_ACTIVATION__READBACK`` is on) and sends again only what APSIS does not hold;
otherwise an admin resolves it (``triggers unconfirmed``, ``triggers resolve --send/--drop``).
Every event carries ``source_event_id`` (the payment event's id, or the reminder's member/period
id), which is also what the read-back matches on.

Talks to the register only through the :class:`~dynamics_bridge.activation.port.ActivationStore`
port and to APSIS through the marketing port.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dynamics_bridge.activation.audience import exclusion, parse_state
from dynamics_bridge.activation.members import ActivationJob, MemberViews, MemberWrite
from dynamics_bridge.activation.port import ActivationStore, OutboxRow
from dynamics_bridge.activation.reports import TriggerReport, UnconfirmedRow
from dynamics_bridge.activation.triggers import (
    OutboxPayload,
    PlannedTrigger,
    decode_payload,
    encode_payload,
    is_first_payment,
    member_data,
    plan_triggers,
    row_state,
    too_late,
)
from dynamics_bridge.apsis.models import ChangeOutcome, ProfileChange
from dynamics_bridge.apsis.port import EventReadBack, MarketingPlatform
from dynamics_bridge.errors import (
    AmbiguousError,
    BridgeError,
    InputError,
    PermanentError,
    TransientError,
)
from dynamics_bridge.model import Outcome
from dynamics_bridge.settings import ActivationSettings

if TYPE_CHECKING:
    from dynamics_bridge.pipeline import EventOutcome

__all__ = ["TriggerOutbox"]

log = logging.getLogger("dynamics_bridge.activation")


class TriggerOutbox(ActivationJob):
    """Triggers of applied payments: written with the payment, sent once, swept, resolved.

    It is the pipeline's :class:`~dynamics_bridge.pipeline.OutcomeHooks`."""

    def __init__(
        self,
        store: ActivationStore,
        members: MemberViews,
        platform: MarketingPlatform,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        options: ActivationSettings | None = None,
    ) -> None:
        super().__init__(store, members, platform, clock=clock)
        self.options = options or ActivationSettings()
        #: The triggers that fill ``first_paid_column`` (welcome): those marked first_payment.
        self.first_payment_triggers = frozenset(
            name for name, rule in self.config.triggers.triggers.items() if rule.first_payment
        )

    # -- triggers: the pipeline's hooks ---------------------------------------------------------

    def payment_extras(self, outcome: EventOutcome) -> dict[str, Any]:
        """Outbox columns for an applied event's payment row (empty: nothing to trigger).

        A replayed event older than ``late_trigger_days`` keeps its triggers marked ``late``
        (row ``skipped``): visible and counted, never sent. A first-payment trigger is held for
        ``first_payment_hold_minutes`` (see :mod:`.triggers`)."""
        triggers = plan_triggers(outcome, self.config.triggers)
        if not triggers or outcome.member_key is None:
            return {}
        now = self.clock()
        if too_late(outcome, now, timedelta(days=self.options.late_trigger_days)):
            triggers = [t.moved("late") for t in triggers]
        elif self.options.first_payment_hold_minutes > 0:
            hold = now + timedelta(minutes=self.options.first_payment_hold_minutes)
            triggers = [
                replace(t, hold_until=hold) if is_first_payment(t, self.config.triggers) else t
                for t in triggers
            ]
        payload = encode_payload(outcome.event.event_id, outcome.member_key, triggers)
        return self.store.pending_columns(payload, row_state(triggers))

    def after_apply(self, outcomes: Sequence[EventOutcome]) -> TriggerReport:
        """Send the triggers of a batch's applied events (the outbox keeps them on failure)."""
        window = timedelta(days=self.options.late_trigger_days)
        now = self.clock()
        ids, late = [], 0
        for o in outcomes:
            planned = plan_triggers(o, self.config.triggers)
            if o.outcome is not Outcome.APPLIED or not planned:
                continue
            if too_late(o, now, window):
                late += len(planned)
            else:
                ids.append(o.event.event_id)
        report = self.send(ids) if ids else TriggerReport()
        report.late += late
        if late:
            log.warning(
                "%d trigger(s) not sent: their events came more than %g days late",
                late,
                self.options.late_trigger_days,
                extra={"count": late, "outcome": "late"},
            )
        return report

    def send(self, event_ids: Sequence[str]) -> TriggerReport:
        """Claim these events' pending triggers that are due and send them."""
        now = self.clock()
        rows = [r for r in self.store.outbox_rows(event_ids) if r.state == "pending"]
        items = self._due_rows(rows, now)
        report = TriggerReport()
        claimed = self._claimed(items, now)
        self._send(claimed, report)
        return report

    def sweep(self) -> TriggerReport:
        """The outbox's timer job: what is pending and due is sent; a claim older than the lease
        (its sender crashed mid-send) and an ``unconfirmed`` send become questions for APSIS's
        event export (when ``readback`` is on), and only what APSIS does not hold is sent again.
        Without the read-back they stay ``unconfirmed`` for an admin. Never sent twice blindly."""
        now = self.clock()
        report = TriggerReport()
        rows = self.store.stalled_outbox(now)
        crashed = self._decoded([r for r in rows if r.state == "sending"], report)
        unknown: list[tuple[OutboxRow, OutboxPayload]] = []
        for row, payload in self._claimed(crashed, now):
            at = _moment(row.claimed_on) or now
            triggers = [t.moved("unconfirmed") if t.due(at) else t for t in payload.triggers]
            unknown.append((row, payload.with_triggers(triggers)))
        if self.readback is not None:
            waiting = self._decoded([r for r in rows if r.state == "unconfirmed"], report)
            unknown += self._claimed(waiting, now)
        to_send = self._resolve(unknown, report)
        pending = [r for r in rows if r.state == "pending"]
        to_send += self._claimed(self._due_rows(pending, now), now)
        self._send(to_send, report)
        return report

    @property
    def readback(self) -> EventReadBack | None:
        """The platform's event read-back, when it has one and the setting turns it on."""
        if self.options.readback and isinstance(self.platform, EventReadBack):
            return self.platform
        return None

    # -- unconfirmed triggers: the admin's part -------------------------------------------------

    def unconfirmed(self) -> list[UnconfirmedRow]:
        """Every row whose send has an unknown outcome, oldest first."""
        found = []
        for row in self.store.unconfirmed():
            try:
                payload = decode_payload(row.payload)
            except InputError:
                continue
            triggers = [
                f"{t.event_type} at {t.occurred_at.isoformat()}"
                for t in payload.triggers
                if t.state == "unconfirmed"
            ]
            found.append(UnconfirmedRow(row.event_id, payload.member_key, triggers, row.claimed_on))
        return sorted(found, key=lambda r: (r.since or "", r.event_id))

    def resolve(self, event_id: str, *, send: bool) -> TriggerReport:
        """An admin's decision on an unconfirmed row: send its unconfirmed triggers again (APSIS
        does not hold them) or drop them (it does, or they no longer matter)."""
        rows = [r for r in self.store.outbox_rows([event_id]) if r.state == "unconfirmed"]
        if not rows:
            raise InputError(f"event {event_id}: no unconfirmed triggers", field="event_id")
        report = TriggerReport()
        claimed = self._claimed(self._decoded(rows, report), self.clock())
        if not claimed:
            raise TransientError(f"event {event_id}: another sender holds it; try again")
        ((row, payload),) = claimed
        word = "pending" if send else "dropped"
        payload = payload.with_triggers(
            [t.moved(word) if t.state == "unconfirmed" else t for t in payload.triggers]
        )
        if send:
            report.resent += sum(t.state == "pending" for t in payload.triggers)
            self._send([(row, payload)], report)
        else:
            self._settle({row.event_id: payload})
        log.warning(
            "unconfirmed triggers of %s %s by an admin",
            event_id,
            "sent again" if send else "dropped",
            extra={"event_id": event_id, "outcome": "resent" if send else "dropped"},
        )
        return report

    def age(self) -> dict[str, Any]:
        """Pending and unconfirmed rows: how many, and the oldest's age in seconds."""
        return self.store.outbox_age(self.clock())

    # -- triggers: the sender -------------------------------------------------------------------

    def _decoded(
        self, rows: Sequence[OutboxRow], report: TriggerReport
    ) -> list[tuple[OutboxRow, OutboxPayload]]:
        """Rows with their payloads; an unreadable payload is settled ``failed`` at once."""
        found, bad = [], []
        for row in rows:
            try:
                found.append((row, decode_payload(row.payload)))
            except InputError as exc:
                bad.append(row)
                report.failed.append(f"event {row.event_id}: {exc}")
        if bad and (claimed := self.store.claim(bad, self.clock())):
            self.store.settle({r.event_id: ("failed", None) for r in claimed})
        return found

    def _due_rows(
        self, rows: Sequence[OutboxRow], now: datetime
    ) -> list[tuple[OutboxRow, OutboxPayload]]:
        """Pending rows with a trigger due now (held ones are left alone, unclaimed)."""
        report = TriggerReport()
        items = self._decoded(rows, report)
        return [(r, p) for r, p in items if any(t.due(now) for t in p.triggers)]

    def _claimed(
        self, items: Sequence[tuple[OutboxRow, OutboxPayload]], now: datetime
    ) -> list[tuple[OutboxRow, OutboxPayload]]:
        payloads = {row.event_id: payload for row, payload in items}
        claimed = self.store.claim([row for row, _ in items], now)
        return [(row, payloads[row.event_id]) for row in claimed]

    def _settle(self, payloads: Mapping[str, OutboxPayload]) -> None:
        self.store.settle(
            {
                event_id: (
                    row_state(p.triggers),
                    encode_payload(p.event_id, p.member_key, p.triggers),
                )
                for event_id, p in payloads.items()
            }
        )

    def _resolve(
        self, unknown: list[tuple[OutboxRow, OutboxPayload]], report: TriggerReport
    ) -> list[tuple[OutboxRow, OutboxPayload]]:
        """Claimed rows with unconfirmed triggers: ask APSIS which it holds. Held ones are
        settled sent; missing ones come back pending, to be sent now. When APSIS cannot be
        asked (no read-back) or does not answer, they stay unconfirmed."""
        if not unknown:
            return []
        events = [
            t.marketing_event(p.event_id)
            for _, p in unknown
            for t in p.triggers
            if t.state == "unconfirmed"
        ]
        held: set[tuple[str, str]] | None = None
        if self.readback is not None and events:
            try:
                held = self.readback.held_events(events)
            except BridgeError as exc:
                report.readback = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "trigger read-back failed, %d trigger(s) stay unconfirmed: %s",
                    len(events),
                    exc,
                    extra={"count": len(events), "outcome": "unconfirmed", "reason": str(exc)},
                )
        if held is None:
            report.unconfirmed += len(events)
            self._settle({row.event_id: p for row, p in unknown})
            return []
        to_send, done = [], {}
        for row, payload in unknown:
            triggers = []
            for t in payload.triggers:
                if t.state == "unconfirmed":
                    there = (t.event_type, payload.event_id) in held
                    report.confirmed += there
                    report.resent += not there
                    t = t.moved("sent" if there else "pending")
                triggers.append(t)
            settled = payload.with_triggers(triggers)
            if any(t.state == "pending" for t in triggers):
                to_send.append((row, settled))
            else:
                done[row.event_id] = settled
        self._settle(done)
        return to_send

    def _first_payments(
        self,
        members: Mapping[str, Mapping[str, Any]],
        by_member: Mapping[str, list[str]],
        payloads: dict[str, OutboxPayload],
        due: dict[str, list[PlannedTrigger]],
        report: TriggerReport,
    ) -> dict[str, tuple[str, str]]:
        """Decide the due first-payment triggers (not decided yet) of these members: per member
        at most one goes, the earliest, and only when the member has had none (its
        ``first_paid_column`` is empty, or holds this event's own day: a claim its sender left
        in a crash) and no other payment row carries an earlier, a decided or a sent one. The
        winner is claimed on the member (``first_paid_column``, ETag: of two senders one wins)
        and marked ``decided``; the others are withdrawn. ``payloads`` and ``due`` are updated
        in place; returns member key -> (event id, trigger name) of the winners. One read of
        the members' payment rows and one ``$batch`` of claims for all of them."""
        config = self.config.triggers
        column = config.first_paid_column
        withdraw: set[tuple[str, str]] = set()
        candidates: dict[str, tuple[datetime, str, PlannedTrigger]] = {}
        for member_key, ids in by_member.items():
            firsts = sorted(
                ((t.occurred_at, e, t) for e in ids for t in due[e] if is_first_payment(t, config)),
                key=lambda x: (x[0], x[1], x[2].name),
            )
            if not firsts:
                continue
            withdraw |= {(e, t.name) for _, e, t in firsts[1:] if not t.decided}
            at, event_id, trigger = firsts[0]
            if trigger.decided:
                continue  # decided before (then unconfirmed, and missing in APSIS): it goes
            day = at.astimezone(self.members.zone).date().isoformat()
            if column and members[member_key].get(column) not in (None, "", day):
                withdraw.add((event_id, trigger.name))  # the member was welcomed already
            else:
                candidates[member_key] = firsts[0]
        id_column = self.members.mapping.member.id_column
        others = self.store.member_payloads(
            [str(members[k].get(id_column)) for k in candidates if members[k].get(id_column)]
        )
        claims: list[tuple[str, dict[str, Any], str]] = []
        winners: dict[str, tuple[str, str]] = {}
        for member_key, (at, event_id, trigger) in candidates.items():
            rows = others.get(str(members[member_key].get(id_column)), [])
            if self._taken(rows, event_id, at):
                withdraw.add((event_id, trigger.name))
                continue
            winners[member_key] = (event_id, trigger.name)
            if column:
                day = at.astimezone(self.members.zone).date().isoformat()
                etag = str(members[member_key].get("@odata.etag") or "*")
                claims.append((member_key, {column: day}, etag))
        for (member_key, _, _), result in zip(
            claims, self.store.update_members(claims), strict=True
        ):
            if not result.ok:  # the member changed meanwhile: decide again at the next sweep
                event_id, name = winners.pop(member_key)
                due[event_id] = [t for t in due[event_id] if t.name != name]
        for event_id, name in withdraw:
            report.withdrawn += 1
            due[event_id] = [t for t in due[event_id] if t.name != name]
            self._retag(payloads, event_id, {name}, "withdrawn")
        for event_id, name in winners.values():
            p = payloads[event_id]
            payloads[event_id] = p.with_triggers(
                [replace(t, decided=True) if t.name == name else t for t in p.triggers]
            )
            due[event_id] = [
                replace(t, decided=True) if t.name == name else t for t in due[event_id]
            ]
        return winners

    @staticmethod
    def _retag(
        payloads: dict[str, OutboxPayload], event_id: str, names: set[str], word: str
    ) -> None:
        """Move the pending triggers ``names`` of one payload to state ``word``."""
        p = payloads[event_id]
        payloads[event_id] = p.with_triggers(
            [t.moved(word) if t.name in names and t.state == "pending" else t for t in p.triggers]
        )

    def _taken(self, rows: Sequence[tuple[str, str]], event_id: str, at: datetime) -> bool:
        """Whether another of the member's payment rows carries a first-payment trigger that
        was (or may have been) sent or was decided, or a pending one that is earlier (event
        time, then id): then this event's does not go."""
        for other_id, text in rows:
            if other_id == event_id:
                continue
            try:
                other = decode_payload(text)
            except InputError:
                continue
            for t in other.triggers:
                if not is_first_payment(t, self.config.triggers):
                    continue
                if t.state in ("sent", "unconfirmed") or (t.state == "pending" and t.decided):
                    return True
                if t.state == "pending" and (t.occurred_at, other_id) < (at, event_id):
                    return True
        return False

    def _send(
        self, claimed: Sequence[tuple[OutboxRow, OutboxPayload]], report: TriggerReport
    ) -> None:
        """Send the due triggers of claimed rows, one profile change per member, and settle
        every row with its triggers' new states."""
        report.claimed += len(claimed)
        if not claimed:
            return
        now = self.clock()
        payloads: dict[str, OutboxPayload] = {row.event_id: p for row, p in claimed}
        by_member: dict[str, list[str]] = defaultdict(list)
        for event_id, payload in payloads.items():
            by_member[payload.member_key].append(event_id)
        due = {e: [t for t in p.triggers if t.due(now)] for e, p in payloads.items()}
        members = self.store.members(sorted(by_member), self.members.columns)
        today = self.members.today(now)
        views = self.views(list(members.values()), today)
        changes: list[ProfileChange] = []
        owners: dict[str, list[str]] = {}  # profile key -> event ids
        pending: dict[str, MemberWrite] = {}  # by profile key
        audience = self.config.apsis.audience

        def settle_due(event_ids: list[str], word: str) -> None:
            for e in event_ids:
                self._retag(payloads, e, {t.name for t in due.get(e, [])}, word)

        eligible: dict[str, tuple[str, dict[str, Any]]] = {}  # member -> (profile key, view)
        for member_key, ids in by_member.items():
            found = members.get(member_key)
            if found is None:
                settle_due(ids, "failed")
                report.failed.append(f"member {member_key}: not found")
                report.failed_by.update(t.event_type for e in ids for t in due[e])
                continue
            view = views[member_key]
            profile_key = self.members.profile_key(view)
            excluded = exclusion(view, audience)
            previous = parse_state(view.get(audience.state_column))
            if excluded is None and profile_key is not None:
                eligible[member_key] = (profile_key, view)
                continue
            report.skipped += sum(len(due[e]) for e in ids)
            report.skipped_by.update(t.event_type for e in ids for t in due[e])
            settle_due(ids, "skipped")
            if previous is not None and profile_key is not None:
                # The state is cleared only once the erase went through: until then the
                # member still looks pushed, so the next run erases again.
                changes.append(ProfileChange(profile_key, erase=True))
                owners[profile_key] = []
                pending[profile_key] = (member_key, {}, {audience.state_column: None})
        won = self._first_payments(
            members, {k: by_member[k] for k in eligible}, payloads, due, report
        )
        winners = {eligible[k][0]: v for k, v in won.items()}  # by profile key
        for member_key, (profile_key, view) in eligible.items():
            ids = by_member[member_key]
            previous = parse_state(view.get(audience.state_column))
            events = [
                self._personal(t, view, today).marketing_event(e) for e in ids for t in due[e]
            ]
            if not events:
                continue
            attributes: dict[str, Any] = {}
            on_success: dict[str, Any] = {}
            if previous is None:  # first time in APSIS: the profile with its attributes
                attributes, state = self.members.first_push(view, today)
                if state is not None:
                    on_success[audience.state_column] = state
            changes.append(
                ProfileChange(
                    profile_key, attributes=attributes, events=events, create=previous is None
                )
            )
            owners[profile_key] = ids
            pending[profile_key] = (member_key, {}, on_success)
        outcomes = self._apply(changes, owners, due, settle_due, report)
        member_updates = self.members.member_writes(pending, outcomes)
        for profile_key, (event_id, name) in winners.items():
            outcome = outcomes.get(profile_key)
            if outcome is None or outcome.ok or _unknown(outcome):
                continue
            # Surely not stored: decided again when retried. The member keeps the claim (a
            # fact of the register: the first payment's day), which this event's retry
            # recognises as its own (same day) unless an earlier payment has come meanwhile.
            p = payloads[event_id]
            payloads[event_id] = p.with_triggers(
                [replace(t, decided=False) if t.name == name else t for t in p.triggers]
            )
        self._settle(payloads)
        if member_updates:
            self.store.update_members(member_updates)
        log.info(
            "triggers sent",
            extra={"count": sum(report.sent.values()), "outcome": f"{len(report.failed)} failed"},
        )

    def _personal(
        self, trigger: PlannedTrigger, view: Mapping[str, Any], today: date
    ) -> PlannedTrigger:
        """The trigger with its member fields and text (read now, when it is sent: the
        member as they are, not as they were when the payment came)."""
        rule = self.config.triggers.triggers.get(trigger.name)
        if rule is None or not rule.member_fields():
            return trigger
        member = self.members.with_facts(view, today)
        method = trigger.data.get("method") or member.get(self.config.segments.method_column)
        added = member_data(rule, member, str(method) if method else None, today)
        return replace(trigger, data={**added, **trigger.data})

    def _apply(
        self,
        changes: list[ProfileChange],
        owners: Mapping[str, list[str]],
        due: Mapping[str, list[PlannedTrigger]],
        settle_due: Callable[[list[str], str], None],
        report: TriggerReport,
    ) -> dict[str, ChangeOutcome]:
        if not changes:
            return {}
        result = self.platform.apply_changes(changes)
        by_key = {c.key: c for c in changes}
        for outcome in result.outcomes:
            change = by_key[outcome.key]
            ids = owners.get(outcome.key, [])
            if outcome.ok:
                if change.erase:
                    report.erased += 1
                settle_due(ids, "sent")
                report.sent.update(e.type for e in change.events)
                continue
            # An unknown outcome waits for the read-back or an admin; a passing failure stays
            # pending (the sweep sends it); others stop here.
            if _unknown(outcome):
                word = "unconfirmed"
                report.unconfirmed += sum(len(due.get(e, [])) for e in ids)
            elif isinstance(outcome.error, PermanentError):
                word = "failed"
            else:
                word = "pending"
            if word != "pending":
                settle_due(ids, word)
            report.failed.append(f"profile {outcome.key}: {outcome.error}")
            report.failed_by.update(e.type for e in change.events)
        return {o.key: o for o in result.outcomes}


def _unknown(outcome: ChangeOutcome) -> bool:
    """The change's events may or may not be stored (their POST's answer was lost)."""
    return isinstance(outcome.error, AmbiguousError)


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
