"""What the operations records hold, and the pure sums over them (no I/O).

A *run* is one unit of the day's work: a queue message settled, a file ingested, a timer run.
Its ``counts`` are flat ``a/b/c`` keys so one record type serves every kind of run:

- queue messages and files: ``<source>/<kind>/<outcome>`` (``bgmax/payment/applied``,
  ``autogiro/payment_failed/poisoned``; files count ``queued``);
- timers: ``<what>/<name>/<measure>`` (``segment/late-payers/size``, ``trigger/welcome/sent``).

A *poison record* is one poison-queue message kept for operators: searchable, countable, pageable
and replayable by filter, which a storage queue (32 messages per look) cannot be.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

__all__ = [
    "AuditRecord",
    "DayTotals",
    "PoisonFilter",
    "PoisonPage",
    "PoisonRecord",
    "RunRecord",
    "poison_category",
    "roll_up",
]

#: at most this many error texts are kept on one run
MAX_RUN_ERRORS = 20


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run. ``errors`` are masked texts (no personnummer, no secrets)."""

    run_id: str
    kind: str  # "queue" | "file" | "timer"
    name: str  # "sync", "ingest", "segments", "triggers", "reminders", "refresh", ...
    started_at: datetime  # UTC
    duration_ms: int
    counts: dict[str, int] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    #: small facts worth showing (a file's name, its receipt totals, a dry run)
    detail: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def day(self) -> date:
        return self.started_at.date()

    def total(self, *, part: int, value: str) -> int:
        """Sum of the counts whose ``part``-th key segment is ``value`` (0-based)."""
        total = 0
        for key, n in self.counts.items():
            parts = key.split("/")
            if len(parts) > part and parts[part] == value:
                total += n
        return total


@dataclass
class DayTotals:
    """One day's runs summed: the history chart's bar and the overview's figures."""

    day: date
    runs: Counter[str] = field(default_factory=Counter)  # by "<kind>:<name>"
    failed_runs: int = 0
    counts: Counter[str] = field(default_factory=Counter)  # the runs' counts, summed

    def by(self, part: int) -> Counter[str]:
        """The counts summed by one key segment (0: source or what, 2: outcome or measure)."""
        out: Counter[str] = Counter()
        for key, n in self.counts.items():
            parts = key.split("/")
            if len(parts) > part:
                out[parts[part]] += n
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "runs": dict(self.runs),
            "failed_runs": self.failed_runs,
            "counts": dict(self.counts),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DayTotals:
        return cls(
            date.fromisoformat(data["day"]),
            Counter(data.get("runs", {})),
            int(data.get("failed_runs", 0)),
            Counter(data.get("counts", {})),
        )


def roll_up(day: date, runs: Iterable[RunRecord]) -> DayTotals:
    totals = DayTotals(day)
    for run in runs:
        totals.runs[f"{run.kind}:{run.name}"] += 1
        totals.failed_runs += 0 if run.ok else 1
        totals.counts.update(run.counts)
    return totals


def poison_category(reason: str) -> str:
    """The reason's class, for filters and charts: its first word (``unmatched: no member`` →
    ``unmatched``), or ``host`` for messages the Functions host moved without a reason."""
    head = reason.strip().split(":", 1)[0].split(" ", 1)[0].lower()
    return head or "host"


@dataclass(frozen=True, slots=True)
class PoisonRecord:
    """One poison message as operators see it. ``body`` is the envelope's JSON text (events and
    the poison block), kept whole so the record alone can be replayed."""

    message_id: str
    failed_at: datetime  # UTC
    reason: str
    source: str  # the events' source; "mixed" for several, "" for none
    event_ids: tuple[str, ...]
    member_refs: tuple[str, ...]
    file: str  # the file the events came from (the origin's path), "" for webhooks
    body: str

    @property
    def category(self) -> str:
        return poison_category(self.reason)

    def events(self) -> list[dict[str, Any]]:
        data = json.loads(self.body) if self.body else {}
        events = data.get("events", []) if isinstance(data, dict) else []
        return [e for e in events if isinstance(e, dict)]


@dataclass(frozen=True, slots=True)
class PoisonFilter:
    """Which poison records an operator means. Empty fields match everything.

    ``reason``: case-insensitive text within the reason (``unmatched`` picks the category);
    ``search``: a member number, an event id, a message id (or its prefix) or a file name.
    """

    reason: str | None = None
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.reason or self.source or self.since or self.until or self.search)

    def matches(self, record: PoisonRecord) -> bool:
        if self.reason and self.reason.lower() not in record.reason.lower():
            return False
        if self.source and self.source.lower() != record.source.lower():
            return False
        if self.since and record.failed_at < self.since:
            return False
        if self.until and record.failed_at >= self.until:
            return False
        if self.search:
            needle = self.search.strip()
            if not (
                record.message_id.startswith(needle)
                or needle in record.member_refs
                or needle in record.event_ids
                or (record.file and (record.file == needle or record.file.endswith("/" + needle)))
            ):
                return False
        return True

    def describe(self) -> str:
        """The filter in words, for audits and summaries."""
        parts = [
            f"{name}={value.isoformat() if isinstance(value, datetime) else value}"
            for name, value in (
                ("reason", self.reason),
                ("source", self.source),
                ("since", self.since),
                ("until", self.until),
                ("search", self.search),
            )
            if value
        ]
        return ", ".join(parts) or "all"


@dataclass(frozen=True, slots=True)
class PoisonPage:
    records: list[PoisonRecord]
    #: opaque; pass it back for the next page; None when there is none
    cursor: str | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """Who did what to the poison book (replay, purge), from where, and how much."""

    at: datetime
    who: str
    action: str  # "replay" | "purge"
    what: str  # the filter in words, or the ids
    count: int
    via: str  # "console" | "cli"
