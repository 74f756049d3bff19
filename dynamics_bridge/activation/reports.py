"""What each activation job did, as its summary (JSON for the timer's log and the CLI).

Pure data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dynamics_bridge.activation.audience import ProfilePlan
from dynamics_bridge.activation.reminders import DueReminder

__all__ = ["ProfileDiff", "ReminderReport", "SegmentReport", "TriggerReport", "UnconfirmedRow"]


@dataclass
class TriggerReport:
    claimed: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # event type -> count
    skipped: int = 0  # excluded members (consent, protected identity, status)
    erased: int = 0
    failed: list[str] = field(default_factory=list)
    #: event type -> triggers skipped (excluded members) / not sent for a failure, for the history
    skipped_by: Counter[str] = field(default_factory=Counter)
    failed_by: Counter[str] = field(default_factory=Counter)
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
        self.skipped_by.update(other.skipped_by)
        self.failed_by.update(other.failed_by)
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
            "skipped_by": dict(sorted(self.skipped_by.items())),
            "failed_by": dict(sorted(self.failed_by.items())),
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
    #: segment -> members whose tag was added / removed in APSIS (a dry run: would be)
    added: Counter[str] = field(default_factory=Counter)
    removed: Counter[str] = field(default_factory=Counter)
    pushed: int = 0
    erased: int = 0
    excluded: int = 0
    unchanged: int = 0
    imports: int = 0
    failed: list[str] = field(default_factory=list)  # every failure, with its reason
    permanent: int = 0  # of those, how many a retry will not fix (they do not hold the delta)
    delta_saved: bool = False
    diffs: list[ProfileDiff] = field(default_factory=list)
    #: a dry run: the profiles that would be pushed (created or updated) and erased
    would_push: int = 0
    would_erase: int = 0
    #: score part -> members it had no data for (left out of their score, weights renormalised)
    score_without_data: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "full": self.full,
            "resynced": self.resynced,
            "evaluated": self.evaluated,
            "score_without_data": dict(sorted(self.score_without_data.items())),
            "segment_sizes": dict(sorted(self.segment_sizes.items())),
            "added": dict(sorted(self.added.items())),
            "removed": dict(sorted(self.removed.items())),
            "pushed": self.pushed,
            "erased": self.erased,
            "excluded": self.excluded,
            "unchanged": self.unchanged,
            "imports": self.imports,
            "failed": self.failed,
            "permanent": self.permanent,
            "delta_saved": self.delta_saved,
            **(
                {"would_push": self.would_push, "would_erase": self.would_erase}
                if self.dry_run
                else {}
            ),
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
    #: reminder -> skipped (already sent this period, or excluded) / not sent for a failure
    skipped_by: Counter[str] = field(default_factory=Counter)
    failed_by: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "due": dict(sorted(self.due.items())),
            "sent": dict(sorted(self.sent.items())),
            "already_sent": self.already_sent,
            "excluded": self.excluded,
            "failed": self.failed,
            "skipped_by": dict(sorted(self.skipped_by.items())),
            "failed_by": dict(sorted(self.failed_by.items())),
            **({"would_send": dict(sorted(self.due.items()))} if self.dry_run else {}),
        }
