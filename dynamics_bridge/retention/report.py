"""The retention report: one self-contained HTML page of what a run found.

Pure (numpy; no I/O library). :func:`build_report_data` gathers what a run produced (the churn
model and why it is or is not used, the retention curves, lifetime values, leaving reasons,
the themes with the names admins gave them, how many members were scored and tasks made) into
a :class:`ReportData`; :func:`render` lays it out as HTML. The orchestration stores the page and
the console shows it, so an admin reads the same page wherever it is opened.

The page needs nothing else: inline CSS, plots as inline SVG (no script, no font, no URL of
another host), so it works inside the console's sandboxed frame, saved to disk or printed. Each
plot has a table beside it with the same numbers, readable without the picture. Numbers are
written the Swedish way (``0,67``, ``12 345``, ``12 %``); every text is escaped, theme names
and cohort words included (they come from configuration and from the register).

Leaving reasons appear as their choice words and counts only. A theme is described by its
aggregated vocabulary (the words its leavers used most), never by any member's own text.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from dynamics_bridge.errors import InputError
from dynamics_bridge.ops.charts import PALETTE, Series, axis_ticks, bar_chart
from dynamics_bridge.retention.features import add_months
from dynamics_bridge.retention.model import CalibrationBin, Evaluation
from dynamics_bridge.retention.survival import (
    MONTH_DAYS,
    SurvivalCurve,
    cohort_curves,
    lifetime_values,
    survival_curve,
)

if TYPE_CHECKING:
    from dynamics_bridge.mapping.retention import RetentionFile
    from dynamics_bridge.retention.features import HistoryArrays
    from dynamics_bridge.retention.model import ChurnModel
    from dynamics_bridge.retention.records import MemberHistory
    from dynamics_bridge.retention.survival import MemberValue
    from dynamics_bridge.retention.themes import Theme, ThemeModel

__all__ = [
    "COHORT_LABELS",
    "REPORT_COHORTS",
    "ReportData",
    "ThemeSummary",
    "ValueSummary",
    "build_report_data",
    "calibration_plot",
    "followed_from",
    "kronor",
    "number",
    "percent",
    "reasons_by_month",
    "reasons_plot",
    "render",
    "retention_plot",
    "signed",
    "value_summaries",
]

#: How a cohort dimension is named on the page.
COHORT_LABELS = {
    "join_year": "join year",
    "join_month": "join month",
    "method": "payment method",
    "member_type": "member type",
    "region": "region",
}
#: The cohorts the report draws when the run gives no curves.
REPORT_COHORTS = ("join_year", "method", "member_type", "region")
#: The whole register's curve in a mapping of cohort curves (as lifetime_values takes it).
ALL = "*"
#: At most this many curves on one plot (the largest cohorts); the table lists every one.
MAX_CURVES = len(PALETTE)
#: At most this many reasons as their own series on the bar chart; the rest are summed.
MAX_REASONS = 7
#: Features in the weights table.
TOP_WEIGHTS = 10
#: Tenures (months) at which the retention tables give the share still a member.
SURVIVAL_AT = (12, 24, 60)

_NBSP = "\u00a0"
_MINUS = "\u2212"


# -- what a run produced ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ValueSummary:
    """Lifetime value of a cohort's active members (kronor): mean, median, quartiles, and the
    mean expected remaining months."""

    dimension: str
    cohort: str
    members: int
    mean: float
    median: float
    q1: float
    q3: float
    mean_months: float


@dataclass(frozen=True, slots=True)
class ThemeSummary:
    """A winback theme as the report shows it: the admin's name and priority (None when the
    theme is not named yet), its size and value, what sets it apart, its leavers' choices and
    its most used words (the theme's vocabulary, not a member's text)."""

    id: str
    name: str | None
    priority: int | None
    size: int
    share: float
    mean_value: float | None
    top_features: tuple[tuple[str, float], ...] = ()
    behaviour: tuple[tuple[str, float], ...] = ()
    reasons: tuple[tuple[str, int], ...] = ()
    words: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportData:
    """What a retention run produced, as the report shows it.

    ``churn`` is the churn model's held-out evaluation (its metrics, the baseline's, the
    calibration tables), None when no model was trained (``no_model_reason`` says why);
    ``model_used`` whether it beat the baseline by ``margin`` and was used. ``curves`` are
    Kaplan-Meier curves by cohort dimension (``method``, ``region``...) and cohort word, from a
    register complete since ``observed_from`` (None: complete); ``values`` summarise lifetime
    value for the same cohorts; ``reasons`` count the leavers of each month (``YYYY-MM``) by
    their leaving reason's choice (``(none)`` without one). ``scored``, ``high_risk`` and
    ``tasks`` are None when that step did not run.
    """

    today: date
    churn: Evaluation | None = None
    model_used: bool = False
    no_model_reason: str = ""
    margin: float = 0.0
    weights: tuple[tuple[str, float], ...] = ()
    curves: Mapping[str, Mapping[str, SurvivalCurve]] = field(default_factory=dict)
    observed_from: date | None = None
    values: tuple[ValueSummary, ...] = ()
    value_horizon_months: int = 120
    reasons: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    reason_months: int = 12
    themes: tuple[ThemeSummary, ...] = ()
    no_themes_reason: str = ""
    theme_leavers: int = 0
    scored: int | None = None
    high_risk: int | None = None
    high_risk_threshold: float = 0.25
    tasks: int | None = None


def _cohort_of(member: MemberHistory, dimension: str) -> str:
    """The cohort word of a member, as :func:`~.survival.cohort_curves` names it."""
    if dimension == "join_year":
        return member.joined_on.isoformat()[:4]
    if dimension == "join_month":
        return member.joined_on.isoformat()[:7]
    word = getattr(member, dimension, None)
    return "(unknown)" if word is None else str(word)


def _value_summary(dimension: str, cohort: str, found: Sequence[MemberValue]) -> ValueSummary:
    values = np.array([v.value for v in found], np.float64)
    months = np.array([v.remaining_months for v in found], np.float64)
    q1, median, q3 = np.percentile(values, [25, 50, 75]).tolist()
    return ValueSummary(
        dimension=dimension,
        cohort=cohort,
        members=len(found),
        mean=float(values.mean()),
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        mean_months=float(months.mean()),
    )


def value_summaries(
    values: Sequence[MemberValue],
    members: Sequence[MemberHistory],
    cohorts: Mapping[str, Iterable[str]] | None = None,
) -> tuple[ValueSummary, ...]:
    """Lifetime value of everyone (dimension ``all``), then by each cohort dimension, for the
    cohorts named (those with a curve: large enough to say something, and no summary of one
    or two members' fees)."""
    if not values:
        return ()
    found = [_value_summary("all", "all members", values)]
    by_id = {m.member_id: m for m in members}
    for dimension, keys in (cohorts or {}).items():
        wanted = set(keys) - {ALL}
        groups: dict[str, list[MemberValue]] = {}
        for value in values:
            member = by_id.get(value.member_id)
            key = _cohort_of(member, dimension) if member is not None else ""
            if key in wanted:
                groups.setdefault(key, []).append(value)
        found += [_value_summary(dimension, key, groups[key]) for key in sorted(groups)]
    return tuple(found)


def reasons_by_month(
    members: Iterable[MemberHistory], today: date, months: int
) -> dict[str, dict[str, int]]:
    """The leavers of each of the ``months`` months before ``today`` (every month present, none
    left out for having no leaver) by their reason's choice word: never the free text."""
    since = add_months(today, -months)
    found: dict[str, dict[str, int]] = {}
    for step in range(months + 1):
        start = add_months(since, step)
        if start < today:
            found[start.isoformat()[:7]] = {}
    for member in members:
        ended = member.ended_on
        if ended is None or not since <= ended < today:
            continue
        month = found.setdefault(ended.isoformat()[:7], {})
        reason = member.reason or "(none)"
        month[reason] = month.get(reason, 0) + 1
    return dict(sorted(found.items()))


def _theme_summary(theme: Theme, config: RetentionFile | None) -> ThemeSummary:
    named = config.themes.named.get(theme.id) if config is not None else None
    return ThemeSummary(
        id=theme.id,
        name=named.name if named else None,
        priority=named.priority if named else None,
        size=theme.size,
        share=theme.share,
        mean_value=theme.mean_value,
        top_features=tuple(theme.top_features),
        behaviour=tuple(theme.behaviour),
        reasons=tuple(theme.reasons),
        words=tuple(theme.words),
    )


def _stored_churn(
    meta: Mapping[str, Any],
) -> tuple[Evaluation | None, bool, tuple[tuple[str, float], ...], str]:
    """(evaluation, used, weights, why) from a stored model's metadata (``evaluation`` as
    :meth:`Evaluation.to_dict` gives it, ``used``, ``weights`` as [name, weight], ``why``)."""
    raw = meta.get("evaluation")
    evaluation = Evaluation.from_dict(dict(raw)) if isinstance(raw, Mapping) else None
    weights = tuple((str(n), float(w)) for n, w in meta.get("weights") or ())
    return evaluation, bool(meta.get("used")), weights[:TOP_WEIGHTS], str(meta.get("why") or "")


def _count_of(counts: Mapping[str, int] | None, *keys: str) -> int | None:
    for key in keys:
        if counts is not None and key in counts:
            return int(counts[key])
    return None


def build_report_data(
    *,
    today: date,
    config: RetentionFile | None = None,
    members: Sequence[MemberHistory] = (),
    arrays: HistoryArrays | None = None,
    observed_from: date | None = None,
    curve: SurvivalCurve | None = None,
    curves: Mapping[str, Mapping[str, SurvivalCurve]] | None = None,
    values: Sequence[MemberValue] | None = None,
    churn: ChurnModel | None = None,
    churn_meta: Mapping[str, Any] | None = None,
    no_model_reason: str = "",
    themes: ThemeModel | None = None,
    no_themes_reason: str = "",
    counts: Mapping[str, int] | None = None,
) -> ReportData:
    """The report's data from a run's pieces, so the orchestration calls one function; what
    is not given is computed here from ``members`` (pure, as the rest of the package).

    - ``config`` (``retention.yaml``): the margin the model must beat the baseline by, the
      high-risk threshold, the value horizon, the reasons' window, the admins' theme names
      and priorities; without it, the defaults.
    - ``members``: the register read (records; ``arrays``, the same converted, saves a second
      conversion). They give the leaving reasons (the choice only, never the text), and the
      curves and values when those are not given.
    - ``curves``: by cohort dimension and word (:func:`~.survival.cohort_curves`); default:
      :data:`REPORT_COHORTS` from ``members`` since ``observed_from``, a dimension left out
      where no member has a word for it. ``values``: each active member's lifetime value;
      default: from ``curve`` (default: the whole register's).
    - ``churn``: the model (it is used if it beats the baseline by the margin), or
      ``churn_meta``, the stored model's metadata (``evaluation``, ``used``, ``weights``,
      ``why``) when the model itself is not at hand (one that was not used); neither:
      ``no_model_reason`` says why there is none.
    - ``themes``, or ``no_themes_reason``.
    - ``counts`` of the run: ``scored``, ``high_risk``, ``tasks_created`` (absent: the step
      did not run).
    """
    if not isinstance(members, Sequence):
        raise InputError(
            "build_report_data: members are the records (MemberHistory: their leaving reasons "
            f"are counted), not {type(members).__name__}; pass the arrays as arrays="
        )
    margin = config.churn.margin if config is not None else 0.0
    threshold = config.churn.high_risk if config is not None else 0.25
    months = config.themes.months if config is not None else 12
    horizon = config.value.horizon_months if config is not None else 120
    register = arrays if arrays is not None else members
    if curves is None:
        curves = {}
        for by in REPORT_COHORTS if len(register) else ():
            found = cohort_curves(register, by, today, observed_from=observed_from)
            if set(found) - {"(unknown)"}:
                curves[by] = found
    if values is None:
        if curve is None and len(register):
            curve = survival_curve(register, today, observed_from)
        values = (
            lifetime_values(register, today, curve, horizon=float(horizon))
            if curve is not None
            else []
        )
    evaluation: Evaluation | None = None
    weights: tuple[tuple[str, float], ...] = ()
    used, why = False, no_model_reason
    if churn is not None:
        evaluation, used = churn.evaluation, churn.beats_baseline(margin)
        weights = tuple(churn.weights()[:TOP_WEIGHTS])
    elif churn_meta is not None:
        evaluation, used, weights, stored_why = _stored_churn(churn_meta)
        why = why or stored_why
    if evaluation is None:
        used = False
        why = why or "no churn model was trained yet"
    return ReportData(
        today=today,
        churn=evaluation,
        model_used=used,
        no_model_reason="" if evaluation is not None else why,
        margin=margin,
        weights=weights,
        curves=dict(curves),
        observed_from=observed_from,
        values=value_summaries(
            values, members, {d: list(c) for d, c in curves.items() if d in COHORT_LABELS}
        ),
        value_horizon_months=horizon,
        reasons=reasons_by_month(members, today, months),
        reason_months=months,
        themes=tuple(_theme_summary(t, config) for t in themes.themes) if themes else (),
        no_themes_reason=""
        if themes is not None
        else (no_themes_reason or "no themes were found yet"),
        theme_leavers=themes.leavers if themes is not None else 0,
        scored=_count_of(counts, "scored"),
        high_risk=_count_of(counts, "high_risk"),
        high_risk_threshold=threshold,
        tasks=_count_of(counts, "tasks_created", "tasks"),
    )


# -- numbers for people (sv-SE) -----------------------------------------------------------------


def number(value: float, decimals: int = 0) -> str:
    """Swedish style: decimal comma, a no-break space between thousands, a real minus sign."""
    if not math.isfinite(value):
        return "–"
    text = f"{abs(value):,.{decimals}f}".replace(",", _NBSP).replace(".", ",")
    negative = value < 0 and any(c in "123456789" for c in text)
    return f"{_MINUS}{text}" if negative else text


def signed(value: float, decimals: int = 2) -> str:
    """With its sign always shown (``+0,42``, ``−0,31``): a weight or a difference."""
    text = number(value, decimals)
    return (
        text if text.startswith(_MINUS) or not any(c in "123456789" for c in text) else f"+{text}"
    )


def percent(share: float, decimals: int = 0) -> str:
    return f"{number(share * 100, decimals)}{_NBSP}%"


def kronor(value: float) -> str:
    return f"{number(value, 0)}{_NBSP}kr"


def _count(value: int | None) -> str:
    return "not run" if value is None else number(value)


def _sentence(text: str) -> str:
    """A reason given as a clause, ending with one full stop."""
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _num_cell(value: float, shown: str) -> str:
    """A number cell: the figure as people read it, the raw value for machines."""
    raw = repr(int(value)) if isinstance(value, int | np.integer) else repr(float(value))
    return f'<td class="num" data-value="{raw}">{_e(shown)}</td>'


# -- plots ---------------------------------------------------------------------------------------

_WIDTH, _HEIGHT = 760, 330
_LEFT, _TOP, _BOTTOM, _LEGEND = 64, 34, 52, 190


@dataclass(frozen=True)
class _Frame:
    """A plot's pixel space: data (0..x_top, 0..y_top) to the plot area."""

    x_top: float
    y_top: float

    @property
    def width(self) -> float:
        return _WIDTH - _LEFT - _LEGEND

    @property
    def height(self) -> float:
        return _HEIGHT - _TOP - _BOTTOM

    def x(self, value: float) -> float:
        return _LEFT + self.width * min(max(value, 0.0), self.x_top) / self.x_top

    def y(self, value: float) -> float:
        return _TOP + self.height * (1 - min(max(value, 0.0), self.y_top) / self.y_top)


def _svg_open(plot_id: str, title: str, description: str, *, empty: bool = False) -> list[str]:
    kind = "plot plot-empty" if empty else "plot"
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{kind}" id="{_e(plot_id)}" '
        f'width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-labelledby="{_e(plot_id)}-title {_e(plot_id)}-desc">',
        f'<title id="{_e(plot_id)}-title">{_e(title)}</title>',
        f'<desc id="{_e(plot_id)}-desc">{_e(description)}</desc>',
        f'<text class="plot-title" x="{_LEFT}" y="18" font-size="14" font-weight="bold">'
        f"{_e(title)}</text>",
    ]


def _empty_plot(plot_id: str, title: str, why: str) -> str:
    """An explicit empty plot that says why, never a blank frame that looks broken."""
    parts = _svg_open(plot_id, title, why, empty=True)
    parts.append(
        f'<text class="plot-no-data" x="{_WIDTH / 2:.0f}" y="{_HEIGHT / 2:.0f}" '
        f'text-anchor="middle" font-size="14" fill="#555">{_e(why)}</text></svg>'
    )
    return "".join(parts)


def _ticks(top: float) -> list[float]:
    """Ticks from 0 to at least ``top`` (a nice step); 0 to 1 when there is nothing."""
    return axis_ticks(top, integer=False) if top > 0 else [0.0, 1.0]


def _decimals(ticks: Sequence[float], scale: float = 1.0) -> int:
    """Decimals enough to tell the ticks apart (after multiplying by ``scale``)."""
    step = (ticks[1] - ticks[0]) * scale if len(ticks) > 1 else 1.0
    for decimals in range(4):
        if abs(step * 10**decimals - round(step * 10**decimals)) < 1e-6:
            return decimals
    return 4


def _axes(
    frame: _Frame,
    x_ticks: Sequence[float],
    y_ticks: Sequence[float],
    x_label: str,
    y_label: str,
    *,
    x_percent: bool = False,
    y_percent: bool = False,
) -> list[str]:
    """Both axes, grid lines, tick labels in Swedish style and the axes' titles."""
    bottom, right = _TOP + frame.height, _LEFT + frame.width
    xd = _decimals(x_ticks, 100 if x_percent else 1)
    yd = _decimals(y_ticks, 100 if y_percent else 1)
    parts = ['<g class="plot-axes" font-size="11" fill="#444">']
    for value in y_ticks:
        y = frame.y(value)
        label = percent(value, yd) if y_percent else number(value, yd)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(label)}</text>'
        )
    for value in x_ticks:
        x = frame.x(value)
        label = percent(value, xd) if x_percent else number(value, xd)
        parts.append(
            f'<line x1="{x:.1f}" y1="{bottom:.1f}" x2="{x:.1f}" y2="{bottom + 4:.1f}" '
            f'stroke="#888"/><text x="{x:.1f}" y="{bottom + 17:.1f}" text-anchor="middle">'
            f"{_e(label)}</text>"
        )
    parts.append(
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom:.1f}" stroke="#888"/>'
        f'<line x1="{_LEFT}" y1="{bottom:.1f}" x2="{right:.1f}" y2="{bottom:.1f}" stroke="#888"/>'
        f'<text x="{_LEFT + frame.width / 2:.1f}" y="{_HEIGHT - 10}" text-anchor="middle" '
        f'font-size="12">{_e(x_label)}</text>'
        f'<text transform="translate(14 {_TOP + frame.height / 2:.1f}) rotate(-90)" '
        f'text-anchor="middle" font-size="12">{_e(y_label)}</text></g>'
    )
    return parts


def _legend(items: Sequence[tuple[str, str, str]]) -> list[str]:
    """(name, colour, marker: line|dash|dot|square) per item, right of the plot."""
    x = _WIDTH - _LEGEND + 14
    parts = ['<g class="plot-legend" font-size="11">']
    for i, (name, color, marker) in enumerate(items):
        y = _TOP + 4 + 17 * i
        if marker == "square":
            mark = f'<rect x="{x + 5}" y="{y - 4}" width="8" height="8" fill="{color}"/>'
        elif marker == "dot":
            mark = f'<circle cx="{x + 9}" cy="{y}" r="4" fill="{color}"/>'
        else:
            dash = ' stroke-dasharray="4 3"' if marker == "dash" else ""
            mark = (
                f'<line x1="{x}" y1="{y}" x2="{x + 18}" y2="{y}" stroke="{color}" '
                f'stroke-width="2.5"{dash}/>'
            )
        shown = name if len(name) <= 24 else name[:23] + "…"
        parts.append(
            f'<g class="plot-legend-item" data-series="{_e(name)}">{mark}'
            f'<text x="{x + 24}" y="{y + 4}">{_e(shown)}<title>{_e(name)}</title></text></g>'
        )
    parts.append("</g>")
    return parts


def calibration_plot(churn: Evaluation | None, *, plot_id: str = "calibration-plot") -> str:
    """Mean predicted probability against the share who left, per bin, for the model and the
    baseline, with the diagonal a calibrated score lies on."""
    title = "Calibration: predicted against observed leaving"
    if churn is None or not (churn.model.calibration or churn.baseline.calibration):
        return _empty_plot(plot_id, title, "no churn model this run")
    series = (("model", churn.model.calibration), ("baseline", churn.baseline.calibration))
    peak = max(max(b.predicted, b.observed) for _, bins in series for b in bins)
    ticks = _ticks(peak)
    frame = _Frame(ticks[-1], ticks[-1])
    horizon = churn.horizon_days
    parts = _svg_open(
        plot_id,
        title,
        f"Each point is a group of members of similar predicted risk: its mean predicted "
        f"probability of leaving within {horizon} days (across) and the share of it that did "
        "leave (up). Points on the diagonal are calibrated.",
    )
    parts += _axes(
        frame,
        ticks,
        ticks,
        f"predicted probability of leaving within {horizon} days",
        "share who left",
        x_percent=True,
        y_percent=True,
    )
    parts.append(
        f'<line class="plot-diagonal" x1="{frame.x(0):.1f}" y1="{frame.y(0):.1f}" '
        f'x2="{frame.x(ticks[-1]):.1f}" y2="{frame.y(ticks[-1]):.1f}" stroke="#888" '
        'stroke-width="1.5" stroke-dasharray="5 4"/>'
    )
    colors = {"model": PALETTE[0], "baseline": PALETTE[1]}
    for name, bins in series:
        color = colors[name]
        points = [(frame.x(b.predicted), frame.y(b.observed), b) for b in bins]
        parts.append(f'<g class="plot-series" data-series="{name}">')
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
        for x, y, b in points:
            tip = (
                f"{name}: predicted {percent(b.predicted, 1)}, left {percent(b.observed, 1)} "
                f"({number(b.members)} members)"
            )
            attributes = (
                f'class="plot-point" data-series="{name}" data-predicted="{b.predicted!r}" '
                f'data-observed="{b.observed!r}" data-members="{b.members}" fill="{color}"'
            )
            if name == "model":
                parts.append(
                    f'<circle {attributes} cx="{x:.1f}" cy="{y:.1f}" r="4">'
                    f"<title>{_e(tip)}</title></circle>"
                )
            else:
                parts.append(
                    f'<rect {attributes} x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8">'
                    f"<title>{_e(tip)}</title></rect>"
                )
        parts.append("</g>")
    parts += _legend(
        [
            ("model", colors["model"], "dot"),
            ("baseline", colors["baseline"], "square"),
            ("calibrated (diagonal)", "#888", "dash"),
        ]
    )
    parts.append("</svg>")
    return "".join(parts)


_JOINED = ("join_year", "join_month")


def _plotted(dimension: str, curves: Mapping[str, SurvivalCurve]) -> list[str]:
    """The cohorts drawn, at most :data:`MAX_CURVES`, in the table's order: the latest join
    years (or months), which say whether new members stay as long; otherwise the largest."""
    if dimension in _JOINED:
        chosen = sorted(k for k in curves if k != ALL)[-MAX_CURVES:]
    else:
        chosen = sorted(curves, key=lambda k: -curves[k].members)[:MAX_CURVES]
    return [k for k in curves if k in chosen]


def followed_from(dimension: str, cohort: str, observed_from: date | None) -> float:
    """The tenure (months) from which a join cohort is followed: a register complete only
    since ``observed_from`` lacks the early leavers of those who joined before, so their curve
    starts at the tenure its youngest member had then, not at 0 (0 for other cohorts)."""
    if observed_from is None or dimension not in _JOINED:
        return 0.0
    try:
        year = int(cohort[:4])
        month = int(cohort[5:7]) if dimension == "join_month" else 12
        end = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    except ValueError:
        return 0.0
    return max((observed_from - end).days, 0) / MONTH_DAYS


def _cohort_name(key: str) -> str:
    return "all members" if key == ALL else key


def _start(dimension: str, cohort: str, curve: SurvivalCurve, observed_from: date | None) -> float:
    """Where a cohort's curve starts (never after its first leaving)."""
    start = followed_from(dimension, cohort, observed_from)
    return min(start, float(curve.times[0])) if curve.times.size else start


def _step_path(frame: _Frame, curve: SurvivalCurve, start: float) -> tuple[str, float, float]:
    """The curve from tenure ``start`` as a step line (level, then drop at each leaving time),
    steps closer than half a pixel merged (the picture is the same, the page much smaller);
    and its end point."""
    points: list[tuple[float, float]] = []
    for t, s in zip(curve.times.tolist(), curve.survival.tolist(), strict=True):
        x = round(frame.x(t) * 2) / 2
        if points and points[-1][0] == x:
            points[-1] = (x, s)
        else:
            points.append((x, s))
    start_x, start_y = frame.x(start), frame.y(1.0)
    path = [f"M{start_x:.1f},{start_y:.1f}"]
    path += [f"H{x:.1f}V{frame.y(s):.1f}" for x, s in points]
    end_x, end_s = points[-1] if points else (start_x, 1.0)
    return " ".join(path), end_x, frame.y(end_s)


def retention_plot(
    dimension: str,
    curves: Mapping[str, SurvivalCurve],
    *,
    observed_from: date | None = None,
    plot_id: str | None = None,
) -> str:
    """Kaplan-Meier step lines, one per cohort (at most :data:`MAX_CURVES`), share still a
    member against months of membership, with a legend."""
    label = COHORT_LABELS.get(dimension, dimension)
    plot_id = plot_id or f"retention-plot-{dimension}"
    title = f"Retention by {label}"
    if not curves:
        return _empty_plot(plot_id, title, f"no {label} cohort large enough to draw")
    shown = _plotted(dimension, curves)
    longest = max((float(curves[k].times[-1]) for k in shown if curves[k].times.size), default=0)
    x_ticks = axis_ticks(longest, integer=True) if longest > 0 else [0.0, 12.0]
    frame = _Frame(x_ticks[-1], 1.0)
    left_out = len(curves) - len(shown)
    parts = _svg_open(
        plot_id,
        title,
        f"The share of each {label} cohort still a member (up) after months of membership "
        "(across), Kaplan-Meier estimate"
        + (f"; {len(shown)} of the {len(curves)} cohorts drawn" if left_out else "")
        + ".",
    )
    parts += _axes(
        frame,
        x_ticks,
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
        "months of membership",
        "still a member",
        y_percent=True,
    )
    legend = []
    for i, key in enumerate(shown):
        curve, color, name = curves[key], PALETTE[i % len(PALETTE)], _cohort_name(key)
        start = _start(dimension, key, curve, observed_from)
        path, end_x, end_y = _step_path(frame, curve, start)
        median = curve.median()
        parts.append(
            f'<g class="plot-curve" data-series="{_e(name)}" data-members="{curve.members}" '
            f'data-median="{"" if median is None else repr(median)}" data-from="{start!r}">'
            f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            f'<circle class="plot-end" cx="{end_x:.1f}" cy="{end_y:.1f}" r="3" fill="{color}">'
            f"<title>{_e(name)}: {_e(_median_text(median))} "
            f"({number(curve.members)} members)</title></circle></g>"
        )
        legend.append((name, color, "line"))
    parts += _legend(legend)
    parts.append("</svg>")
    return "".join(parts)


def reasons_plot(reasons: Mapping[str, Mapping[str, int]], *, plot_id: str = "reasons-plot") -> str:
    """Leavers per month, stacked by reason (the most common ones; the rest summed)."""
    kept, rest = _reason_series(reasons)
    months = list(reasons)
    series = [Series(r, [reasons[m].get(r, 0) for m in months]) for r in kept]
    if rest:
        others = [sum(n for r, n in reasons[m].items() if r not in kept) for m in months]
        series.append(Series("(the rest)", others, "#999999"))
    return bar_chart(
        months,
        series,
        title="Leavers by month and leaving reason",
        chart_id=plot_id,
        width=_WIDTH,
        height=_HEIGHT,
    )


def _reason_series(reasons: Mapping[str, Mapping[str, int]]) -> tuple[list[str], list[str]]:
    totals: Counter[str] = Counter()
    for counts in reasons.values():
        totals.update(counts)
    ordered = [r for r, _ in sorted(totals.items(), key=lambda p: (-p[1], p[0]))]
    if len(ordered) <= MAX_REASONS + 1:
        return ordered, []
    return ordered[:MAX_REASONS], ordered[MAX_REASONS:]


# -- the page ------------------------------------------------------------------------------------

_CSS = """
:root { --fg: #1d2430; --muted: #5d6778; --line: #d8dde6; --soft: #f6f7f9;
        --red: #b42318; --red-bg: #fef3f2; --ok: #067647; --ok-bg: #ecfdf3; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1000px; padding: 1rem 1.2rem 3rem; color: var(--fg);
       font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: #fff; }
h1 { font-size: 1.5rem; margin: .4rem 0 .8rem; }
h2 { font-size: 1.2rem; margin: 2.2rem 0 .6rem; padding-bottom: .2rem;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: 1.4rem 0 .4rem; }
p { margin: .4rem 0 .8rem; }
.headline { font-size: 1.1rem; padding: .8rem 1rem; border-left: 6px solid var(--muted);
            background: var(--soft); }
.headline.used { border-color: var(--ok); background: var(--ok-bg); }
.headline.not-used, .headline.no-model { border-color: var(--red); background: var(--red-bg); }
.headline strong { display: block; font-size: 1.25rem; margin-bottom: .2rem; }
dl.counts { display: grid; grid-template-columns: repeat(3, 1fr); gap: .6rem; margin: 1rem 0; }
dl.counts div { border: 1px solid var(--line); border-radius: 6px; padding: .5rem .8rem; }
dl.counts dt { color: var(--muted); font-size: .9em; }
dl.counts dd { margin: 0; font-size: 1.4rem; font-weight: 700; font-variant-numeric: tabular-nums; }
nav.contents ol { display: flex; flex-wrap: wrap; gap: .2rem 1.2rem; padding: 0; margin: 0;
                  list-style: none; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1.4rem; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .3rem 0; }
caption .note { display: block; font-weight: 400; color: var(--muted); font-size: .92em; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .5rem; text-align: left;
         vertical-align: top; }
thead th { border-bottom: 2px solid var(--line); }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody th[colspan] { background: var(--soft); }
figure { margin: .6rem 0; }
svg.plot, svg.chart { display: block; max-width: 100%; height: auto; }
.muted, .empty { color: var(--muted); }
.empty { font-style: italic; }
ul.plain { margin: 0; padding-left: 1.1rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .92em; }
footer { margin-top: 2.5rem; color: var(--muted); font-size: .9em; }
@media print { body { max-width: none; } h2 { break-after: avoid; }
               figure, table { break-inside: avoid; } }
"""


def _headline(data: ReportData) -> str:
    churn = data.churn
    if churn is None:
        return (
            '<p id="headline" class="headline no-model" data-model="none">'
            "<strong>No churn model this run.</strong> "
            f"{_e(_sentence(data.no_model_reason or 'no churn model was trained'))}</p>"
        )
    model, baseline = churn.model, churn.baseline
    figures = (
        f"ROC AUC {number(model.roc_auc, 3)} against the baseline's "
        f"{number(baseline.roc_auc, 3)}, PR AUC {number(model.pr_auc, 3)} against "
        f"{number(baseline.pr_auc, 3)}, on the {number(model.members)} members active on "
        f"{churn.split.isoformat()}"
    )
    rule = f"The baseline is a rule of thumb: {churn.baseline_rule}."
    by = f" by the required margin of {number(data.margin, 2)}" if data.margin > 0 else ""
    if data.model_used:
        return (
            '<p id="headline" class="headline used" data-model="used">'
            "<strong>The churn model is used: it beats the baseline.</strong> "
            f"{_e(figures)}. {_e(rule)}</p>"
        )
    return (
        '<p id="headline" class="headline not-used" data-model="not-used">'
        f"<strong>The churn model is not used: it does not beat the baseline{_e(by)}.</strong> "
        f"{_e(figures)}. {_e(rule)} A model that does not rank leavers better than the rule "
        "is not worth its risk scores.</p>"
    )


def _counts(data: ReportData) -> str:
    items = (
        ("scored", "members scored", data.scored),
        (
            "high-risk",
            f"at high risk ({percent(data.high_risk_threshold)} or more)",
            data.high_risk,
        ),
        ("tasks", "advisor tasks created", data.tasks),
    )
    cells = "".join(
        f'<div id="count-{key}" data-count="{"" if value is None else value}">'
        f"<dt>{_e(label)}</dt><dd>{_e(_count(value))}</dd></div>"
        for key, label, value in items
    )
    return f'<dl class="counts" aria-label="This run">{cells}</dl>'


def _metrics_table(churn: Evaluation) -> str:
    rows = (
        ("roc_auc", "ROC AUC", "higher is better; 0,5 is chance", 3, False),
        ("pr_auc", "PR AUC (average precision)", "higher is better", 3, False),
        ("brier", "Brier score", "lower is better", 4, True),
    )
    body = []
    for key, name, note, decimals, lower in rows:
        m, b = getattr(churn.model, key), getattr(churn.baseline, key)
        better = m < b if lower else m > b
        body.append(
            f'<tr data-metric="{key}"><th scope="row">{_e(name)} '
            f'<span class="muted">({_e(note)})</span></th>'
            f"{_num_cell(m, number(m, decimals))}{_num_cell(b, number(b, decimals))}"
            f"{_num_cell(m - b, signed(m - b, decimals))}"
            f'<td data-better="{"model" if better else "baseline"}">'
            f"{'model' if better else 'baseline'}</td></tr>"
        )
    model = churn.model
    caption = (
        "Held-out metrics: the model against the baseline"
        f'<span class="note">On the {number(model.members)} members active on '
        f"{churn.split.isoformat()}, of whom {number(model.leavers)} "
        f"({percent(model.leavers / max(model.members, 1), 1)}) left within "
        f"{churn.horizon_days} days. Trained on {number(churn.train_rows)} member-months at "
        f"{len(churn.cutoffs)} monthly cut-offs"
        + (
            f" ({churn.cutoffs[0].isoformat()} to {churn.cutoffs[-1].isoformat()})"
            if churn.cutoffs
            else ""
        )
        + f", {number(churn.train_leavers)} leavers.</span>"
    )
    return (
        f'<table id="metrics-table"><caption>{caption}</caption>'
        '<thead><tr><th scope="col">metric</th><th scope="col" class="num">model</th>'
        '<th scope="col" class="num">baseline</th><th scope="col" class="num">difference</th>'
        '<th scope="col">better</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _calibration_rows(name: str, bins: Sequence[CalibrationBin]) -> list[str]:
    rows = []
    for b in bins:
        span = (
            percent(b.low, 1) if b.low == b.high else f"{percent(b.low, 1)} – {percent(b.high, 1)}"
        )
        rows.append(
            f'<tr data-series="{name}"><th scope="row">{name}</th><td class="num">{_e(span)}</td>'
            f"{_num_cell(b.members, number(b.members))}"
            f"{_num_cell(b.predicted, percent(b.predicted, 1))}"
            f"{_num_cell(b.observed, percent(b.observed, 1))}</tr>"
        )
    return rows


def _calibration_table(churn: Evaluation) -> str:
    rows = _calibration_rows("model", churn.model.calibration)
    rows += _calibration_rows("baseline", churn.baseline.calibration)
    return (
        '<table id="calibration-table"><caption>Calibration table'
        '<span class="note">Members grouped by predicted probability (the model: ten groups '
        "of equal size; the baseline: one group per value it gives).</span></caption>"
        '<thead><tr><th scope="col">score</th><th scope="col" class="num">predicted range</th>'
        '<th scope="col" class="num">members</th><th scope="col" class="num">mean predicted</th>'
        '<th scope="col" class="num">left</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _weights_table(weights: Sequence[tuple[str, float]]) -> str:
    if not weights:
        return ""
    rows = "".join(
        f'<tr data-feature="{_e(name)}"><th scope="row"><code>{_e(name)}</code></th>'
        f"{_num_cell(weight, signed(weight, 2))}"
        f"<td>{'raises' if weight > 0 else 'lowers'} the risk</td></tr>"
        for name, weight in weights
    )
    return (
        '<table id="weights-table"><caption>What the model weighs most'
        '<span class="note">The model\'s weight per standard deviation of each feature, '
        "largest effect first. A weight says how the risk moves with the feature among "
        "members otherwise alike; it is no proof of cause.</span></caption>"
        '<thead><tr><th scope="col">feature</th><th scope="col" class="num">weight</th>'
        '<th scope="col">effect</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _churn_section(data: ReportData) -> str:
    parts = [
        '<section id="churn" aria-labelledby="churn-title">',
        '<h2 id="churn-title">Churn model</h2>',
    ]
    churn = data.churn
    if churn is None:
        parts.append(
            f'<p class="empty" id="churn-empty">No churn model this run: '
            f"{_e(_sentence(data.no_model_reason or 'no churn model was trained'))}</p>"
        )
    else:
        parts.append(
            f"<p>Each active member's probability of leaving within {churn.horizon_days} days, "
            "tested on a period the model never saw, beside a rule of thumb.</p>"
        )
        parts.append(_metrics_table(churn))
    parts.append('<h3 id="calibration-title">Calibration</h3>')
    parts.append(f"<figure>{calibration_plot(churn)}</figure>")
    if churn is not None:
        parts.append(_calibration_table(churn))
        parts.append(_weights_table(data.weights))
    parts.append("</section>")
    return "".join(parts)


def _median_text(median: float | None) -> str:
    return "median not reached" if median is None else f"median {number(median, 1)} months"


def _retention_table(
    dimension: str, curves: Mapping[str, SurvivalCurve], observed_from: date | None = None
) -> str:
    """Each cohort's size, leavers, median and share still a member after one, two and five
    years. A cohort followed only from some tenure on has no such figures (its curve is the
    share of those still members then): the table says from when it is followed instead."""
    label = COHORT_LABELS.get(dimension, dimension)
    starts = {key: _start(dimension, key, curve, observed_from) for key, curve in curves.items()}
    later = any(v > 0 for v in starts.values())
    head = "".join(
        f'<th scope="col" class="num">after {months // 12} year{"s" if months > 12 else ""}</th>'
        for months in SURVIVAL_AT
    )
    unknown = '<td class="num muted" data-value="">–</td>'
    rows = []
    for key, curve in curves.items():
        last = float(curve.times[-1]) if curve.times.size else 0.0
        start = starts[key]
        median = curve.median()
        cells = "".join(
            _num_cell(float(curve.at(months)), percent(float(curve.at(months))))
            if start == 0 and months <= last
            else unknown
            for months in SURVIVAL_AT
        )
        if start > 0:
            middle = unknown
        elif median is None:
            middle = '<td class="num muted" data-value="">not reached</td>'
        else:
            middle = _num_cell(median, number(median, 1))
        followed = ""
        if later:
            followed = _num_cell(start, number(start, 0)) if start > 0 else _num_cell(0, "joining")
        events = int(curve.events.sum())
        rows.append(
            f'<tr data-cohort="{_e(_cohort_name(key))}">'
            f'<th scope="row">{_e(_cohort_name(key))}</th>'
            f"{_num_cell(curve.members, number(curve.members))}{_num_cell(events, number(events))}"
            f"{followed}{middle}{cells}</tr>"
        )
    columns = 4 + len(SURVIVAL_AT) + int(later)
    if not rows:
        rows.append(f'<tr><td colspan="{columns}" class="empty">no cohort</td></tr>')
    note = (
        "Members counted, how many left, the median months of membership (the time by which "
        "half have left) and the share still a member after one, two and five years; – where "
        "the data do not reach."
    )
    if later:
        note += (
            " A cohort followed only from some months of membership on (it joined before the "
            "register is complete) has no such figures: its curve starts there."
        )
    return (
        f'<table id="retention-table-{_e(dimension)}" class="retention-table">'
        f'<caption>Retention by {_e(label)}<span class="note">{_e(note)}</span></caption>'
        f'<thead><tr><th scope="col">{_e(label)}</th><th scope="col" class="num">members</th>'
        '<th scope="col" class="num">left</th>'
        + ('<th scope="col" class="num">followed from month</th>' if later else "")
        + '<th scope="col" class="num">median months</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _retention_section(data: ReportData) -> str:
    parts = [
        '<section id="retention" aria-labelledby="retention-title">',
        '<h2 id="retention-title">Retention curves</h2>',
        "<p>How long members stay, by cohort (Kaplan-Meier estimates: members who have not "
        "left count for as long as they have been members).</p>",
    ]
    if data.observed_from is not None:
        parts.append(
            f"<p>The register holds every member since {data.observed_from.isoformat()}; "
            "members who joined before are followed from the tenure they had then, so a join "
            "cohort's curve starts there: of those still members then, the share still a "
            "member later.</p>"
        )
    if not data.curves:
        parts.append('<p class="empty" id="retention-empty">No retention curves this run.</p>')
    for dimension, curves in data.curves.items():
        label = COHORT_LABELS.get(dimension, dimension)
        parts.append(f'<h3 id="retention-{_e(dimension)}">By {_e(label)}</h3>')
        plot = retention_plot(dimension, curves, observed_from=data.observed_from)
        parts.append(f"<figure>{plot}</figure>")
        parts.append(_retention_table(dimension, curves, data.observed_from))
    parts.append("</section>")
    return "".join(parts)


def _value_section(data: ReportData) -> str:
    parts = [
        '<section id="value" aria-labelledby="value-title">',
        '<h2 id="value-title">Lifetime value</h2>',
    ]
    if not data.values:
        parts.append('<p class="empty" id="value-empty">No lifetime values this run.</p>')
        parts.append("</section>")
        return "".join(parts)
    groups: dict[str, list[ValueSummary]] = {}
    for summary in data.values:
        groups.setdefault(summary.dimension, []).append(summary)
    body = []
    for dimension, summaries in groups.items():
        if dimension != "all":
            label = COHORT_LABELS.get(dimension, dimension)
            body.append(f'<tr><th colspan="7" scope="colgroup">By {_e(label)}</th></tr>')
        for s in summaries:
            body.append(
                f'<tr data-dimension="{_e(dimension)}" data-cohort="{_e(s.cohort)}">'
                f'<th scope="row">{_e(s.cohort)}</th>'
                f"{_num_cell(s.members, number(s.members))}{_num_cell(s.mean, kronor(s.mean))}"
                f"{_num_cell(s.median, kronor(s.median))}{_num_cell(s.q1, kronor(s.q1))}"
                f"{_num_cell(s.q3, kronor(s.q3))}"
                f"{_num_cell(s.mean_months, number(s.mean_months, 1))}</tr>"
            )
    parts.append(
        '<table id="value-table"><caption>Expected lifetime value of active members'
        f'<span class="note">Expected further months of membership within the next '
        f"{data.value_horizon_months} months (from the retention curve) times the monthly fee, "
        "in kronor: mean, median and quartiles.</span></caption>"
        '<thead><tr><th scope="col">cohort</th><th scope="col" class="num">members</th>'
        '<th scope="col" class="num">mean</th><th scope="col" class="num">median</th>'
        '<th scope="col" class="num">lower quartile</th>'
        '<th scope="col" class="num">upper quartile</th>'
        '<th scope="col" class="num">mean months left</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
    parts.append("</section>")
    return "".join(parts)


def _reasons_section(data: ReportData) -> str:
    kept, rest = _reason_series(data.reasons)
    columns = [*kept, *(["(the rest)"] if rest else [])]
    parts = [
        '<section id="reasons" aria-labelledby="reasons-title">',
        '<h2 id="reasons-title">Leaving reasons</h2>',
        f"<p>The members who left in the last {data.reason_months} months, by the reason chosen "
        "when they left (their own words are not shown here)"
        + (
            f", from {add_months(data.today, -data.reason_months).isoformat()} to "
            f"{data.today.isoformat()}: the first and the last month are counted in part"
            if data.today.day > 1
            else ""
        )
        + ".</p>",
        f"<figure>{reasons_plot(data.reasons)}</figure>",
    ]
    rows = []
    for month, counts in data.reasons.items():
        cells = [counts.get(r, 0) for r in kept]
        if rest:
            cells.append(sum(n for r, n in counts.items() if r not in kept))
        rows.append(
            f'<tr data-month="{_e(month)}"><th scope="row">{_e(month)}</th>'
            + "".join(_num_cell(n, number(n)) for n in cells)
            + f"{_num_cell(sum(counts.values()), number(sum(counts.values())))}</tr>"
        )
    totals = Counter[str]()
    for counts in data.reasons.values():
        totals.update(counts)
    foot = [totals[r] for r in kept]
    if rest:
        foot.append(sum(totals[r] for r in rest))
    head = "".join(f'<th scope="col" class="num">{_e(r)}</th>' for r in columns)
    if not rows:
        rows.append(f'<tr><td colspan="{len(columns) + 2}" class="empty">no leaver</td></tr>')
    parts.append(
        '<table id="reasons-table"><caption>Leavers by month and reason'
        + (
            f'<span class="note">“(the rest)” sums the {len(rest)} rarer reasons: '
            f"{_e(', '.join(rest))}.</span>"
            if rest
            else ""
        )
        + f'</caption><thead><tr><th scope="col">month</th>{head}'
        '<th scope="col" class="num">all</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody>"
        '<tfoot><tr data-month="all"><th scope="row">all</th>'
        + "".join(_num_cell(n, number(n)) for n in foot)
        + f"{_num_cell(sum(totals.values()), number(sum(totals.values())))}</tr></tfoot></table>"
    )
    parts.append("</section>")
    return "".join(parts)


def _feature_text(name: str) -> str:
    """A theme feature in words: ``reason=x`` chose x, ``text=x`` wrote of x, ``word=w``."""
    kind, _, word = name.partition("=")
    if kind == "reason" and word:
        return f"chose {word}"
    if kind == "text" and word:
        return f"wrote of {word}"
    if kind == "word" and word:
        return f"used the word “{word}”"
    return name


def _theme_order(theme: ThemeSummary) -> tuple[float, int, str]:
    return (theme.priority if theme.priority is not None else math.inf, -theme.size, theme.id)


def _themes_section(data: ReportData) -> str:
    parts = [
        '<section id="themes" aria-labelledby="themes-title">',
        '<h2 id="themes-title">Winback themes</h2>',
    ]
    if not data.themes:
        parts.append(
            f'<p class="empty" id="themes-empty">No themes this run: '
            f"{_e(_sentence(data.no_themes_reason or 'none were found'))}</p></section>"
        )
        return "".join(parts)
    parts.append(
        f"<p>What the {number(data.theme_leavers)} members who left in the last "
        f"{data.reason_months} months have in common, found by cluster analysis. Name a theme "
        "and give it a priority in <code>retention.yaml</code> (<code>themes.named</code>, by "
        "its id); first priority first.</p>"
    )
    rows = []
    for t in sorted(data.themes, key=_theme_order):
        apart = "".join(
            f'<li><span class="feature">{_e(_feature_text(name))}</span> '
            f'<span class="num">{_e(signed(smd, 2))}</span></li>'
            for name, smd in t.top_features
        )
        doing = ", ".join(f"{_feature_text(n)} {signed(v, 2)}" for n, v in t.behaviour)
        choices = ", ".join(f"{r} {number(n)}" for r, n in t.reasons)
        aside = _e(t.id) if t.name else "(not named)"
        shown = (
            f'<span class="theme-name">{_e(t.name or t.id)}</span> '
            f'<span class="muted">{aside}</span>'
        )
        value = (
            _num_cell(t.mean_value, kronor(t.mean_value))
            if t.mean_value is not None
            else '<td class="num muted" data-value="">–</td>'
        )
        rows.append(
            f'<tr class="theme" data-theme="{_e(t.id)}"><th scope="row">{shown}</th>'
            f'<td class="num">{_e("–" if t.priority is None else number(t.priority))}</td>'
            f"{_num_cell(t.size, number(t.size))}{_num_cell(t.share, percent(t.share))}{value}"
            f'<td><ul class="plain">{apart}</ul>'
            + (f'<p class="muted">Behaviour: {_e(doing)}</p>' if doing else "")
            + f"</td><td>{_e(choices) or '–'}</td>"
            f"<td>{_e(', '.join(t.words)) or '–'}</td></tr>"
        )
    parts.append(
        '<table id="themes-table"><caption>Themes'
        '<span class="note">Leavers in each theme, their share of all recent leavers, their '
        "mean lifetime value had they stayed, what sets them apart from the other leavers "
        "(standardised mean difference: + more often or higher in this theme), the choices "
        "they made and the words they used most.</span></caption>"
        '<thead><tr><th scope="col">theme</th><th scope="col" class="num">priority</th>'
        '<th scope="col" class="num">leavers</th><th scope="col" class="num">share</th>'
        '<th scope="col" class="num">mean value</th><th scope="col">what sets it apart</th>'
        '<th scope="col">reasons chosen</th><th scope="col">words used</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    parts.append("</section>")
    return "".join(parts)


def render(data: ReportData) -> str:
    """The report as one self-contained HTML page (inline CSS and SVG, no script, no URL)."""
    day = data.today.isoformat()
    contents = (
        ("churn", "Churn model"),
        ("retention", "Retention curves"),
        ("value", "Lifetime value"),
        ("reasons", "Leaving reasons"),
        ("themes", "Winback themes"),
    )
    toc = "".join(f'<li><a href="#{key}">{_e(name)}</a></li>' for key, name in contents)
    return "".join(
        [
            '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
            f"<title>Retention report {day} · dynamics-bridge</title>\n",
            f"<style>{_CSS}</style>\n</head>\n<body>\n",
            f'<header><h1 id="report-title">Retention report {day}</h1>',
            _headline(data),
            _counts(data),
            f'<nav class="contents" aria-label="Contents"><ol>{toc}</ol></nav></header>\n',
            '<main id="report">',
            _churn_section(data),
            _retention_section(data),
            _value_section(data),
            _reasons_section(data),
            _themes_section(data),
            "</main>\n",
            f"<footer><p>Made by <code>dynamics-bridge retention report</code> on {day}. "
            "Numbers are written the Swedish way: a decimal comma and a space between "
            "thousands. Leaving reasons are shown as the choices made, never as a member's own "
            "words.</p></footer>\n</body>\n</html>\n",
        ]
    )
