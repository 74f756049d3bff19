"""What the three activation jobs share about a member: the columns they read, the row as the
rules see it, its profile key, a first push's attributes, and the writes a push leaves.

Pure: built from the mapping and the activation files only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from dynamics_bridge.activation.audience import desired_attributes, plan_profile
from dynamics_bridge.activation.config import ActivationConfig
from dynamics_bridge.activation.facts import member_facts
from dynamics_bridge.activation.port import ActivationStore, MemberUpdate
from dynamics_bridge.activation.related import assemble, member_columns, reads
from dynamics_bridge.activation.rules import rule_columns
from dynamics_bridge.activation.segments import SegmentEvaluator
from dynamics_bridge.apsis.models import ChangeOutcome
from dynamics_bridge.apsis.port import MarketingPlatform
from dynamics_bridge.mapping.models import MappingFile

__all__ = ["ActivationJob", "MemberViews", "MemberWrite"]

#: What a push leaves to write on one member: (member key, columns written whatever happens,
#: columns written only once APSIS confirmed that profile's change).
MemberWrite = tuple[str, dict[str, Any], dict[str, Any]]


class MemberViews:
    """Member rows as the activation jobs read them (one per register, shared by the jobs)."""

    def __init__(self, mapping: MappingFile, config: ActivationConfig) -> None:
        self.mapping = mapping
        self.config = config
        self.zone = ZoneInfo(mapping.timezone)
        self.evaluator = SegmentEvaluator(config, mapping)
        self.columns = self._columns()

    def today(self, now: datetime) -> date:
        """The register's calendar day at ``now`` (reminders and windows count in it)."""
        return now.astimezone(self.zone).date()

    def _columns(self) -> list[str]:
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
            engagement.parts_column,
            *audience.excluded_statuses,
            *(a.column for a in apsis.attributes.values() if a.column),
            *(p.column for p in engagement.counts().values()),
        }
        if audience.protected_column:
            columns.add(audience.protected_column)
        if engagement.tenure:
            columns.add(engagement.tenure.column)
        facts = segments.facts
        columns |= {
            c
            for c in (
                facts.birth_date_column,
                facts.personnummer_column,
                facts.joined_column,
                facts.county_column,
                facts.municipality_column,
                facts.member_type_column,
            )
            if c
        }
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
        declared = sorted(c for c in columns if c in self.mapping.member.columns)
        return declared + member_columns(self.mapping)

    def view(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """A member row as the rules see it (choice words, dates)."""
        return self.evaluator.view(row)

    def with_facts(self, view: Mapping[str, Any], today: date) -> dict[str, Any]:
        """The view and the member's derived facts (age band, tenure band ...) on ``today``."""
        return {**view, **self.facts(view, today)}

    def facts(self, view: Mapping[str, Any], today: date) -> dict[str, Any]:
        """The member's derived facts on ``today`` (:func:`~.facts.member_facts`)."""
        segments = self.config.segments
        return member_facts(view, segments.facts, today, method_column=segments.method_column)

    def profile_key(self, view: Mapping[str, Any]) -> str | None:
        value = view.get(self.config.apsis.profile_key.column)
        return str(value) if value not in (None, "") else None

    def first_push(self, view: Mapping[str, Any], today: date) -> tuple[dict[str, Any], str | None]:
        """A member's attributes for a profile APSIS does not hold yet, and the state column's
        value once they are written (so a later exclusion knows to erase the profile)."""
        computed = {
            **self.facts(view, today),
            "engagement_score": view.get(self.config.segments.engagement.column),
            "engagement_parts": view.get(self.config.segments.engagement.parts_column or ""),
        }
        plan = plan_profile(None, desired_attributes(view, self.config.apsis, computed), (), None)
        return dict(plan.attributes), plan.state.to_text() if plan.state else None

    def member_writes(
        self,
        pending: Mapping[str, MemberWrite],
        outcomes: Mapping[str, ChangeOutcome],
    ) -> list[MemberUpdate]:
        """Member updates after a push: a :data:`MemberWrite`'s on-success columns only where that
        profile's change went through. A profile APSIS had lost and the change created again
        holds only that change, so its state is cleared: the next segments run pushes
        everything."""
        state_column = self.config.apsis.audience.state_column
        updates: list[MemberUpdate] = []
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


class ActivationJob:
    """What the three jobs share: the register (through the port), the member views, the
    marketing platform and the clock."""

    def __init__(
        self,
        store: ActivationStore,
        members: MemberViews,
        platform: MarketingPlatform,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.members = members
        self.config = members.config
        self.platform = platform
        self.clock = clock

    def related(self, rows: Sequence[Mapping[str, Any]], today: date) -> dict[str, dict[str, Any]]:
        """Member id -> the values of its related tables (dataverse.yaml ``related``), read in
        bulk for all ``rows`` at once; nothing is read when no related table is mapped."""
        mapping = self.members.mapping
        if not mapping.related or not rows:
            return {}
        found = self.store.related_rows(reads(mapping, rows, today))
        return assemble(mapping, rows, found, today)

    def views(self, rows: Sequence[Mapping[str, Any]], today: date) -> dict[str, dict[str, Any]]:
        """Member key -> its view with its related values (for rules, attributes and texts)."""
        member = self.members.mapping.member
        related = self.related(rows, today)
        return {
            str(row.get(member.key_column)): {
                **self.members.view(row),
                **related.get(str(row.get(member.id_column)), {}),
            }
            for row in rows
        }
