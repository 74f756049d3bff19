"""The console's charts: figures read back from the SVG, proportional bars, escaped text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from dynamics_bridge.ops.charts import Series, axis_ticks, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def bars(svg: str) -> list[ET.Element]:
    return [e for e in parse(svg).iter(f"{SVG}rect") if e.get("class") == "chart-bar"]


def test_bar_heights_are_proportional_to_the_values() -> None:
    svg = bar_chart(["mon", "tue", "wed"], [Series("applied", [10, 40, 25])], title="t")
    heights = {b.get("data-label"): float(b.get("height", "0")) for b in bars(svg)}
    assert heights["tue"] == pytest.approx(4 * heights["mon"])
    assert heights["wed"] == pytest.approx(2.5 * heights["mon"])


def test_stacked_bars_sit_on_each_other_and_keep_their_values() -> None:
    svg = bar_chart(
        ["d1"], [Series("applied", [30]), Series("failed", [10])], title="t", stacked=True
    )
    found = {b.get("data-series"): b for b in bars(svg)}
    applied, failed = found["applied"], found["failed"]
    assert (applied.get("data-value"), failed.get("data-value")) == ("30", "10")
    assert float(applied.get("height", "0")) == pytest.approx(3 * float(failed.get("height", "0")))
    # the second series starts where the first ends
    top_of_applied = float(applied.get("y", "0"))
    assert float(failed.get("y", "0")) + float(failed.get("height", "0")) == pytest.approx(
        top_of_applied
    )


def test_side_by_side_bars_do_not_overlap() -> None:
    svg = bar_chart(["d1"], [Series("a", [5]), Series("b", [5])], title="t", stacked=False)
    first, second = sorted(bars(svg), key=lambda b: float(b.get("x", "0")))
    assert (
        float(first.get("x", "0")) + float(first.get("width", "0"))
        <= float(second.get("x", "0")) + 1e-6
    )


def test_zero_values_draw_no_bar() -> None:
    svg = bar_chart(["a", "b"], [Series("s", [0, 3])], title="t")
    assert [b.get("data-label") for b in bars(svg)] == ["b"]


@pytest.mark.parametrize(
    ("labels", "series"),
    [([], [Series("s", [])]), (["a", "b"], []), (["a", "b"], [Series("s", [0, 0])])],
)
def test_no_data_gives_an_explicit_no_data_chart(labels: list[str], series: list[Series]) -> None:
    for svg in (
        bar_chart(labels, series, title="History", chart_id="c"),
        line_chart(labels, series, title="History", chart_id="c"),
    ):
        root = parse(svg)
        assert "chart-empty" in (root.get("class") or "")
        assert any(t.text == "no data" for t in root.iter(f"{SVG}text"))
        assert not bars(svg)


def test_labels_and_names_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    for svg in (
        bar_chart([evil], [Series(evil, [1])], title=evil, chart_id='x"y'),
        line_chart([evil], [Series(evil, [1])], title=evil),
    ):
        assert "<script>" not in svg
        root = parse(svg)  # still well-formed
        texts = [t.text for t in root.iter(f"{SVG}text")]
        assert evil in texts  # shown as text, not markup


def test_a_chart_has_axes_labels_and_a_legend() -> None:
    svg = bar_chart(
        ["2026-12-01", "2026-12-02"],
        [Series("applied", [3, 7]), Series("poisoned", [1, 0])],
        title="Events",
        chart_id="history-chart",
    )
    root = parse(svg)
    assert root.get("id") == "history-chart"
    groups = {g.get("class") for g in root.iter(f"{SVG}g")}
    assert {"chart-axis chart-axis-y", "chart-axis chart-axis-x", "chart-legend"} <= groups
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"2026-12-01", "2026-12-02", "applied", "poisoned", "Events"} <= set(texts)
    assert "8" in texts  # the y axis tops out at a round step (8) above the tallest stack (7)


def test_line_points_carry_their_values_and_rise_with_them() -> None:
    svg = line_chart(["a", "b", "c"], [Series("members", [100, 200, 50])], title="t")
    points = [e for e in parse(svg).iter(f"{SVG}circle")]
    assert [p.get("data-value") for p in points] == ["100", "200", "50"]
    ys = [float(p.get("cy", "0")) for p in points]
    assert ys[1] < ys[0] < ys[2]  # SVG's y grows downwards


def test_many_labels_are_thinned_on_the_axis_but_every_bar_is_drawn() -> None:
    labels = [f"d{i}" for i in range(90)]
    svg = bar_chart(labels, [Series("s", [1] * 90)], title="t")
    groups = parse(svg).iter(f"{SVG}g")
    axis = next(g for g in groups if g.get("class") == "chart-axis chart-axis-x")
    assert len(list(axis.iter(f"{SVG}text"))) <= 16
    assert len(bars(svg)) == 90


@pytest.mark.parametrize(
    ("peak", "integer", "ticks"),
    [
        (1, True, [0, 1]),
        (3, True, [0, 1, 2, 3]),
        (8, True, [0, 2, 4, 6, 8]),
        (11, True, [0, 5, 10, 15]),
        (50, True, [0, 10, 20, 30, 40, 50]),
        (240, True, [0, 50, 100, 150, 200, 250]),
        (0.3, False, [0, 0.1, 0.2, 0.3]),
        (0, True, [0, 1]),
    ],
)
def test_the_axis_steps_are_round_and_reach_the_peak(
    peak: float, integer: bool, ticks: list[float]
) -> None:
    assert axis_ticks(peak, integer=integer) == pytest.approx(ticks)


def test_a_missing_value_breaks_the_line_and_draws_no_point() -> None:
    svg = line_chart(["a", "b", "c", "d"], [Series("size", [None, 4, None, 6])], title="t")
    root = parse(svg)
    assert [p.get("data-label") for p in root.iter(f"{SVG}circle")] == ["b", "d"]
    assert len(list(root.iter(f"{SVG}polyline"))) == 2  # b alone, d alone: no line across c
