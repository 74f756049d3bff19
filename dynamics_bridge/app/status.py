"""The day at a glance, as data: what the console's Overview and ``dynamics-bridge status`` show.

One function builds it (:func:`build_overview`) so the page and the command never disagree.
Figures come from the run history (``Services.ops``: one roll-up per day), the poison book
(counts by day), the queue (its depth) and the health probe of ``GET /api/health``
(:func:`dynamics_bridge.app.health.check_health`: one small Dataverse read, one outbox read;
APSIS and SPAR are never called).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Literal

from dynamics_bridge.errors import BridgeError
from dynamics_bridge.ops.model import DayTotals, PoisonFilter, RunRecord

if TYPE_CHECKING:
    from dynamics_bridge.app.wiring import Services
    from dynamics_bridge.ops.port import OpsStore

__all__ = [
    "OUTCOMES",
    "TIMERS",
    "HealthLine",
    "Overview",
    "build_overview",
    "day_window",
    "events_by_source",
    "health_lines",
    "last_timer_runs",
]

#: Every outcome a queue or file run counts, in the order the pages show them.
OUTCOMES = ("applied", "duplicate", "stale", "unmatched", "failed", "poisoned", "retry", "queued")
#: What timer runs count under (``segment/<name>/size``...): not events, kept out of the sums.
TIMER_COUNTS = frozenset({"segment", "trigger", "reminder", "address"})
#: The timers whose last run the overview shows, in this order.
TIMERS = ("triggers", "segments", "reminders", "refresh", "poison", "housekeeping", "sync")
#: The overview's reads run side by side on this many threads.
OVERVIEW_READERS = 8
#: The parts whose health the overview shows.
HEALTH_PARTS = ("settings", "dataverse", "apsis", "spar", "queue")

State = Literal["ok", "red", "off"]


@dataclass(frozen=True, slots=True)
class HealthLine:
    """One part's health: ``ok``, ``red`` (with the reason) or ``off`` (not configured)."""

    name: str
    state: State
    reason: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "state": self.state, "reason": self.reason}


def events_by_source(totals: DayTotals) -> dict[str, Counter[str]]:
    """Source -> outcome -> events, from a day's queue and file counts (timers' counts left out)."""
    out: dict[str, Counter[str]] = {}
    for key, n in totals.counts.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[0] in TIMER_COUNTS or parts[2] not in OUTCOMES:
            continue
        out.setdefault(parts[0], Counter())[parts[2]] += n
    return dict(sorted(out.items()))


def _merged(days: Sequence[DayTotals], day: date) -> DayTotals:
    merged = DayTotals(day)
    for totals in days:
        merged.runs.update(totals.runs)
        merged.failed_runs += totals.failed_runs
        merged.counts.update(totals.counts)
    return merged


@dataclass
class Overview:
    """Today, the last seven days, the poison book, the queue, files, timers and health."""

    at: datetime
    #: oldest first; the last one is today
    days: list[DayTotals]
    poison_total: int
    #: poison records still in the book that failed on each of ``days``
    poison_by_day: list[int]
    queue: dict[str, int] | None
    queue_error: str
    files: list[RunRecord]
    timers: dict[str, RunRecord | None]
    health: list[HealthLine] = field(default_factory=list)

    @property
    def today(self) -> DayTotals:
        return self.days[-1]

    @property
    def week(self) -> DayTotals:
        """The seven days summed (dated today)."""
        return _merged(self.days, self.today.day)

    @property
    def red(self) -> bool:
        return any(line.state == "red" for line in self.health)

    def outcomes(self, totals: DayTotals) -> Counter[str]:
        out: Counter[str] = Counter()
        for counts in events_by_source(totals).values():
            out.update(counts)
        return out

    def to_json(self) -> dict[str, Any]:
        def period(totals: DayTotals) -> dict[str, Any]:
            return {
                "events_by_source": {s: dict(c) for s, c in events_by_source(totals).items()},
                "outcomes": dict(self.outcomes(totals)),
                "runs": dict(totals.runs),
                "failed_runs": totals.failed_runs,
            }

        return {
            "at": self.at.isoformat(),
            "status": "red" if self.red else "ok",
            "today": {"day": self.today.day.isoformat(), **period(self.today)},
            "week": {
                "since": self.days[0].day.isoformat(),
                "until": self.today.day.isoformat(),
                **period(self.week),
            },
            "days": [
                {
                    "day": t.day.isoformat(),
                    "outcomes": dict(self.outcomes(t)),
                    "poison": p,
                }
                for t, p in zip(self.days, self.poison_by_day, strict=True)
            ],
            "poison": {"total": self.poison_total, "by_day": self.poison_by_day},
            "queue": self.queue if self.queue is not None else {"error": self.queue_error},
            "files": [_run_json(r) for r in self.files],
            "timers": {
                name: _run_json(run) if run is not None else None
                for name, run in self.timers.items()
            },
            "health": [line.to_json() for line in self.health],
        }


def _run_json(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "kind": run.kind,
        "name": run.name,
        "started_at": run.started_at.isoformat(),
        "duration_ms": run.duration_ms,
        "ok": run.ok,
        "counts": dict(run.counts),
        "errors": list(run.errors),
        "detail": dict(run.detail),
    }


def day_window(today: date, days: int) -> list[date]:
    """``days`` dates ending with ``today``, oldest first."""
    return [today - timedelta(days=days - 1 - i) for i in range(days)]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


def build_overview(
    services: Services,
    *,
    now: datetime | None = None,
    days: int = 7,
    files: int = 10,
    health: Sequence[HealthLine] | None = None,
    env: Mapping[str, str] | None = None,
) -> Overview:
    """The overview at ``now`` (UTC). ``health``: lines already probed (the console keeps them
    a little while); probed here when None.

    The reads are independent round trips to the ops store and the queue (a dozen on Table
    Storage), so they run side by side: the page waits for the slowest, not for their sum."""
    now = now or datetime.now(UTC)
    window = day_window(now.date(), days)
    ops = services.ops
    book = services.poison_book
    since = day_bounds(window[0])[0]

    def depth() -> tuple[dict[str, int] | None, str]:
        try:
            return services.queue.depth(), ""
        except BridgeError as exc:
            return None, type(exc).__name__

    def recent_files() -> list[RunRecord]:
        return list(itertools.islice(ops.runs(since, kind="file"), files))

    with ThreadPoolExecutor(max_workers=OVERVIEW_READERS) as pool:
        totals = pool.submit(ops.day_totals, window)
        by_day = [
            pool.submit(book.count, PoisonFilter(since=start, until=end))
            for start, end in (day_bounds(day) for day in window)
        ]
        total = pool.submit(book.count, PoisonFilter())
        queue = pool.submit(depth)
        last = pool.submit(lambda: last_timer_runs(ops, totals.result()))  # after the totals
        found = pool.submit(recent_files)
        probed = pool.submit(health_lines, services, env) if health is None else None
        queue_depth, queue_error = queue.result()
        return Overview(
            at=now,
            days=totals.result(),
            poison_total=total.result(),
            poison_by_day=[f.result() for f in by_day],
            queue=queue_depth,
            queue_error=queue_error,
            files=found.result(),
            timers=last.result(),
            health=probed.result() if probed is not None else list(health or ()),
        )


def last_timer_runs(ops: OpsStore, days: Sequence[DayTotals]) -> dict[str, RunRecord | None]:
    """Each timer's last run within ``days`` (None: it did not run then).

    The day roll-ups say on which day each timer last ran, so only those days' timer runs are
    read, newest first, and each day's reading stops once its timers are found: a timer every
    five minutes must not make the overview read a week of its runs."""
    last: dict[str, RunRecord | None] = dict.fromkeys(TIMERS)
    wanted: dict[date, set[str]] = {}
    placed: set[str] = set()
    for totals in sorted(days, key=lambda t: t.day, reverse=True):
        for name in TIMERS:
            if name not in placed and totals.runs.get(f"timer:{name}"):
                wanted.setdefault(totals.day, set()).add(name)
                placed.add(name)
    for day, names in sorted(wanted.items(), reverse=True):
        start, end = day_bounds(day)
        for run in ops.runs(start, end, kind="timer"):
            if run.name in names:
                last[run.name] = run
                names.discard(run.name)
                if not names:
                    break
    return last


def health_lines(services: Services, env: Mapping[str, str] | None = None) -> list[HealthLine]:
    """The health of settings, Dataverse, APSIS, SPAR and the queue, as ``/api/health`` finds
    it (the same checks), each with the reason when red."""
    from dynamics_bridge.app.health import check_health

    checks: dict[str, dict[str, Any]] = check_health(
        services, os.environ if env is None else env
    ).body["checks"]
    lines: list[HealthLine] = []
    settings = checks.get("settings", {})
    vault = checks.get("key_vault", {})
    if not vault.get("ok", True):
        lines.append(
            HealthLine(
                "settings",
                "red",
                "Key Vault references unresolved: " + ", ".join(vault.get("unresolved", [])),
            )
        )
    elif not settings.get("ok", False):
        reason = "settings do not load: " + ", ".join(settings.get("problems", []))
        lines.append(HealthLine("settings", "red", reason))
        return lines + [HealthLine(p, "red", "settings do not load") for p in HEALTH_PARTS[1:]]
    elif not checks.get("config", {}).get("ok", True):  # the start-up check of the files
        errors = checks["config"].get("errors") or ["the start-up check failed"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        lines.append(HealthLine("settings", "red", f"{errors[0]}{more}"))
    else:
        lines.append(HealthLine("settings", "ok"))
    lines.append(_line("dataverse", checks.get("dataverse", {})))
    lines.append(_apsis(checks.get("apsis", {}), checks.get("trigger_outbox")))
    lines.append(_spar(checks.get("spar", {})))
    queue = checks.get("queue", {})
    if queue.get("ok"):
        lines.append(
            HealthLine(
                "queue",
                "ok",
                f"{queue.get('messages', 0)} waiting, {queue.get('poison', 0)} on the poison queue",
            )
        )
    else:
        lines.append(_line("queue", queue))
    if (retention := checks.get("retention")) is not None:
        lines.append(_retention(retention))
    return lines


def _retention(check: Mapping[str, Any]) -> HealthLine:
    """The churn model in use, or red with why none is (never trained, does not beat the
    baseline): shown only where the union has turned the analytics on."""
    if check.get("error"):
        return HealthLine("retention", "red", f"models not readable: {check['error']}")
    if check.get("used"):
        return HealthLine(
            "retention", "ok", f"churn model {check['model']} trained {check['trained_on']}"
        )
    return HealthLine("retention", "red", str(check.get("why") or "no churn model in use"))


def _line(name: str, check: Mapping[str, Any]) -> HealthLine:
    if check.get("ok"):
        return HealthLine(name, "ok")
    reason = str(check.get("error") or "failed")
    if check.get("status"):
        reason += f" (HTTP {check['status']})"
    return HealthLine(name, "red", reason)


def _apsis(check: Mapping[str, Any], outbox: Mapping[str, Any] | None) -> HealthLine:
    # Not configured, unless an activation side is wired anyway (the demo brings its own).
    wired = outbox is not None and outbox.get("error") != "ConfigError"
    if not check.get("configured") and not wired:
        return HealthLine("apsis", "off", "not configured (BRIDGE_APSIS__*)")
    if outbox is None or outbox.get("ok"):
        return HealthLine("apsis", "ok")
    if "error" in outbox:
        return HealthLine("apsis", "red", f"trigger outbox not readable: {outbox['error']}")
    reasons = []
    unconfirmed = outbox.get("unconfirmed", {}).get("count", 0)
    if unconfirmed:
        reasons.append(f"{unconfirmed} unconfirmed trigger(s) wait for an admin")
    oldest = outbox.get("pending", {}).get("oldest_seconds") or 0
    if oldest:
        reasons.append(f"the oldest pending trigger waits {int(oldest) // 60} min")
    return HealthLine("apsis", "red", "; ".join(reasons) or "trigger outbox stalled")


def _spar(check: Mapping[str, Any]) -> HealthLine:
    if not check.get("configured"):
        return HealthLine("spar", "off", "not configured (BRIDGE_SPAR__*)")
    if check.get("ok"):
        return HealthLine("spar", "ok")
    return HealthLine(
        "spar", "red", "set up on the demo contract: " + ", ".join(check.get("problems", []))
    )
