"""What the History, Segments, Triggers and Mapping pages show, as data (no HTTP here).

Each function reads through ``Services`` (the run history, the activation store, the mapping)
and returns plain dicts and SVG text the templates lay out; the JSON beside each page is the same
dict without the SVG.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from dynamics_bridge.app.status import day_bounds, day_window, events_by_source
from dynamics_bridge.errors import BridgeError, ConfigError
from dynamics_bridge.ops.charts import Series, bar_chart, line_chart
from dynamics_bridge.ops.model import DayTotals, RunRecord

if TYPE_CHECKING:
    from dynamics_bridge.app.wiring import Services

__all__ = [
    "OUTCOME_COLORS",
    "history",
    "mapping_check",
    "poison_trend_chart",
    "segments",
    "triggers",
]

#: Outcomes keep their colour on every chart (the palette's order would shift them).
OUTCOME_COLORS = {
    "applied": "#009e73",
    "duplicate": "#56b4e9",
    "stale": "#cc79a7",
    "unmatched": "#e69f00",
    "failed": "#d55e00",
    "poisoned": "#000000",
}
MEASURE_COLORS = {"sent": "#009e73", "skipped": "#e69f00", "failed": "#d55e00"}


def _label(day: date) -> str:
    return day.strftime("%m-%d")


def history(services: Services, *, days: int, today: date | None = None) -> dict[str, Any]:
    """Events per day by outcome over ``days`` days (a stacked bar chart and its table)."""
    today = today or datetime.now(UTC).date()
    totals = services.ops.day_totals(day_window(today, days))
    rows: list[dict[str, Any]] = []
    for t in totals:
        outcomes: Counter[str] = Counter()
        for counts in events_by_source(t).values():
            outcomes.update(counts)
        rows.append({"day": t.day.isoformat(), "outcomes": dict(outcomes)})
    labels = [_label(t.day) for t in totals]
    series = [
        Series(outcome, [r["outcomes"].get(outcome, 0) for r in rows], color)
        for outcome, color in OUTCOME_COLORS.items()
    ]
    return {
        "days": days,
        "rows": rows,
        "totals": {o: sum(r["outcomes"].get(o, 0) for r in rows) for o in OUTCOME_COLORS},
        "chart": bar_chart(
            labels,
            series,
            title=f"Events per day by outcome, last {days} days",
            chart_id="history-chart",
        ),
    }


def poison_trend_chart(days: Sequence[date], counts: Sequence[int]) -> str:
    return bar_chart(
        [_label(d) for d in days],
        [Series("poison", list(counts), "#d55e00")],
        title="Poison messages by the day they failed",
        chart_id="poison-trend-chart",
        width=380,
        height=200,
        legend=False,
    )


def _timer_runs(services: Services, name: str, days: Sequence[date]) -> list[RunRecord]:
    """The timer's runs on these days, oldest first (one query: on Azurite, a query per day
    side by side measured three times slower than one over the range)."""
    start, end = day_bounds(min(days))[0], day_bounds(max(days))[1]
    runs = [r for r in services.ops.runs(start, end, kind="timer") if r.name == name]
    return sorted(runs, key=lambda r: r.started_at)


def _by_measure(run: RunRecord, what: str) -> dict[str, dict[str, int]]:
    """``what/<name>/<measure>`` counts as name -> measure -> n."""
    out: dict[str, dict[str, int]] = {}
    for key, n in run.counts.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == what:
            out.setdefault(parts[1], {})[parts[2]] = n
    return out


def segments(services: Services, *, days: int = 30, today: date | None = None) -> dict[str, Any]:
    """Each segment's size over time (the day's last run) and the last push's changes."""
    today = today or datetime.now(UTC).date()
    window = day_window(today, days)
    # A dry run pushed nothing: its figures are what it would do, not sizes.
    runs = [
        r for r in _timer_runs(services, "segments", window) if r.detail.get("dry_run") != "yes"
    ]
    size_by_day: dict[date, dict[str, int]] = {}
    names: set[str] = set()
    for run in runs:  # oldest first: the day's last run wins
        measures = _by_measure(run, "segment")
        names.update(measures)
        day_sizes = size_by_day.setdefault(run.day, {})
        for name, m in measures.items():
            if "size" in m:
                day_sizes[name] = m["size"]
    ordered = sorted(names)
    series = [Series(name, _carried(window, size_by_day, name)) for name in ordered]
    last = runs[-1] if runs else None
    last_push = []
    if last is not None:
        for name, m in sorted(_by_measure(last, "segment").items()):
            last_push.append(
                {
                    "segment": name,
                    "size": m.get("size", 0),
                    "added": m.get("added", 0),
                    "removed": m.get("removed", 0),
                }
            )
    return {
        "days": days,
        "segments": ordered,
        "sizes": [
            {"day": d.isoformat(), **{n: size_by_day.get(d, {}).get(n) for n in ordered}}
            for d in window
        ],
        "last_push": {
            "at": last.started_at.isoformat() if last else None,
            "ok": last.ok if last else None,
            "errors": list(last.errors) if last else [],
            "segments": last_push,
        },
        "chart": line_chart(
            [_label(d) for d in window],
            series,
            title=f"Segment sizes, last {days} days",
            chart_id="segments-chart",
        ),
    }


def _carried(
    window: Sequence[date], by_day: dict[date, dict[str, int]], name: str
) -> list[float | None]:
    """A segment's size per day: a day without a push keeps the size the last one left; days
    before the first push known have none (the line starts there)."""
    values: list[float | None] = []
    last: float | None = None
    for day in window:
        if name in by_day.get(day, {}):
            last = by_day[day][name]
        values.append(last)
    return values


def triggers(services: Services, *, days: int = 14, today: date | None = None) -> dict[str, Any]:
    """Sent, skipped and failed triggers by type per day; the outbox's pending and unconfirmed."""
    today = today or datetime.now(UTC).date()
    totals: list[DayTotals] = services.ops.day_totals(day_window(today, days))
    rows: list[dict[str, Any]] = []
    types: set[str] = set()
    for t in totals:
        by_type: dict[str, dict[str, int]] = {}
        for key, n in t.counts.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "trigger" and parts[2] in MEASURE_COLORS:
                by_type.setdefault(parts[1], {}).setdefault(parts[2], 0)
                by_type[parts[1]][parts[2]] += n
        types.update(by_type)
        rows.append({"day": t.day.isoformat(), "types": by_type})
    series = [
        Series(
            measure,
            [sum(m.get(measure, 0) for m in r["types"].values()) for r in rows],
            color,
        )
        for measure, color in MEASURE_COLORS.items()
    ]
    return {
        "days": days,
        "types": sorted(types),
        "rows": rows,
        "outbox": outbox(services),
        "chart": bar_chart(
            [_label(t.day) for t in totals],
            series,
            title=f"Triggers per day, last {days} days",
            chart_id="triggers-chart",
        ),
    }


def outbox(services: Services) -> dict[str, Any]:
    """The trigger outbox now: pending and unconfirmed (count, oldest), the unconfirmed rows."""
    try:
        activation = services.activation
        store = services.outbox_probe()
    except ConfigError:  # no APSIS, or no Dataverse (where the outbox lives)
        return {"configured": False}
    except BridgeError as exc:
        return {"configured": True, "error": type(exc).__name__}
    if activation is None or store is None:
        return {"configured": False}
    try:
        age = store.outbox_age(activation.clock())
        unconfirmed = [row.event_id for row in store.unconfirmed()[:50]]
    except BridgeError as exc:
        return {"configured": True, "error": type(exc).__name__}
    return {"configured": True, **age, "unconfirmed_events": unconfirmed}


def mapping_check(services: Services) -> dict[str, Any]:
    """What ``dynamics-bridge check`` finds over this console's wiring (:meth:`Services.check`):
    the settings, every mapping file, the SPAR contract files and, live, the Dataverse metadata
    and the APSIS definitions. Each finding has its place and what to do."""
    return services.check(live=True).to_json()
