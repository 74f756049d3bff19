"""The reminders job: every reminder due today, each once per period per member.

Talks to the register only through the :class:`~dynamics_bridge.activation.port.ActivationStore`
port and to APSIS through the marketing port.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from dynamics_bridge.activation.audience import exclusion, parse_state
from dynamics_bridge.activation.members import ActivationJob, MemberViews, MemberWrite
from dynamics_bridge.activation.port import ActivationStore
from dynamics_bridge.activation.reminders import (
    DueReminder,
    due_period,
    encode_sent,
    parse_sent,
    query_windows,
    reminder_event,
)
from dynamics_bridge.activation.reports import ReminderReport
from dynamics_bridge.activation.rules import as_date, compile_rule
from dynamics_bridge.apsis.models import ChangeOutcome, MarketingEvent, ProfileChange
from dynamics_bridge.apsis.port import MarketingPlatform

__all__ = ["RemindersJob"]


class RemindersJob(ActivationJob):
    """Reminders (renewal, payment due ...) from segments.yaml, on a timer."""

    def __init__(
        self,
        store: ActivationStore,
        members: MemberViews,
        platform: MarketingPlatform,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(store, members, platform, clock=clock)
        self.rules = {
            name: compile_rule(r.when) if r.when else None
            for name, r in self.config.segments.reminders.items()
        }

    def run(
        self, *, dry_run: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> ReminderReport:
        """Every reminder due today, each once per period: claimed on the member row (ETag),
        then sent; a send that fails releases the claim, so the next run tries again.

        ``progress`` hears ``(steps done, steps)``: one step per reminder looked for, one for
        the sending."""
        report = ReminderReport(dry_run=dry_run)
        today = self.members.today(self.clock())
        segments = self.config.segments
        columns = self.members.columns
        member = self.members.mapping.member
        found: dict[str, list[DueReminder]] = defaultdict(list)
        steps = len(segments.reminders) + 1
        dated: dict[str, list[str]] = {}  # reminder -> keys of the members whose date it is
        rows: dict[str, dict[str, Any]] = {}
        for step, (name, reminder) in enumerate(segments.reminders.items()):
            if progress is not None:
                progress(step, steps)
            windows = query_windows(reminder, today)
            dated[name] = []
            for row in self.store.members_dated(reminder.step.column, windows, columns):
                key = str(row.get(member.key_column))
                rows.setdefault(key, row)
                dated[name].append(key)
        views = self.views(list(rows.values()), today)
        for name, reminder in segments.reminders.items():
            for key in dated[name]:
                view = views[key]
                period = due_period(reminder, view, today)
                if period is None:
                    continue
                if parse_sent(view.get(segments.reminders_column)).get(name) == period[0]:
                    report.already_sent += 1
                    report.skipped_by[name] += 1
                    continue
                when = self.rules[name]
                if when is not None and not when(self.members.with_facts(view, today), today):
                    continue
                excluded = exclusion(view, self.config.apsis.audience)
                if excluded or not self.members.profile_key(view):
                    report.excluded += 1
                    report.skipped_by[name] += 1
                    continue
                origin = as_date(view.get(reminder.step.column))
                item = DueReminder(name, key, period[0], period[1], origin)
                report.due[name] += 1
                found[key].append(item)
                report.items.append(item)
        if progress is not None:
            progress(steps - 1, steps)
        if dry_run or not found:
            if progress is not None:
                progress(steps, steps)
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
                report.failed_by.update(i.name for i in found[key])
                continue
            view = views[key]
            method = view.get(segments.method_column)
            personal = self.members.with_facts(view, today)
            events: list[MarketingEvent] = [
                reminder_event(segments.reminders[i.name], i, method, today, personal)
                for i in found[key]
            ]
            profile_key = self.members.profile_key(view) or key
            attributes: dict[str, Any] = {}
            previous = parse_state(view.get(state_column))
            if previous is None:
                # Not in APSIS yet: the reminder creates the profile, so record it as pushed
                # (with its attributes), or a later withdrawal of consent would not erase it.
                attributes, state = self.members.first_push(view, today)
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
                    if outcome.recreated:  # its state is cleared (see member_writes)
                        pending.setdefault(outcome.key, (key, {}, {}))
                else:
                    report.failed.append(f"profile {outcome.key}: {outcome.error}")
                    report.failed_by.update(i.name for i in found[key])
                    old = views[key].get(segments.reminders_column)
                    release.append((key, {segments.reminders_column: old}, "*"))
            writes = self.members.member_writes(pending, outcomes)
            if release or writes:
                self.store.update_members([*release, *writes])
        if progress is not None:
            progress(steps, steps)
        return report
