"""Charts as inline SVG text, drawn on the server (pure: no I/O, no chart library).

The console runs where unions lock the network down: no CDN, no script library. A chart is a
string of SVG the page embeds; every text in it is escaped. Each bar and point carries
``data-series``, ``data-label`` and ``data-value`` so tests (and browser tests) can read the
figures back without parsing geometry.

- :func:`bar_chart`: bars per label, one series, several stacked, or several side by side;
- :func:`line_chart`: one line per series over the labels.

No data (no labels, or every value zero or absent) gives an explicit "no data" chart, never an
empty frame that looks like a broken page.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["PALETTE", "Series", "axis_ticks", "bar_chart", "line_chart"]

#: Colour-blind-safe (Okabe-Ito), in series order; repeats after eight series.
PALETTE = (
    "#0072b2",
    "#e69f00",
    "#009e73",
    "#d55e00",
    "#cc79a7",
    "#56b4e9",
    "#f0e442",
    "#000000",
)

# The plot's margins: left for the y labels, bottom for the x labels, right for the legend.
_LEFT, _TOP, _BOTTOM, _LEGEND = 48, 28, 40, 150


@dataclass(frozen=True, slots=True)
class Series:
    """One named row of values, one per label (missing values count as zero)."""

    name: str
    #: None: no value there (a line breaks; a bar is not drawn)
    values: Sequence[float | None]
    #: a fixed colour (outcomes keep theirs across charts); the palette's next one when None
    color: str | None = None

    def at(self, index: int) -> float:
        return float(self.known(index) or 0.0)

    def known(self, index: int) -> float | None:
        value = self.values[index] if index < len(self.values) else None
        return None if value is None else float(value)


def axis_ticks(peak: float, *, integer: bool) -> list[float]:
    """The y axis's ticks from 0: a step of 1, 2 or 5 × 10^n giving at most five intervals
    (whole steps for whole-number data), the top at or above ``peak``."""
    if peak <= 0:
        return [0.0, 1.0]
    rough = peak / 5
    exponent = math.floor(math.log10(rough))
    step = next(
        m * 10.0**e
        for e in (exponent, exponent + 1)
        for m in (1.0, 2.0, 5.0)
        if m * 10.0**e >= rough - 1e-12
    )
    if integer:
        step = max(step, 1.0)
    count = max(1, math.ceil(peak / step - 1e-9))
    return [step * i for i in range(count + 1)]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _color(series: Series, index: int) -> str:
    return series.color or PALETTE[index % len(PALETTE)]


def _frame(chart_id: str, title: str, width: int, height: int, kind: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" '
        f'id="{escape(chart_id)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text class="chart-title" x="{_LEFT}" y="16" font-size="13" '
        f'font-weight="bold">{escape(title)}</text>',
    ]


def _no_data(chart_id: str, title: str, width: int, height: int, kind: str) -> str:
    parts = _frame(chart_id, title, width, height, kind)
    parts[0] = parts[0].replace('class="chart ', 'class="chart chart-empty ', 1)
    parts.append(
        f'<text class="chart-no-data" x="{width / 2:.1f}" y="{height / 2:.1f}" '
        'text-anchor="middle" font-size="14" fill="#666">no data</text></svg>'
    )
    return "".join(parts)


def _whole(series: Sequence[Series], n: int) -> bool:
    return all(float(s.at(i)).is_integer() for s in series for i in range(n))


def _empty(labels: Sequence[str], series: Sequence[Series]) -> bool:
    return not labels or not series or all(s.at(i) == 0 for s in series for i in range(len(labels)))


def _axes(
    ticks: Sequence[float], width: int, height: int, labels: Sequence[str], legend: int
) -> list[str]:
    """The y axis with its ticks and grid lines, the x axis with at most ~12 labels (counted
    back from the last, so the newest day is always named)."""
    top_value = ticks[-1]
    plot_w, plot_h = width - _LEFT - legend, height - _TOP - _BOTTOM
    bottom = _TOP + plot_h
    parts = [
        '<g class="chart-axis chart-axis-y" font-size="11" fill="#444">',
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#888"/>',
    ]
    for value in ticks:
        y = bottom - plot_h * value / top_value
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" stroke="#e5e5e5"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>'
        )
    parts.append("</g>")
    parts.append('<g class="chart-axis chart-axis-x" font-size="11" fill="#444">')
    parts.append(
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{_LEFT + plot_w}" y2="{bottom}" stroke="#888"/>'
    )
    step = max(1, math.ceil(len(labels) / 12))
    slot = plot_w / max(len(labels), 1)
    for i, label in enumerate(labels):
        if (len(labels) - 1 - i) % step:
            continue
        x = _LEFT + slot * (i + 0.5)
        parts.append(
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</g>")
    return parts


def _legend(series: Sequence[Series], width: int, legend: int) -> list[str]:
    if not legend:
        return []
    x = width - legend + 12
    parts = ['<g class="chart-legend" font-size="11">']
    for i, s in enumerate(series):
        y = _TOP + 16 * i
        parts.append(
            f'<g class="chart-legend-item" data-series="{escape(s.name)}">'
            f'<rect x="{x}" y="{y}" width="10" height="10" fill="{escape(_color(s, i))}"/>'
            f'<text x="{x + 16}" y="{y + 9}">{escape(s.name)}</text></g>'
        )
    parts.append("</g>")
    return parts


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    chart_id: str = "chart",
    stacked: bool = True,
    width: int = 760,
    height: int = 280,
    legend: bool = True,
) -> str:
    """Bars per label: several series stacked (``stacked``) or side by side; SVG text.
    ``legend=False`` leaves the legend out (one series its title names)."""
    if _empty(labels, series):
        return _no_data(chart_id, title, width, height, "bar")
    n = len(labels)
    if stacked:
        peak = max(sum(max(s.at(i), 0.0) for s in series) for i in range(n))
    else:
        peak = max(s.at(i) for s in series for i in range(n))
    ticks = axis_ticks(peak, integer=_whole(series, n))
    top_value = ticks[-1]
    room = _LEGEND if legend else 12
    plot_w, plot_h = width - _LEFT - room, height - _TOP - _BOTTOM
    bottom = _TOP + plot_h
    slot = plot_w / n
    bar_w = slot * 0.7
    parts = _frame(chart_id, title, width, height, "bar")
    parts += _axes(ticks, width, height, labels, room)
    parts.append('<g class="chart-bars">')
    for i, label in enumerate(labels):
        x0 = _LEFT + slot * i + (slot - bar_w) / 2
        base = float(bottom)
        for k, s in enumerate(series):
            value = max(s.at(i), 0.0)
            if value == 0:
                continue
            h = plot_h * value / top_value
            if stacked:
                x, w, y = x0, bar_w, base - h
                base -= h
            else:
                w = bar_w / len(series)
                x, y = x0 + w * k, bottom - h
            parts.append(
                f'<rect class="chart-bar" x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" '
                f'height="{h:.2f}" fill="{escape(_color(s, k))}" '
                f'data-series="{escape(s.name)}" data-label="{escape(label)}" '
                f'data-value="{_fmt(value)}"><title>{escape(label)} · {escape(s.name)}: '
                f"{_fmt(value)}</title></rect>"
            )
    parts.append("</g>")
    parts += _legend(series, width, room if legend else 0)
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    chart_id: str = "chart",
    width: int = 760,
    height: int = 280,
) -> str:
    """One line per series over the labels, a dot on each value; SVG text."""
    if _empty(labels, series):
        return _no_data(chart_id, title, width, height, "line")
    n = len(labels)
    ticks = axis_ticks(max(s.at(i) for s in series for i in range(n)), integer=_whole(series, n))
    top_value = ticks[-1]
    plot_w, plot_h = width - _LEFT - _LEGEND, height - _TOP - _BOTTOM
    bottom = _TOP + plot_h
    slot = plot_w / n
    parts = _frame(chart_id, title, width, height, "line")
    parts += _axes(ticks, width, height, labels, _LEGEND)
    parts.append('<g class="chart-lines">')
    for k, s in enumerate(series):
        color = escape(_color(s, k))
        points = {
            i: (_LEFT + slot * (i + 0.5), bottom - plot_h * max(s.at(i), 0.0) / top_value)
            for i in range(n)
            if s.known(i) is not None
        }
        parts.append(f'<g class="chart-line" data-series="{escape(s.name)}">')
        runs: list[list[tuple[float, float]]] = []
        for i in range(n):  # a gap (no value) breaks the line
            if i not in points:
                continue
            if i - 1 in points and runs:
                runs[-1].append(points[i])
            else:
                runs.append([points[i]])
        for run in runs:
            path = " ".join(f"{x:.2f},{y:.2f}" for x, y in run)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>'
            )
        for i, (x, y) in points.items():
            label = labels[i]
            parts.append(
                f'<circle class="chart-point" cx="{x:.2f}" cy="{y:.2f}" r="3" fill="{color}" '
                f'data-series="{escape(s.name)}" data-label="{escape(label)}" '
                f'data-value="{_fmt(s.at(i))}"><title>{escape(label)} · {escape(s.name)}: '
                f"{_fmt(s.at(i))}</title></circle>"
            )
        parts.append("</g>")
    parts.append("</g>")
    parts += _legend(series, width, _LEGEND)
    parts.append("</svg>")
    return "".join(parts)
