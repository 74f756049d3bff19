"""The segments job: score, segments and attributes of the members changed since the last run,
and only the differences pushed to APSIS.

Talks to the register only through the :class:`~dynamics_bridge.activation.port.ActivationStore`
port and to APSIS through the marketing port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dynamics_bridge.activation.audience import (
    ProfilePlan,
    exclusion,
    parse_state,
    plan_profile,
)
from dynamics_bridge.activation.members import ActivationJob, MemberWrite
from dynamics_bridge.activation.reports import ProfileDiff, SegmentReport
from dynamics_bridge.apsis.models import ChangeOutcome, ProfileChange
from dynamics_bridge.errors import BridgeError, PermanentError

__all__ = ["DELTA_NAME", "FULL_RUN_NAME", "SegmentsJob"]

log = logging.getLogger("dynamics_bridge.activation")

#: State-table row: the change-tracking link of the last run.
DELTA_NAME = "segments-delta-link"
#: State-table row: when the segments job last evaluated every member (UTC, ISO 8601).
FULL_RUN_NAME = "segments-last-full-run"
#: ``progress`` is told every this many members (and at the end)
_PROGRESS_EVERY = 50
#: A part with no data for every member is warned of once a run evaluates this many.
_EMPTY_PART_MIN = 20


class SegmentsJob(ActivationJob):
    """Segments and the engagement score, on a timer."""

    def run(
        self,
        *,
        dry_run: bool = False,
        full: bool | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> SegmentReport:
        """Members changed since the last run: score, segments, and the differences pushed.

        ``full`` evaluates every member; by default (None) a run is full when the last full
        run is older than segments.yaml ``full_run_hours`` (or never happened), since the time
        windows (onboarding, at risk, lapsed, tenure, the score's window) move without the row
        changing. The delta link, and the time of a full run, are stored unless a failure that
        may pass (APSIS or Dataverse down, throttled) held a member back; a permanent one (a 400
        for one profile) is logged and counted and does not block the others.

        ``progress`` hears ``(members evaluated, members to evaluate)`` as the run goes."""
        report = SegmentReport(dry_run=dry_run)
        started = self.clock()
        link = self.store.get_state(DELTA_NAME)
        if full is None:
            full = link is None or self._full_run_due(started)
        delta = self.store.member_changes(self.members.columns, None if full else link)
        report.resynced = delta.resynced
        report.full = full or delta.resynced
        today = self.members.today(self.clock())
        member = self.members.mapping.member
        window = self.config.segments.engagement.on_time_payments
        since = started - timedelta(days=window.window_days if window else 365)
        payments = self.store.payment_counts(
            [str(r[member.id_column]) for r in delta.changed if r.get(member.id_column)], since
        )
        audience = self.config.apsis.audience
        engagement_column = self.config.segments.engagement.column
        parts_column = self.config.segments.engagement.parts_column
        part_names = self.config.segments.engagement.part_names()
        changes: list[ProfileChange] = []
        planned: dict[str, ProfilePlan] = {}  # by profile key: what is sent
        segment_of = {tag: name for name, (_, tag) in self.members.evaluator.rules.items()}
        pending: dict[str, MemberWrite] = {}  # by profile (or member) key
        total = len(delta.changed)
        views = self.views(delta.changed, today)
        for done, row in enumerate(delta.changed):
            if progress is not None and done % _PROGRESS_EVERY == 0:
                progress(done, total)
            key = str(row.get(member.key_column))
            view = views[key]
            score, names, attributes, parts, explanation = self.members.evaluator.evaluate(
                view, payments.get(str(row.get(member.id_column))), today
            )
            report.evaluated += 1
            report.score_without_data.update(p for p in part_names if p not in parts)
            report.segment_sizes.update(names)
            tags = self.members.evaluator.tags(names)
            profile_key = self.members.profile_key(view)
            excluded = exclusion(view, audience) or (None if profile_key else "no profile key")
            plan = plan_profile(
                parse_state(view.get(audience.state_column)), attributes, tags, excluded
            )
            always: dict[str, Any] = {}
            on_success: dict[str, Any] = {}
            if view.get(engagement_column) != score:
                always[engagement_column] = score
            if parts_column and (view.get(parts_column) or "") != explanation:
                always[parts_column] = explanation
            segments_column = self.config.segments.segments_column
            if segments_column and (view.get(segments_column) or "") != ",".join(names):
                always[segments_column] = ",".join(names) or None
            if plan.changed:
                on_success[audience.state_column] = plan.state.to_text() if plan.state else None
            if plan.excluded:
                report.excluded += 1
            if plan.sends and profile_key:
                report.diffs.append(ProfileDiff(key, plan, score, names))
                planned[profile_key] = plan
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
        if progress is not None:
            progress(total, total)
        self._warn_empty_parts(report)
        if dry_run:
            for plan in planned.values():  # what would be added and removed
                self._count_tags(report, plan, segment_of)
                report.would_erase += plan.erase
                report.would_push += not plan.erase
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
                    if outcome.key in planned:
                        self._count_tags(report, planned[outcome.key], segment_of)
                else:
                    blocked |= self._segment_failure(
                        report, f"profile {outcome.key}", outcome.error
                    )
        updates = self.members.member_writes(pending, outcomes)
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

    @staticmethod
    def _count_tags(report: SegmentReport, plan: ProfilePlan, segment_of: dict[str, str]) -> None:
        """The segments whose tag this plan adds or removes (by segment name)."""
        report.added.update(segment_of.get(tag, tag) for tag in plan.tags_add)
        report.removed.update(segment_of.get(tag, tag) for tag in plan.tags_remove)

    @staticmethod
    def _warn_empty_parts(report: SegmentReport) -> None:
        """A score part no member had data for is likely a source that cannot be read (an
        empty column, a related table without rows): said, not silently dropped."""
        if report.evaluated < _EMPTY_PART_MIN:
            return
        for part, missing in sorted(report.score_without_data.items()):
            if missing == report.evaluated:
                log.warning(
                    "segments: score part %s had no data for any of %d members: check its "
                    "column or related table",
                    part,
                    missing,
                    extra={"outcome": "warning", "part": part},
                )

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
