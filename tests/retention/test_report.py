"""The retention report from a small synthetic run: it shows the numbers the run computed,
one SVG per plot with a table beside it, says plainly when the model does not beat the
baseline, escapes what configuration and the register put in it, fetches nothing and shows no
member's own words."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import date
from html import escape
from html.parser import HTMLParser

import pytest

from dynamics_bridge.errors import InputError
from dynamics_bridge.mapping.retention import RetentionFile
from dynamics_bridge.retention.model import ChurnModel, train_churn
from dynamics_bridge.retention.report import (
    ReportData,
    ThemeSummary,
    build_report_data,
    followed_from,
    kronor,
    number,
    percent,
    reasons_by_month,
    render,
    retention_plot,
    signed,
)
from dynamics_bridge.retention.survival import (
    MONTH_DAYS,
    SurvivalCurve,
    cohort_curves,
    kaplan_meier,
    lifetime_values,
    survival_curve,
)
from dynamics_bridge.retention.synthetic import REASONS, SyntheticRegister, generate
from dynamics_bridge.retention.themes import ThemeModel, fit_themes

TODAY = date(2026, 11, 28)
SVG = "{http://www.w3.org/2000/svg}"
NBSP = "\u00a0"
COHORTS = ("join_year", "method", "member_type", "region")


@dataclasses.dataclass(frozen=True)
class Run:
    """What bench/retention.py computes, on 2,000 members."""

    register: SyntheticRegister
    model: ChurnModel
    curve: SurvivalCurve
    curves: dict[str, dict[str, SurvivalCurve]]
    themes: ThemeModel


def synthetic_run(members: int = 2_000, seed: int = 1) -> Run:
    register = generate(members, today=TODAY, seed=seed)
    model = train_churn(register.members, today=TODAY)
    curve = survival_curve(register.members, TODAY, register.observed_from)
    curves = {
        by: cohort_curves(register.members, by, TODAY, observed_from=register.observed_from)
        for by in COHORTS
    }
    themes = fit_themes(register.members, TODAY, curve=curve)
    return Run(register, model, curve, curves, themes)


def config(margin: float = 0.0, named: dict[str, dict[str, object]] | None = None) -> RetentionFile:
    return RetentionFile.model_validate(
        {
            "churn": {"risk_column": "mbr_churnrisk", "margin": margin},
            "themes": {"theme_column": "mbr_theme", "named": named or {}},
        }
    )


def report_data(run: Run, **overrides: object) -> ReportData:
    """The report's data as the orchestration builds it, from the run's pieces."""
    register = run.register
    arguments: dict[str, object] = {
        "today": TODAY,
        "config": config(named={"t1": {"name": "price", "priority": 2}}),
        "members": register.members,
        "observed_from": register.observed_from,
        "curve": run.curve,
        "curves": run.curves,
        "values": lifetime_values(register.members, TODAY, run.curve),
        "churn": run.model,
        "themes": run.themes,
        "counts": {"scored": 1_430, "high_risk": 57, "tasks_created": 12},
    }
    arguments.update(overrides)
    return build_report_data(**arguments)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def run() -> Run:
    return synthetic_run()


@pytest.fixture(scope="module")
def data(run: Run) -> ReportData:
    return report_data(run)


@pytest.fixture(scope="module")
def page(data: ReportData) -> str:
    return render(data)


# -- helpers ------------------------------------------------------------------------------------


def svgs(html: str) -> dict[str, ET.Element]:
    """Every SVG on the page by id, parsed as XML (so each is well formed)."""
    found = {}
    for text in re.findall(r"<svg\b.*?</svg>", html, re.S):
        element = ET.fromstring(text)
        found[element.get("id", "")] = element
    return found


def row(html: str, attribute: str) -> str:
    found = re.search(rf"<tr[^>]*{re.escape(attribute)}[^>]*>(.*?)</tr>", html, re.S)
    assert found, f"no row {attribute}"
    return found.group(1)


def cells(row_html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row_html)]


def three(value: float) -> str:
    """Three decimals, Swedish style, written out independently of the report's formatter."""
    return f"{value:.3f}".replace(".", ",")


class Tags(HTMLParser):
    """Start tags with their attributes, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


# -- the numbers --------------------------------------------------------------------------------


def test_the_page_shows_the_models_and_the_baselines_held_out_metrics(run: Run, page: str) -> None:
    evaluation = run.model.evaluation
    roc = cells(row(page, 'data-metric="roc_auc"'))
    assert roc[:2] == [three(evaluation.model.roc_auc), three(evaluation.baseline.roc_auc)]
    pr = cells(row(page, 'data-metric="pr_auc"'))
    assert pr[:2] == [three(evaluation.model.pr_auc), three(evaluation.baseline.pr_auc)]
    brier = cells(row(page, 'data-metric="brier"'))
    assert brier[0] == f"{evaluation.model.brier:.4f}".replace(".", ",")
    assert brier[1] == f"{evaluation.baseline.brier:.4f}".replace(".", ",")
    assert brier[3] == (
        "model" if evaluation.model.brier < evaluation.baseline.brier else "baseline"
    )
    members = f"{evaluation.model.members:,}".replace(",", NBSP)
    assert f"on the {members} members active on {evaluation.split.isoformat()}" in page


def test_a_model_that_beats_the_baseline_is_said_to_be_used(run: Run, page: str) -> None:
    assert run.model.beats_baseline()  # 2,000 members are enough on this register
    headline = re.search(r'<p id="headline"[^>]*>(.*?)</p>', page, re.S)
    assert headline
    assert 'data-model="used"' in page
    assert "The churn model is used: it beats the baseline." in headline.group(1)
    assert "does not beat" not in page


def test_a_model_that_does_not_beat_the_baseline_by_the_margin_is_said_so_first(
    run: Run,
) -> None:
    data = report_data(run, config=config(margin=0.5))  # no model beats AUC by 0.5
    assert not data.model_used
    html = render(data)
    headline = re.search(r'<p id="headline" class="headline not-used"[^>]*>(.*?)</p>', html, re.S)
    assert headline
    assert "<strong>The churn model is not used: it does not beat the baseline" in headline.group(1)
    assert "required margin of 0,50" in headline.group(1)
    assert html.index("does not beat the baseline") < html.index('id="metrics-table"')
    # The held-out figures are still there: the admin sees by how much it fell short.
    assert three(run.model.evaluation.model.roc_auc) in cells(row(html, 'data-metric="roc_auc"'))


def test_a_stored_model_that_was_not_used_is_reported_from_its_metadata(run: Run) -> None:
    """The orchestration keeps an unused model's metrics beside it, not the model at hand."""
    evaluation = run.model.evaluation
    meta = {
        "used": False,
        "why": "does not beat the baseline",
        "evaluation": evaluation.to_dict(),
        "weights": [[n, w] for n, w in run.model.weights()[:12]],
    }
    data = report_data(run, churn=None, churn_meta=meta)
    assert data.churn == evaluation
    assert not data.model_used
    assert len(data.weights) == 10
    html = render(data)
    assert "The churn model is not used: it does not beat the baseline." in html
    assert 'id="weights-table"' in html
    assert cells(row(html, 'data-metric="pr_auc"'))[0] == three(evaluation.model.pr_auc)


def test_without_a_model_the_headline_says_why(run: Run) -> None:
    data = report_data(
        run, churn=None, no_model_reason="only 12 member(s) left in the training period"
    )
    html = render(data)
    assert 'data-model="none"' in html
    assert "No churn model this run." in html
    assert "only 12 member(s) left in the training period." in html
    assert 'id="metrics-table"' not in html
    calibration = svgs(html)["calibration-plot"]
    assert "plot-empty" in (calibration.get("class") or "")


def test_the_calibration_plot_draws_every_bin_beside_its_table(run: Run, page: str) -> None:
    evaluation = run.model.evaluation
    plot = svgs(page)["calibration-plot"]
    points = [e for e in plot.iter() if e.get("class") == "plot-point"]
    model = [p for p in points if p.get("data-series") == "model"]
    baseline = [p for p in points if p.get("data-series") == "baseline"]
    assert [float(p.get("data-predicted", "")) for p in model] == [
        b.predicted for b in evaluation.model.calibration
    ]
    assert [int(p.get("data-members", "")) for p in baseline] == [
        b.members for b in evaluation.baseline.calibration
    ]
    assert len(list(plot.iter(f"{SVG}line"))) > 0
    diagonal = [e for e in plot.iter(f"{SVG}line") if e.get("class") == "plot-diagonal"]
    assert len(diagonal) == 1
    table = re.search(r'<table id="calibration-table".*?</table>', page, re.S)
    assert table
    first = evaluation.model.calibration[0]
    assert cells(row(table.group(0), 'data-series="model"'))[1:] == [
        number(first.members),
        percent(first.predicted, 1),
        percent(first.observed, 1),
    ]


def test_the_weights_table_lists_the_largest_weights_first(run: Run, page: str) -> None:
    name, weight = run.model.weights()[0]
    first = cells(row(page, f'data-feature="{name}"'))
    assert first[0] == signed(weight, 2)
    assert first[1] == ("raises the risk" if weight > 0 else "lowers the risk")


def test_each_plot_is_one_svg_and_each_has_a_table_beside_it(data: ReportData, page: str) -> None:
    drawn = svgs(page)
    expected = {"calibration-plot", "reasons-plot"} | {f"retention-plot-{d}" for d in COHORTS}
    assert set(drawn) == expected
    assert page.count("<svg") == len(expected)
    for plot_id, element in drawn.items():
        assert element.get("role") == "img", plot_id
        assert element.find(f"{SVG}title") is not None, plot_id
    for table in ("metrics-table", "calibration-table", "reasons-table", "value-table"):
        assert f'<table id="{table}"' in page
    for dimension in COHORTS:
        assert f'<table id="retention-table-{dimension}"' in page


def test_the_retention_curves_are_step_lines_with_a_legend(run: Run, page: str) -> None:
    plot = svgs(page)["retention-plot-method"]
    curves = {
        g.get("data-series", ""): g for g in plot.iter(f"{SVG}g") if g.get("class") == "plot-curve"
    }
    assert set(curves) == set(run.curves["method"])  # four methods: every one is drawn
    for method, g in curves.items():
        assert int(g.get("data-members", "")) == run.curves["method"][method].members
        path = g.find(f"{SVG}path")
        assert path is not None
        assert re.fullmatch(r"M[\d.]+,[\d.]+( H[\d.]+V[\d.]+)+", path.get("d", ""))
    legend = [
        g.get("data-series") for g in plot.iter(f"{SVG}g") if g.get("class") == "plot-legend-item"
    ]
    assert legend == list(curves)
    table = re.search(r'<table id="retention-table-method".*?</table>', page, re.S)
    assert table
    autogiro = run.curves["method"]["autogiro"]
    found = cells(row(table.group(0), 'data-cohort="autogiro"'))
    assert found[:2] == [number(autogiro.members), number(int(autogiro.events.sum()))]
    assert found[3] == percent(float(autogiro.at(12)))


def test_join_cohorts_that_joined_before_the_register_is_complete_start_later(
    run: Run, page: str
) -> None:
    observed_from = run.register.observed_from
    assert followed_from("join_year", "2015", observed_from) == pytest.approx(
        (observed_from - date(2016, 1, 1)).days / MONTH_DAYS
    )
    assert followed_from("join_year", "2025", observed_from) == 0.0
    assert followed_from("method", "invoice", observed_from) == 0.0
    plot = svgs(page)["retention-plot-join_year"]
    drawn = {
        g.get("data-series", ""): float(g.get("data-from", ""))
        for g in plot.iter(f"{SVG}g")
        if g.get("class") == "plot-curve"
    }
    assert len(drawn) == 8  # the latest eight join years
    assert max(drawn) == "2026"
    assert drawn["2026"] == 0.0
    assert drawn[min(drawn)] > 12
    # Their "after 1 year" is not known (the early leavers of those years are not in the data).
    old = cells(row(page, 'data-cohort="2015"'))
    assert old[-3:] == ["–", "–", "–"]


def test_the_lifetime_value_table_summarises_every_active_member(
    run: Run, data: ReportData
) -> None:
    values = lifetime_values(run.register.members, TODAY, run.curve)
    everyone = data.values[0]
    assert (everyone.dimension, everyone.members) == ("all", len(values))
    assert everyone.mean == pytest.approx(sum(v.value for v in values) / len(values))
    by_method = [v for v in data.values if v.dimension == "method"]
    assert {v.cohort for v in by_method} == set(run.curves["method"])
    assert sum(v.members for v in by_method) == len(values)
    html = render(data)
    shown = cells(row(html, 'data-dimension="all"'))
    assert shown[:2] == [number(len(values)), kronor(everyone.mean)]


def test_leaving_reasons_are_counted_by_their_choice_per_month(run: Run, page: str) -> None:
    counted = reasons_by_month(run.register.members, TODAY, 12)
    assert next(iter(counted)) == "2025-11"
    assert list(counted)[-1] == "2026-11"
    assert len(counted) == 13
    leavers = [
        m for m in run.register.members if m.ended_on and date(2025, 11, 28) <= m.ended_on < TODAY
    ]
    assert sum(sum(c.values()) for c in counted.values()) == len(leavers)
    words = {w for c in counted.values() for w in c}
    assert words <= {*REASONS.values(), "other", "(none)"}
    plot = svgs(page)["reasons-plot"]
    bars = [e for e in plot.iter(f"{SVG}rect") if e.get("class") == "chart-bar"]
    assert sum(int(b.get("data-value", "")) for b in bars) == len(leavers)
    assert cells(row(page, 'data-month="all"'))[-1] == number(len(leavers))


def test_themes_show_the_admins_names_and_priorities_first(run: Run, page: str) -> None:
    table = re.search(r'<table id="themes-table".*?</table>', page, re.S)
    assert table
    rows = re.findall(r'<tr class="theme" data-theme="(t\d+)"', table.group(0))
    assert rows[0] == "t1"  # named, priority 2: before every unnamed theme
    assert sorted(rows) == sorted(t.id for t in run.themes.themes)
    first = row(table.group(0), 'data-theme="t1"')
    assert '<span class="theme-name">price</span>' in first
    theme = run.themes.themes[0]
    assert cells(first)[:3] == ["2", number(theme.size), percent(theme.share)]
    assert ", ".join(theme.words) in first  # the theme's vocabulary, not a member's text
    unnamed = row(table.group(0), 'data-theme="t2"')
    assert "(not named)" in unnamed


# -- safety -------------------------------------------------------------------------------------


def test_a_theme_name_or_a_cohort_word_with_markup_is_escaped(data: ReportData) -> None:
    hostile = "<script>alert('theme')</script>"
    region = '<img src=x onerror="alert(1)">'
    themes = (dataclasses.replace(data.themes[0], name=hostile), *data.themes[1:])
    curves = dict(data.curves)
    regions = dict(curves["region"])
    regions[region] = regions.pop(next(iter(regions)))
    curves["region"] = regions
    html = render(dataclasses.replace(data, themes=themes, curves=curves))
    assert "<script" not in html
    assert "<img" not in html
    assert escape(hostile) in html
    assert escape(region) in html
    assert svgs(html)["retention-plot-region"] is not None  # still well-formed XML


def test_the_page_fetches_nothing_and_runs_nothing(page: str) -> None:
    without_namespace = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"https?:|//[a-z]|url\(|@import", without_namespace, re.I)
    for tag, attributes in tags(page):
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        assert "src" not in attributes
        assert not any(a.startswith("on") for a in attributes)
        href = attributes.get("href")
        assert href is None or href.startswith("#"), href


def test_no_member_s_own_words_appear(run: Run, page: str) -> None:
    texts = {m.reason_text for m in run.register.members if m.reason_text}
    assert len(texts) > 20
    for text in texts:
        assert text not in page, text
        assert escape(text) not in page, text


def test_the_page_is_accessible_html(page: str) -> None:
    assert page.startswith('<!doctype html>\n<html lang="en">')
    assert re.search(r"<title>Retention report 2026-11-28 · dynamics-bridge</title>", page)
    assert page.count("<h1") == 1
    assert page.count("<table") == page.count("<caption>")
    ids = [a["id"] for _, a in tags(page) if a.get("id")]
    assert len(ids) == len(set(ids)), "ids are unique"
    for key in ("churn", "retention", "value", "reasons", "themes"):
        assert f'<a href="#{key}">' in page
        assert f'<section id="{key}"' in page


def test_numbers_are_written_the_swedish_way() -> None:
    assert number(0.6712, 2) == "0,67"
    assert number(1234567.891, 1) == f"1{NBSP}234{NBSP}567,9"
    assert number(-0.42, 2) == "\u22120,42"
    assert number(-0.0001, 2) == "0,00"  # no minus on a zero
    assert signed(0.137, 3) == "+0,137"
    assert signed(0.0, 2) == "0,00"
    assert percent(0.125, 1) == f"12,5{NBSP}%"
    assert kronor(16196.3) == f"16{NBSP}196{NBSP}kr"
    assert number(float("nan")) == "–"


# -- edge cases ---------------------------------------------------------------------------------


def test_a_report_of_nothing_still_renders_every_section_with_its_reason() -> None:
    html = render(ReportData(today=TODAY))
    drawn = svgs(html)
    assert set(drawn) == {"calibration-plot", "reasons-plot"}
    assert "plot-empty" in (drawn["calibration-plot"].get("class") or "")
    assert "chart-empty" in (drawn["reasons-plot"].get("class") or "")
    for empty in ("churn-empty", "retention-empty", "value-empty", "themes-empty"):
        assert f'id="{empty}"' in html
    assert 'data-count=""' in html
    assert "not run" in html


def test_build_report_data_computes_what_is_not_given(run: Run) -> None:
    register = run.register
    data = build_report_data(
        today=TODAY,
        members=register.members,
        observed_from=register.observed_from,
        themes=None,
        no_themes_reason="the leaving reason is empty for all 40 members",
    )
    assert list(data.curves) == list(COHORTS)
    assert data.curves["method"].keys() == run.curves["method"].keys()
    assert data.values[0].members == len(lifetime_values(register.members, TODAY, run.curve))
    assert data.churn is None
    assert data.no_model_reason == "no churn model was trained yet"
    assert (data.scored, data.high_risk, data.tasks) == (None, None, None)
    html = render(data)
    assert "No themes this run: the leaving reason is empty for all 40 members." in html


def test_the_register_as_arrays_is_no_substitute_for_the_records(run: Run) -> None:
    from dynamics_bridge.retention.features import HistoryArrays

    arrays = HistoryArrays.from_records(run.register.members)
    with pytest.raises(InputError, match="pass the arrays as arrays="):
        build_report_data(today=TODAY, members=arrays)  # type: ignore[arg-type]
    data = build_report_data(today=TODAY, members=run.register.members, arrays=arrays)
    assert data.curves["method"].keys() == run.curves["method"].keys()


def test_a_cohort_word_nobody_has_leaves_its_dimension_out(run: Run) -> None:
    members = [dataclasses.replace(m, region=None) for m in run.register.members[:600]]
    data = build_report_data(today=TODAY, members=members)
    assert "region" not in data.curves
    assert "method" in data.curves


def test_one_cohort_a_one_point_curve_and_a_curve_without_leavers_are_drawn() -> None:
    one_point = kaplan_meier([5.0, 9.0], [True, False])
    nobody_left = kaplan_meier([3.0, 4.0], [False, False])
    assert one_point.times.size == 1
    assert nobody_left.times.size == 0
    plot = ET.fromstring(retention_plot("method", {"invoice": one_point}))
    (curve,) = [g for g in plot.iter(f"{SVG}g") if g.get("class") == "plot-curve"]
    assert curve.get("data-series") == "invoice"
    path = curve.find(f"{SVG}path")
    assert path is not None
    assert path.get("d", "").count("H") == 1
    html = render(
        ReportData(today=TODAY, curves={"method": {"invoice": one_point, "card": nobody_left}})
    )
    card = cells(row(html, 'data-cohort="card"'))
    assert card[:3] == ["2", "0", "not reached"]
    drawn = svgs(html)["retention-plot-method"]
    assert len([g for g in drawn.iter(f"{SVG}g") if g.get("class") == "plot-curve"]) == 2


def test_a_theme_without_a_value_or_features_shows_dashes() -> None:
    theme = ThemeSummary("t7", None, None, size=3, share=1.0, mean_value=None)
    html = render(ReportData(today=TODAY, themes=(theme,), theme_leavers=3))
    found = cells(row(html, 'data-theme="t7"'))
    assert found[:4] == ["–", "3", f"100{NBSP}%", "–"]
