"""Run history: each unit of the day's work leaves one RunRecord in the ops store.

A queue message settled (kind ``queue``, name ``sync``), a file ingested (kind ``file``, name =
its source), a timer run (kind ``timer``, name = the job). A :class:`RunRecorder` times the work,
collects its counts, errors (masked, at most ``MAX_RUN_ERRORS``) and detail, and writes the record
once at the end. The record is a courtesy to operators, never part of the work: a store that
cannot be built or written is logged, and the work's own result (or error) stands, never
repeated. Webhooks record nothing: their path calls nothing but the queue.

The ``*_counts`` functions turn each kind of work's report into the flat ``a/b/c`` keys the
console reads (see the module docstring of :mod:`dynamics_bridge.ops.model`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from dynamics_bridge.errors import BridgeError
from dynamics_bridge.model import EventKind, Outcome, PaymentEvent
from dynamics_bridge.ops.model import MAX_RUN_ERRORS, RunRecord
from dynamics_bridge.personnummer import mask_text

if TYPE_CHECKING:
    from dynamics_bridge.app.sync import SyncReport
    from dynamics_bridge.app.wiring import Services
    from dynamics_bridge.ops.port import OpsStore

__all__ = [
    "JOB_COUNTS",
    "RunRecorder",
    "describe_error",
    "failures_of",
    "file_counts",
    "job_counts",
    "kronor",
    "queue_counts",
    "queue_errors",
    "receipt_text",
    "store_of",
]

log = logging.getLogger("dynamics_bridge.runs")

_PAID = EventKind.PAYMENT_SUCCEEDED.value

#: an error text longer than this is cut (a whole response body helps nobody on a chart)
MAX_ERROR_CHARS = 500


def store_of(services: Services) -> OpsStore | None:
    """The wiring's ops store, or None (logged) when it cannot be built: the work goes on."""
    try:
        return services.ops
    except Exception as exc:  # noqa: BLE001 - a missing record must never stop the work
        log.warning("run history is off: %s", describe_error(exc))
        return None


def describe_error(exc: BaseException) -> str:
    """An exception as an operator reads it: our errors by their message, others by type too;
    personnummer masked, long texts cut."""
    text = str(exc) if isinstance(exc, BridgeError) else f"{type(exc).__name__}: {exc}"
    return _cut(mask_text(text))


def _cut(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class RunRecorder:
    """Times one unit of work and writes its RunRecord once, at :meth:`finish` (or on leaving
    the ``with`` block, which also records the exception that ended the work, and re-raises it).

    ``store`` None records nothing (the counts are still collected, for the caller's own use).
    """

    def __init__(
        self,
        kind: str,
        name: str,
        store: OpsStore | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.kind = kind
        self.name = name
        self.store = store
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.detail: dict[str, str] = {}
        self.record: RunRecord | None = None
        self._timer = timer
        self._started_at = clock()
        self._started = timer()
        self._dropped = 0

    def count(self, key: str, n: int = 1) -> None:
        if n:
            self.counts[key] += n

    def add_counts(self, counts: Mapping[str, int]) -> None:
        for key, n in counts.items():
            self.count(key, n)

    def error(self, text: str) -> None:
        """Keep one error text (masked, cut); past ``MAX_RUN_ERRORS`` only how many more."""
        if len(self.errors) < MAX_RUN_ERRORS:
            self.errors.append(_cut(mask_text(text)))
        else:
            self._dropped += 1

    def __enter__(self) -> RunRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.error(describe_error(exc))
        self.finish()

    def finish(self) -> RunRecord:
        """Write the record (once; later calls return the same record)."""
        if self.record is not None:
            return self.record
        if self._dropped:
            self.detail["errors_not_kept"] = str(self._dropped)
        record = RunRecord(
            run_id=uuid.uuid4().hex,
            kind=self.kind,
            name=self.name,
            started_at=self._started_at,
            duration_ms=max(0, round((self._timer() - self._started) * 1000)),
            counts=dict(self.counts),
            errors=tuple(self.errors),
            detail=dict(self.detail),
        )
        self.record = record
        if self.store is not None:
            try:
                self.store.record_run(record)
            except Exception as exc:  # noqa: BLE001 - the work is done; its record may be lost
                log.warning(
                    "run %s:%s not recorded: %s",
                    self.kind,
                    self.name,
                    describe_error(exc),
                    extra={"outcome": "not_recorded"},
                )
        return record


# --- what each kind of work counts -------------------------------------------------------------


def _key(event: PaymentEvent, outcome: str) -> str:
    return f"{event.source.value}/{event.kind.value}/{outcome}"


def queue_counts(report: SyncReport, events: Sequence[PaymentEvent]) -> Counter[str]:
    """``<source>/<kind>/<outcome>`` of one queue message's delivery.

    Written events count as their outcome. When the message is left for redelivery
    (``report.left``) what was not written counts ``retry`` (it is tried again, whole); else
    what was not written was poisoned and counts as its outcome (``unmatched``, ``failed``).
    Events with no outcome of their own (the batch failed, the message poisoned whole) count
    ``retry`` or ``failed`` the same way. ``events`` are the message's events (empty when it
    could not be decoded: that counts ``unknown/message/failed``)."""
    counts: Counter[str] = Counter()
    left = report.left > 0
    seen: set[str] = set()
    for result in report.results:
        seen.add(result.event.event_id)
        outcome = result.outcome
        if outcome in (Outcome.UNMATCHED, Outcome.FAILED) and (left or result.retryable):
            word = "retry" if left else Outcome.FAILED.value
        else:
            word = outcome.value
        counts[_key(result.event, word)] += 1
    for event in events:
        if event.event_id not in seen:
            counts[_key(event, "retry" if left else Outcome.FAILED.value)] += 1
    if report.outcomes.get("undecodable"):
        counts["unknown/message/failed"] += report.outcomes["undecodable"]
    return counts


def queue_errors(report: SyncReport, events: Sequence[PaymentEvent]) -> list[str]:
    """Why events of one message were not written: each event's reason, or what became of the
    message when its events have none (masked by the recorder)."""
    errors = [
        f"{r.event.event_id}: {r.outcome.value}: {r.reason}"
        for r in report.results
        if r.outcome in (Outcome.UNMATCHED, Outcome.FAILED)
    ]
    seen = {r.event.event_id for r in report.results}
    unsettled = sum(e.event_id not in seen for e in events)
    if unsettled:
        fate = "left for redelivery" if report.left else "poisoned with the message"
        errors.append(f"{unsettled} event(s) {fate}")
    if report.outcomes.get("undecodable"):
        errors.append("undecodable message: poisoned whole")
    return errors


def kronor(minor: int) -> str:
    """``123456789`` öre → ``1 234 567.89`` (integers all the way: amounts are never floats)."""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100:,}.{abs(minor) % 100:02d}".replace(",", " ")


def receipt_text(totals: Mapping[str, Mapping[str, Sequence[int]]]) -> str:
    """A file's totals in one line, as its closing records state them: ``<n> payments,
    <amount> SEK`` (the payments received), then each other kind with its count and sum
    (``; 1 payment.refunded 50.00 SEK``)."""

    def money(by_currency: Mapping[str, Sequence[int]]) -> str:
        return " + ".join(
            f"{kronor(entry[1])} {currency}"
            for currency, entry in sorted(by_currency.items(), key=lambda c: c[0] != "SEK")
            if entry[1] or currency == "SEK"
        )

    paid = totals.get(_PAID, {})
    text = f"{sum(e[0] for e in paid.values())} payments, {money(paid) or '0.00 SEK'}"
    for kind, by_currency in sorted(totals.items()):
        if kind != _PAID:
            amount = money(by_currency) if any(e[1] for e in by_currency.values()) else ""
            count = sum(e[0] for e in by_currency.values())
            text += f"; {count} {kind}" + (f" {amount}" if amount else "")
    return text


def file_counts(source: str, totals: Mapping[str, Mapping[str, Sequence[int]]]) -> Counter[str]:
    """``<source>/<kind>/queued``: the events a file put on the queue, by kind."""
    counts: Counter[str] = Counter()
    for kind, by_currency in totals.items():
        counts[f"{source}/{kind}/queued"] += sum(entry[0] for entry in by_currency.values())
    return counts


def job_counts(job: str, summary: Mapping[str, Any]) -> Counter[str]:
    """A timer job's summary (its report's JSON) as counts: see :data:`JOB_COUNTS`; a job not
    listed there counts each whole number in its summary as ``<job>/<key>/count``."""
    counting = JOB_COUNTS.get(job)
    if counting is not None:
        return counting(summary)
    counts: Counter[str] = Counter()
    for key, value in summary.items():
        if isinstance(value, int) and not isinstance(value, bool):
            counts[f"{job}/{key}/count"] += value
    return counts


def _by(prefix: str, measure: str, values: object) -> Counter[str]:
    """``<prefix>/<name>/<measure>`` for each whole number in ``values`` (a name → n mapping;
    anything else counts nothing)."""
    counts: Counter[str] = Counter()
    if not isinstance(values, Mapping):
        return counts
    for name, n in values.items():
        if isinstance(n, int) and not isinstance(n, bool) and n:
            counts[f"{prefix}/{name}/{measure}"] += n
    return counts


def trigger_counts(summary: Mapping[str, Any]) -> Counter[str]:
    """``trigger/<type>/sent|skipped|failed`` from a :class:`TriggerReport`'s JSON."""
    counts = _by("trigger", "sent", summary.get("sent"))
    counts.update(_by("trigger", "skipped", summary.get("skipped_by")))
    counts.update(_by("trigger", "failed", summary.get("failed_by")))
    return counts


def segment_counts(summary: Mapping[str, Any]) -> Counter[str]:
    """``segment/<name>/size|added|removed`` from a :class:`SegmentReport`'s JSON."""
    counts = _by("segment", "size", summary.get("segment_sizes"))
    counts.update(_by("segment", "added", summary.get("added")))
    counts.update(_by("segment", "removed", summary.get("removed")))
    return counts


def reminder_counts(summary: Mapping[str, Any]) -> Counter[str]:
    """``reminder/<type>/sent|skipped|failed``, and the outbox sweep before them as triggers."""
    counts = _by("reminder", "sent", summary.get("sent"))
    counts.update(_by("reminder", "skipped", summary.get("skipped_by")))
    counts.update(_by("reminder", "failed", summary.get("failed_by")))
    triggers = summary.get("triggers")
    if isinstance(triggers, Mapping):
        counts.update(trigger_counts(triggers))
    return counts


def refresh_counts(summary: Mapping[str, Any]) -> Counter[str]:
    """``address/<result>/count``: each SPAR status, and updated, protected, erased, failed."""
    counts = _by("address", "count", summary.get("statuses"))
    for result, key in (
        ("updated", "updated"),
        ("protected", "protected"),
        ("erased", "erased_from_marketing"),
    ):
        value = summary.get(key)
        if isinstance(value, int) and value:
            counts[f"address/{result}/count"] += value
    failed = summary.get("failed") or []
    if failed:
        counts["address/failed/count"] += len(failed)
    return counts


def poison_counts(summary: Mapping[str, Any]) -> Counter[str]:
    """``poison/absorbed/count`` (moved into the book) and ``poison/waiting/size`` (what waits
    in the book or on the queue after the run: a level, like a segment's size, not a sum)."""
    counts: Counter[str] = Counter()
    for key, what in (("absorbed", "poison/absorbed/count"), ("waiting", "poison/waiting/size")):
        value = summary.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value:
            counts[what] = value
    return counts


def failures_of(summary: Mapping[str, Any]) -> Iterable[str]:
    """The failure texts a job's summary lists (``failed``, and its outbox sweep's)."""
    for part in (summary, summary.get("triggers") or {}):
        failed = part.get("failed") if isinstance(part, Mapping) else None
        if isinstance(failed, list):
            yield from (str(f) for f in failed)


#: Timer job → how its summary is counted (job names as in :data:`dynamics_bridge.app.jobs.JOBS`).
JOB_COUNTS: dict[str, Callable[[Mapping[str, Any]], Counter[str]]] = {
    "triggers": trigger_counts,
    "segments": segment_counts,
    "reminders": reminder_counts,
    "address_refresh": refresh_counts,
    "refresh": refresh_counts,
    "housekeeping": lambda summary: Counter(
        {"housekeeping/expired/count": int(summary.get("expired") or 0)}
    ),
    "poison": poison_counts,
}
