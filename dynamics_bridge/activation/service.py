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

Delivery is at least once: an event is marked sent only after APSIS's 2xx; one whose fate is
unknown (timeout, dropped connection, 5xx) is not retried in the same run but left pending for
the next sweep, which may then store it twice. Every event carries ``source_event_id`` (the
payment event's id, or the reminder's member/period id) so flows and segments can tell.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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
from dynamics_bridge.activation.triggers import decode_payload, encode_payload, plan_triggers
from dynamics_bridge.apsis.models import ChangeOutcome, MarketingEvent, ProfileChange
from dynamics_bridge.apsis.port import MarketingPlatform
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.errors import BridgeError, InputError, PermanentError
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.model import Outcome

if TYPE_CHECKING:
    from dynamics_bridge.pipeline import EventOutcome

__all__ = ["Activation", "ReminderReport", "SegmentReport", "TriggerReport"]

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

    def add(self, other: TriggerReport) -> None:
        self.claimed += other.claimed
        self.sent.update(other.sent)
        self.skipped += other.skipped
        self.erased += other.erased
        self.failed += other.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "sent": dict(sorted(self.sent.items())),
            "skipped": self.skipped,
            "erased": self.erased,
            "failed": self.failed,
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
    ) -> None:
        self.client = client
        self.mapping = mapping
        self.config = config
        self.platform = platform
        self.clock = clock
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
        """Outbox columns for an applied event's payment row (empty: nothing to trigger)."""
        triggers = plan_triggers(outcome, self.config.triggers)
        if not triggers or outcome.member_key is None:
            return {}
        payload = encode_payload(outcome.event.event_id, outcome.member_key, triggers)
        return self.store.pending_columns(payload)

    def after_apply(self, outcomes: Sequence[EventOutcome]) -> TriggerReport:
        """Send the triggers of a batch's applied events (the outbox keeps them on failure)."""
        ids = [
            o.event.event_id
            for o in outcomes
            if o.outcome is Outcome.APPLIED and plan_triggers(o, self.config.triggers)
        ]
        if not ids:
            return TriggerReport()
        return self.send_triggers(ids)

    def send_triggers(self, event_ids: Sequence[str]) -> TriggerReport:
        """Claim these events' pending triggers and send them."""
        rows = self.store.outbox_rows(event_ids)
        return self._send(self.store.claim(rows, self.clock(), lease_expired=False))

    def sweep_triggers(self) -> TriggerReport:
        """Send what is still pending, and what a crashed sender claimed and never settled."""
        rows = self.store.stalled_outbox(self.clock())
        return self._send(self.store.claim(rows, self.clock(), lease_expired=True))

    def _send(self, claimed: Sequence[OutboxRow]) -> TriggerReport:
        report = TriggerReport(claimed=len(claimed))
        if not claimed:
            return report
        states: dict[str, str] = {}
        by_member: dict[str, list[tuple[str, Any]]] = defaultdict(list)
        for row in claimed:
            try:
                payload = decode_payload(row.payload)
            except InputError as exc:
                states[row.event_id] = "failed"
                report.failed.append(f"event {row.event_id}: {exc}")
                continue
            by_member[payload.member_key].append((row.event_id, payload))
        members = self.store.members(sorted(by_member), self.member_columns())
        changes: list[ProfileChange] = []
        owners: dict[str, list[str]] = {}
        pending: dict[str, MemberWrite] = {}  # by profile key
        audience = self.config.apsis.audience
        for member_key, items in by_member.items():
            ids = [event_id for event_id, _ in items]
            found = members.get(member_key)
            if found is None:
                states.update(dict.fromkeys(ids, "failed"))
                report.failed.append(f"member {member_key}: not found")
                continue
            view = self.view(found)
            profile_key = self._profile_key(view)
            excluded = exclusion(view, audience)
            previous = parse_state(view.get(audience.state_column))
            if excluded is not None or profile_key is None:
                states.update(dict.fromkeys(ids, "skipped"))
                report.skipped += len(ids)
                if previous is not None and profile_key is not None:
                    # The state is cleared only once the erase went through: until then the
                    # member still looks pushed, so the next run erases again.
                    changes.append(ProfileChange(profile_key, erase=True))
                    owners[profile_key] = []
                    pending[profile_key] = (member_key, {}, {audience.state_column: None})
                continue
            events = [
                t.marketing_event(event_id) for event_id, payload in items for t in payload.triggers
            ]
            attributes: dict[str, Any] = {}
            on_success: dict[str, Any] = {}
            always: dict[str, Any] = {}
            if previous is None:  # first time in APSIS: the profile with its attributes
                attributes, state = self._first_push(view)
                if state is not None:
                    on_success[audience.state_column] = state
            first_paid = self.config.triggers.first_paid_column
            welcomed = [
                t for _, p in items for t in p.triggers if t.name in self.first_payment_triggers
            ]
            if first_paid and welcomed and view.get(first_paid) is None:
                # A fact of the register (the first payment), written whatever APSIS answers:
                # the benefits reminder is timed from it.
                always[first_paid] = (
                    welcomed[0].occurred_at.astimezone(self.zone).date().isoformat()
                )
            changes.append(
                ProfileChange(
                    profile_key, attributes=attributes, events=events, create=previous is None
                )
            )
            owners[profile_key] = ids
            pending[profile_key] = (member_key, always, on_success)
        outcomes = self._apply(changes, owners, states, report)
        self.store.settle(states)
        member_updates = self._member_writes(pending, outcomes)
        if member_updates:
            self.store.update_members(member_updates)
        log.info(
            "triggers sent",
            extra={"count": sum(report.sent.values()), "outcome": f"{len(report.failed)} failed"},
        )
        return report

    def _apply(
        self,
        changes: list[ProfileChange],
        owners: Mapping[str, list[str]],
        states: dict[str, str],
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
                states.update(dict.fromkeys(ids, "sent"))
                report.sent.update(e.type for e in change.events)
                continue
            # A passing failure goes back to pending (the sweep sends it); others stop here.
            word = "failed" if isinstance(outcome.error, PermanentError) else "pending"
            states.update(dict.fromkeys(ids, word))
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
