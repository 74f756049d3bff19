"""The activation side at work: triggers after each sync batch, segments and reminders on timers.

:class:`Activation` joins the pure parts (rules, score, triggers, reminders, audience) with
Dataverse (:class:`~dynamics_bridge.activation.store.ActivationStore`) and the marketing port.
It is also the pipeline's hook (:meth:`payment_extras`, :meth:`after_apply`): the triggers of an
applied event are written with its payment row, then sent right after the batch; whatever a
crash or an outage leaves behind is sent by :meth:`sweep_triggers`.

Never pushed: members without consent, with protected identity or an excluded register status;
those pushed before are erased. Only differences against what APSIS holds are sent. The
member's state column (what APSIS holds) moves only once APSIS confirmed that profile's change:
an erase or a first push that failed leaves it as it was, so the next run tries again.

Delivery is exactly once where it can be told, never twice silently: an event is marked sent
only after APSIS's 2xx. One whose fate is unknown (timeout, dropped connection, 5xx, a sender
that crashed holding its claim) becomes ``unconfirmed``; the sweep reads APSIS's event export
(when ``BRIDGE_ACTIVATION__READBACK`` is on) and sends again only what APSIS does not hold;
otherwise an admin resolves it (``triggers unconfirmed``, ``triggers resolve --send/--drop``).
Every event carries ``source_event_id`` (the payment event's id, or the reminder's member/period
id), which is also what the read-back matches on.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from dynamics_bridge.activation.audience import (
    ProfilePlan,
    desired_attributes,
    exclusion,
    parse_state,
    plan_profile,
)
from dynamics_bridge.activation.config import ActivationConfig
from dynamics_bridge.activation.reminders import (
    DueReminder,
    due_period,
    encode_sent,
    parse_sent,
    query_window,
    reminder_event,
)
from dynamics_bridge.activation.rules import compile_rule, rule_columns
from dynamics_bridge.activation.segments import SegmentEvaluator
from dynamics_bridge.activation.store import ActivationStore, OutboxRow
from dynamics_bridge.activation.triggers import (
    OutboxPayload,
    PlannedTrigger,
    decode_payload,
    encode_payload,
    is_first_payment,
    plan_triggers,
    row_state,
    too_late,
)
from dynamics_bridge.apsis.client import AmbiguousDeliveryError
from dynamics_bridge.apsis.models import ChangeOutcome, MarketingEvent, ProfileChange
from dynamics_bridge.apsis.port import EventReadBack, MarketingPlatform
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.errors import BridgeError, InputError, PermanentError, TransientError
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.model import Outcome
from dynamics_bridge.settings import ActivationSettings

if TYPE_CHECKING:
    from dynamics_bridge.pipeline import EventOutcome

__all__ = ["Activation", "ReminderReport", "SegmentReport", "TriggerReport", "UnconfirmedRow"]

log = logging.getLogger("dynamics_bridge.activation")

DELTA_NAME = "segments-delta-link"
#: State-table row: when the segments job last evaluated every member (UTC, ISO 8601).
FULL_RUN_NAME = "segments-last-full-run"

#: What a push leaves to write on one member: (member key, columns written whatever happens,
#: columns written only once APSIS confirmed that profile's change).
MemberWrite = tuple[str, dict[str, Any], dict[str, Any]]


@dataclass
class TriggerReport:
    claimed: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # event type -> count
    skipped: int = 0  # excluded members (consent, protected identity, status)
    erased: int = 0
    failed: list[str] = field(default_factory=list)
    #: triggers of events that came too late (older than late_trigger_days): never sent
    late: int = 0
    #: first-payment triggers given up: the member had one, or an earlier payment carries it
    withdrawn: int = 0
    #: triggers whose send has an unknown outcome (left for the read-back or an admin)
    unconfirmed: int = 0
    #: unconfirmed triggers APSIS turned out to hold (settled sent, not sent again)
    confirmed: int = 0
    #: unconfirmed triggers APSIS turned out not to hold (sent again)
    resent: int = 0
    #: why the read-back could not tell (None: it was not needed, or it answered)
    readback: str | None = None

    def add(self, other: TriggerReport) -> None:
        self.claimed += other.claimed
        self.sent.update(other.sent)
        self.skipped += other.skipped
        self.erased += other.erased
        self.failed += other.failed
        self.late += other.late
        self.withdrawn += other.withdrawn
        self.unconfirmed += other.unconfirmed
        self.confirmed += other.confirmed
        self.resent += other.resent
        self.readback = other.readback or self.readback

    def to_json(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "sent": dict(sorted(self.sent.items())),
            "skipped": self.skipped,
            "erased": self.erased,
            "failed": self.failed,
            "late": self.late,
            "withdrawn": self.withdrawn,
            "unconfirmed": self.unconfirmed,
            "confirmed": self.confirmed,
            "resent": self.resent,
            "readback": self.readback,
        }


@dataclass(frozen=True, slots=True)
class UnconfirmedRow:
    """An outbox row whose send has an unknown outcome, for the admin's list."""

    event_id: str
    member: str
    triggers: list[str]  # the unconfirmed ones: "type at time"
    since: str | None  # when it was sent (claimed)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "member": self.member,
            "triggers": self.triggers,
            "since": self.since,
        }


@dataclass
class ProfileDiff:
    """One member's row of the diff table (``segments push --dry-run``)."""

    member: str
    plan: ProfilePlan
    score: int
    segments: list[str]


@dataclass
class SegmentReport:
    dry_run: bool = False
    full: bool = False  # every member evaluated (asked, due by full_run_hours, or resynced)
    resynced: bool = False
    evaluated: int = 0
    segment_sizes: Counter[str] = field(default_factory=Counter)
    pushed: int = 0
    erased: int = 0
    excluded: int = 0
    unchanged: int = 0
    imports: int = 0
    failed: list[str] = field(default_factory=list)  # every failure, with its reason
    permanent: int = 0  # of those, how many a retry will not fix (they do not hold the delta)
    delta_saved: bool = False
    diffs: list[ProfileDiff] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "full": self.full,
            "resynced": self.resynced,
            "evaluated": self.evaluated,
            "segment_sizes": dict(sorted(self.segment_sizes.items())),
            "pushed": self.pushed,
            "erased": self.erased,
            "excluded": self.excluded,
            "unchanged": self.unchanged,
            "imports": self.imports,
            "failed": self.failed,
            "permanent": self.permanent,
            "delta_saved": self.delta_saved,
        }


@dataclass
class ReminderReport:
    dry_run: bool = False
    due: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    already_sent: int = 0
    excluded: int = 0
    failed: list[str] = field(default_factory=list)
    items: list[DueReminder] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "due": dict(sorted(self.due.items())),
            "sent": dict(sorted(self.sent.items())),
            "already_sent": self.already_sent,
            "excluded": self.excluded,
            "failed": self.failed,
        }


class Activation:
    """Triggers, segments, score and reminders for one register and one marketing platform."""

    def __init__(
        self,
        client: DataverseClient,
        mapping: MappingFile,
        config: ActivationConfig,
        platform: MarketingPlatform,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        options: ActivationSettings | None = None,
    ) -> None:
        self.client = client
        self.mapping = mapping
        self.config = config
        self.platform = platform
        self.clock = clock
        self.options = options or ActivationSettings()
        self.store = ActivationStore(client, mapping, config.triggers.outbox)
        self.zone = ZoneInfo(mapping.timezone)
        segments = config.segments
        self.evaluator = SegmentEvaluator(config, mapping)
        self.reminder_rules = {
            name: compile_rule(r.when) if r.when else None for name, r in segments.reminders.items()
        }
        #: The triggers that fill ``first_paid_column`` (welcome): those marked first_payment.
        self.first_payment_triggers = frozenset(
            name for name, rule in config.triggers.triggers.items() if rule.first_payment
        )

    # -- helpers ------------------------------------------------------------------------------

    def today(self) -> date:
        return self.clock().astimezone(self.zone).date()

    def member_columns(self) -> list[str]:
        """Every member column the activation side reads."""
        apsis, segments = self.config.apsis, self.config.segments
        audience = apsis.audience
        engagement = segments.engagement
        columns = {
            self.mapping.member.key_column,
            apsis.profile_key.column,
            audience.consent_column,
            audience.state_column,
            segments.method_column,
            segments.reminders_column,
            engagement.column,
            *audience.excluded_statuses,
            *(a.column for a in apsis.attributes.values() if a.column),
            *(p.column for p in engagement.counts().values()),
        }
        if audience.protected_column:
            columns.add(audience.protected_column)
        if engagement.tenure:
            columns.add(engagement.tenure.column)
        for segment in segments.segments.values():
            columns |= rule_columns(segment.rule)
        for reminder in segments.reminders.values():
            columns.add(reminder.step.column)
            if reminder.when:
                columns |= rule_columns(reminder.when)
        if self.config.triggers.first_paid_column:
            columns.add(self.config.triggers.first_paid_column)
        if segments.segments_column:
            columns.add(segments.segments_column)
        return sorted(c for c in columns if c in self.mapping.member.columns)

    def view(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A member row as the rules see it (choice words, dates)."""
        return self.evaluator.view(row)

    def _profile_key(self, view: Mapping[str, Any]) -> str | None:
        value = view.get(self.config.apsis.profile_key.column)
        return str(value) if value not in (None, "") else None

    def _first_push(self, view: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        """A member's attributes for a profile APSIS does not hold yet, and the state column's
        value once they are written (so a later exclusion knows to erase the profile)."""
        score = view.get(self.config.segments.engagement.column)
        plan = plan_profile(
            None, desired_attributes(view, self.config.apsis, {"engagement_score": score}), (), None
        )
        return dict(plan.attributes), plan.state.to_text() if plan.state else None

    def _member_writes(
        self,
        pending: Mapping[str, MemberWrite],
        outcomes: Mapping[str, ChangeOutcome],
    ) -> list[tuple[str, dict[str, Any], str]]:
        """Member updates after a push: a :data:`MemberWrite`'s on-success columns only where that
        profile's change went through. A profile APSIS had lost and the change created again
        holds only that change, so its state is cleared: the next segments run pushes
        everything."""
        state_column = self.config.apsis.audience.state_column
        updates = []
        for profile_key, (member_key, always, on_success) in pending.items():
            body = dict(always)
            outcome = outcomes.get(profile_key)
            if outcome is not None and outcome.ok:
                body.update(on_success)
                if outcome.recreated:
                    body[state_column] = None
            if body:
                updates.append((member_key, body, "*"))
        return updates

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
        report = self.send_triggers(ids) if ids else TriggerReport()
        report.late += late
        if late:
            log.warning(
                "%d trigger(s) not sent: their events came more than %g days late",
                late,
                self.options.late_trigger_days,
                extra={"count": late, "outcome": "late"},
            )
        return report

    def send_triggers(self, event_ids: Sequence[str]) -> TriggerReport:
        """Claim these events' pending triggers that are due and send them."""
        now = self.clock()
        rows = [r for r in self.store.outbox_rows(event_ids) if r.state == "pending"]
        items = self._due_rows(rows, now)
        report = TriggerReport()
        claimed = self._claimed(items, now)
        self._send(claimed, report)
        return report

    def sweep_triggers(self) -> TriggerReport:
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

    def unconfirmed_triggers(self) -> list[UnconfirmedRow]:
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

    def resolve_unconfirmed(self, event_id: str, *, send: bool) -> TriggerReport:
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

    def outbox_age(self) -> dict[str, Any]:
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
            day = at.astimezone(self.zone).date().isoformat()
            if column and members[member_key].get(column) not in (None, "", day):
                withdraw.add((event_id, trigger.name))  # the member was welcomed already
            else:
                candidates[member_key] = firsts[0]
        id_column = self.mapping.member.id_column
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
                day = at.astimezone(self.zone).date().isoformat()
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
        members = self.store.members(sorted(by_member), self.member_columns())
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
                continue
            view = self.view(found)
            profile_key = self._profile_key(view)
            excluded = exclusion(view, audience)
            previous = parse_state(view.get(audience.state_column))
            if excluded is None and profile_key is not None:
                eligible[member_key] = (profile_key, view)
                continue
            report.skipped += sum(len(due[e]) for e in ids)
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
            events = [t.marketing_event(e) for e in ids for t in due[e]]
            if not events:
                continue
            attributes: dict[str, Any] = {}
            on_success: dict[str, Any] = {}
            if previous is None:  # first time in APSIS: the profile with its attributes
                attributes, state = self._first_push(view)
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
        member_updates = self._member_writes(pending, outcomes)
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
        return {o.key: o for o in result.outcomes}

    # -- segments and the engagement score ------------------------------------------------------

    def run_segments(self, *, dry_run: bool = False, full: bool | None = None) -> SegmentReport:
        """Members changed since the last run: score, segments, and the differences pushed.

        ``full`` evaluates every member; by default (None) a run is full when the last full
        run is older than segments.yaml ``full_run_hours`` (or never happened), since the time
        windows (onboarding, at risk, lapsed, tenure, the score's window) move without the row
        changing. The delta link, and the time of a full run, are stored unless a failure that
        may pass (APSIS or Dataverse down, throttled) held a member back; a permanent one (a 400
        for one profile) is logged and counted and does not block the others."""
        report = SegmentReport(dry_run=dry_run)
        started = self.clock()
        link = self.store.get_state(DELTA_NAME)
        if full is None:
            full = link is None or self._full_run_due(started)
        delta = self.store.member_changes(self.member_columns(), None if full else link)
        report.resynced = delta.resynced
        report.full = full or delta.resynced
        today = self.today()
        member = self.mapping.member
        window = self.config.segments.engagement.on_time_payments
        since = started - timedelta(days=window.window_days if window else 365)
        payments = self.store.payment_counts(
            [str(r[member.id_column]) for r in delta.changed if r.get(member.id_column)], since
        )
        audience = self.config.apsis.audience
        engagement_column = self.config.segments.engagement.column
        changes: list[ProfileChange] = []
        pending: dict[str, MemberWrite] = {}  # by profile (or member) key
        for row in delta.changed:
            view = self.view(row)
            key = str(row.get(member.key_column))
            score, names, attributes = self.evaluator.evaluate(
                view, payments.get(str(row.get(member.id_column))), today
            )
            report.evaluated += 1
            report.segment_sizes.update(names)
            tags = self.evaluator.tags(names)
            profile_key = self._profile_key(view)
            excluded = exclusion(view, audience) or (None if profile_key else "no profile key")
            plan = plan_profile(
                parse_state(view.get(audience.state_column)), attributes, tags, excluded
            )
            always: dict[str, Any] = {}
            on_success: dict[str, Any] = {}
            if view.get(engagement_column) != score:
                always[engagement_column] = score
            segments_column = self.config.segments.segments_column
            if segments_column and (view.get(segments_column) or "") != ",".join(names):
                always[segments_column] = ",".join(names) or None
            if plan.changed:
                on_success[audience.state_column] = plan.state.to_text() if plan.state else None
            if plan.excluded:
                report.excluded += 1
            if plan.sends and profile_key:
                report.diffs.append(ProfileDiff(key, plan, score, names))
                changes.append(
                    ProfileChange(
                        profile_key,
                        attributes=plan.attributes,
                        tags_add=plan.tags_add,
                        tags_remove=plan.tags_remove,
                        erase=plan.erase,
                        create=plan.create,
                    )
                )
            else:
                if not plan.excluded:
                    report.unchanged += 1
                always.update(on_success)  # nothing to send: the state is what APSIS holds
                on_success = {}
            if always or on_success:
                pending[profile_key or key] = (key, always, on_success)
        if dry_run:
            return report
        blocked = False
        outcomes: dict[str, ChangeOutcome] = {}
        if changes:
            result = self.platform.apply_changes(changes)
            report.imports = len(result.imports)
            for outcome in result.outcomes:
                outcomes[outcome.key] = outcome
                if outcome.ok:
                    report.erased += outcome.via == "erase"
                    report.pushed += outcome.via != "erase"
                else:
                    blocked |= self._segment_failure(
                        report, f"profile {outcome.key}", outcome.error
                    )
        updates = self._member_writes(pending, outcomes)
        results = self.store.update_members(updates)
        for (key, _, _), op in zip(updates, results, strict=True):
            if not op.ok:
                blocked |= self._segment_failure(report, f"member {key}", op.error)
        if not blocked and delta.delta_link:
            self.store.set_state(DELTA_NAME, delta.delta_link)
            report.delta_saved = True
            if report.full:
                self.store.set_state(FULL_RUN_NAME, started.astimezone(UTC).isoformat())
        return report

    def _full_run_due(self, now: datetime) -> bool:
        """Whether the last full segments run is older than ``full_run_hours`` (or unknown)."""
        text = self.store.get_state(FULL_RUN_NAME)
        try:
            last = datetime.fromisoformat(text) if text else None
        except ValueError:
            last = None
        if last is None or last.tzinfo is None:
            return True
        return now - last >= timedelta(hours=self.config.segments.full_run_hours)

    def _segment_failure(self, report: SegmentReport, what: str, error: BridgeError | None) -> bool:
        """Record one failure; True when it may pass, so the delta link must wait for it."""
        report.failed.append(f"{what}: {error}")
        if isinstance(error, PermanentError):
            report.permanent += 1
            log.warning(
                "segments: %s failed for good, not retried until it changes or the next full run",
                what,
                extra={"outcome": "permanent", "reason": str(error)},
            )
            return False
        return True

    # -- reminders ------------------------------------------------------------------------------

    def run_reminders(self, *, dry_run: bool = False) -> ReminderReport:
        """Every reminder due today, each once per period: claimed on the member row (ETag),
        then sent; a send that fails releases the claim, so the next run tries again."""
        report = ReminderReport(dry_run=dry_run)
        today = self.today()
        segments = self.config.segments
        columns = self.member_columns()
        member = self.mapping.member
        views: dict[str, dict[str, Any]] = {}
        found: dict[str, list[DueReminder]] = defaultdict(list)
        for name, reminder in segments.reminders.items():
            low, high = query_window(reminder, today)
            for row in self.store.members_dated(reminder.step.column, low, high, columns):
                key = str(row.get(member.key_column))
                view = views.setdefault(key, self.view(row))
                period = due_period(reminder, view, today)
                if period is None:
                    continue
                if parse_sent(view.get(segments.reminders_column)).get(name) == period[0]:
                    report.already_sent += 1
                    continue
                when = self.reminder_rules[name]
                if when is not None and not when(view, today):
                    continue
                if exclusion(view, self.config.apsis.audience) or not self._profile_key(view):
                    report.excluded += 1
                    continue
                item = DueReminder(name, key, period[0], period[1])
                report.due[name] += 1
                found[key].append(item)
                report.items.append(item)
        if dry_run or not found:
            return report
        claims = []
        for key, items in found.items():
            sent = parse_sent(views[key].get(segments.reminders_column))
            claimed = {**sent, **{i.name: i.period for i in items}}
            etag = str(views[key].get("@odata.etag") or "*")
            claims.append((key, {segments.reminders_column: encode_sent(claimed)}, etag))
        results = self.store.update_members(claims)
        changes: list[ProfileChange] = []
        owners: dict[str, str] = {}
        pending: dict[str, MemberWrite] = {}  # by profile key
        state_column = self.config.apsis.audience.state_column
        for (key, _, _), op in zip(claims, results, strict=True):
            if not op.ok:  # changed meanwhile: the next run sees it again
                report.failed.append(f"member {key}: reminder claim {op.error}")
                continue
            view = views[key]
            method = view.get(segments.method_column)
            events: list[MarketingEvent] = [
                reminder_event(segments.reminders[i.name], i, method, today) for i in found[key]
            ]
            profile_key = self._profile_key(view) or key
            attributes: dict[str, Any] = {}
            previous = parse_state(view.get(state_column))
            if previous is None:
                # Not in APSIS yet: the reminder creates the profile, so record it as pushed
                # (with its attributes), or a later withdrawal of consent would not erase it.
                attributes, state = self._first_push(view)
                if state is not None:
                    pending[profile_key] = (key, {}, {state_column: state})
            changes.append(
                ProfileChange(
                    profile_key, attributes=attributes, events=events, create=previous is None
                )
            )
            owners[profile_key] = key
        if changes:
            result = self.platform.apply_changes(changes)
            release = []
            outcomes: dict[str, ChangeOutcome] = {}
            for outcome in result.outcomes:
                key = owners[outcome.key]
                outcomes[outcome.key] = outcome
                if outcome.ok:
                    report.sent.update(i.name for i in found[key])
                    if outcome.recreated:  # its state is cleared (see _member_writes)
                        pending.setdefault(outcome.key, (key, {}, {}))
                else:
                    report.failed.append(f"profile {outcome.key}: {outcome.error}")
                    old = views[key].get(segments.reminders_column)
                    release.append((key, {segments.reminders_column: old}, "*"))
            writes = self._member_writes(pending, outcomes)
            if release or writes:
                self.store.update_members([*release, *writes])
        return report

    # -- APSIS check ----------------------------------------------------------------------------

    def check_apsis(self) -> list[str]:
        """What apsis.yaml names and the APSIS section lacks (event types are made in its UI)."""
        client = getattr(self.platform, "client", None)
        names = getattr(self.platform, "names", None)
        if client is None or names is None:
            return ["the marketing platform is not APSIS: nothing to check"]
        problems: list[str] = []
        try:
            sections = client.request("GET", "/audience/sections").json().get("items", [])
        except BridgeError as exc:
            return [f"APSIS: cannot read sections: {exc}"]
        if client.section not in {s.get("discriminator") for s in sections}:
            return [f"section {client.section}: does not exist in APSIS"]
        wanted = {
            "attributes": {n: names["attributes"].get(n, n) for n in self.config.apsis.attributes},
            "events": {n: names["event_types"].get(n, n) for n in self.config.apsis.events},
            "tags": {n: names["tags"].get(n, n) for n in self.config.apsis.tags},
        }
        for kind, expected in wanted.items():
            have = client.definitions(kind, refresh=True)
            current = {
                d.get("discriminator")
                for d in have
                if kind == "tags"
                or any(v.get("deprecated_at") is None for v in d.get("versions", []))
            }
            for name, discriminator in expected.items():
                if discriminator not in current:
                    problems.append(
                        f"{kind[:-1]} {name}: {discriminator} not in section {client.section}"
                    )
        return problems


def _unknown(outcome: ChangeOutcome) -> bool:
    """The change's events may or may not be stored (their POST's answer was lost)."""
    return isinstance(outcome.error, AmbiguousDeliveryError)


def _moment(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
