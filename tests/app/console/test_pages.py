"""Every console page renders the seeded day's figures (the same the status command prints)."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from dynamics_bridge.app.console import create_app
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.mapping.loader import MAPPINGS_DIR
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.settings import load_settings
from tests.app.console.conftest import START, TOKEN

SVG = "{http://www.w3.org/2000/svg}"


def cell(html: str, row_attr: str, col_attr: str) -> str:
    """The text of the cell ``col_attr`` in the row ``row_attr`` (e.g. data-source="bgmax")."""
    row = re.search(rf"<tr[^>]*{re.escape(row_attr)}[^>]*>(.*?)</tr>", html, re.S)
    assert row, f"no row {row_attr}"
    found = re.search(rf"<td[^>]*{re.escape(col_attr)}[^>]*>(.*?)</td>", row.group(1), re.S)
    assert found, f"no cell {col_attr} in row {row_attr}"
    return found.group(1).strip()


def section(html: str, element_id: str) -> str:
    """The element with this id, up to its tag's first closing tag (no nesting in our pages)."""
    found = re.search(rf'<(\w+)[^>]*\bid="{re.escape(element_id)}"', html)
    assert found, f"no element {element_id}"
    end = html.index(f"</{found.group(1)}>", found.start())
    return html[found.start() : end]


def svg(html: str, chart_id: str) -> ET.Element:
    found = re.search(rf'<svg[^>]*id="{chart_id}".*?</svg>', html, re.S)
    assert found, f"no chart {chart_id}"
    return ET.fromstring(found.group(0))


def bar_values(chart: ET.Element) -> dict[tuple[str, str], str]:
    return {
        (b.get("data-label", ""), b.get("data-series", "")): b.get("data-value", "")
        for b in chart.iter(f"{SVG}rect")
        if b.get("class") == "chart-bar"
    }


def test_the_overview_shows_today_by_source_and_outcome(client: TestClient) -> None:
    html = client.get("/").text
    today = section(html, "today-outcomes")
    assert cell(today, 'data-source="bgmax"', 'data-outcome="applied"') == "5"
    assert cell(today, 'data-source="bgmax"', 'data-outcome="poisoned"') == "2"
    assert cell(today, 'data-source="bgmax"', 'data-outcome="queued"') == "7"  # the file
    assert cell(today, 'data-source="swish"', 'data-outcome="duplicate"') == "1"
    assert cell(today, 'data-source="all"', 'data-outcome="applied"') == "8"
    assert 'data-source="autogiro"' not in today  # three days ago


def test_the_overview_sums_the_last_seven_days_only(client: TestClient) -> None:
    week = section(client.get("/").text, "week-outcomes")
    assert cell(week, 'data-source="autogiro"', 'data-outcome="applied"') == "4"  # not the 40
    assert cell(week, 'data-source="autogiro"', 'data-outcome="failed"') == "1"
    assert cell(week, 'data-source="all"', 'data-outcome="applied"') == "12"


def test_the_overview_shows_poison_queue_files_timers_and_health(client: TestClient) -> None:
    html = client.get("/").text
    assert re.search(r'id="poison-total"[^>]*data-count="3"', html)
    assert re.search(r'id="poison-today"[^>]*data-count="1"', html)
    trend = bar_values(svg(html, "poison-trend-chart"))
    assert sorted(trend.values()) == ["1", "1", "1"]  # today, two and five days ago
    assert re.search(r'id="queue-messages"[^>]*>3<', html)
    files = section(html, "files-table")
    assert "BGMAX.D261203.txt" in files
    assert "7 payments, 1 750.00 SEK" in files
    assert re.search(r'id="timer-reminders"[^>]*data-state="red"', html)
    assert "APSIS answered 503" in section(html, "timer-reminders")
    assert re.search(r'id="timer-triggers"[^>]*data-state="ok"', html)
    assert re.search(r'id="timer-refresh"[^>]*data-state="never"', html)
    dataverse = section(html, "health-dataverse")
    assert 'data-state="red"' in dataverse
    assert "not configured" in dataverse
    assert re.search(r'id="health-queue"[^>]*data-state="ok"', html)
    assert re.search(r'id="health-apsis"[^>]*data-state="off"', html)


def test_the_overview_json_is_the_status_commands_data(client: TestClient) -> None:
    data = client.get("/overview.json").json()
    assert data["status"] == "red"  # Dataverse is not configured in these tests
    assert data["today"]["events_by_source"]["bgmax"]["applied"] == 5
    assert data["poison"]["total"] == 3
    assert data["timers"]["reminders"]["errors"] == ["TransientError: APSIS answered 503"]
    assert data["files"][0]["detail"]["file"] == "BGMAX.D261203.txt"


@pytest.mark.parametrize("days", [30, 90])
def test_history_charts_events_per_day_by_outcome(client: TestClient, days: int) -> None:
    html = client.get(f"/history?days={days}").text
    bars = bar_values(svg(html, "history-chart"))
    today = START.strftime("%m-%d")
    assert bars[(today, "applied")] == "8"
    assert bars[(today, "poisoned")] == "2"
    label = (START - timedelta(days=20)).strftime("%m-%d")
    assert bars[(label, "applied")] == "40"
    assert cell(html, 'data-day="all"', 'data-outcome="applied"') == "52"
    assert len(re.findall(r'<tr data-day="\d{4}', html)) == days


def test_history_refuses_an_odd_range(client: TestClient) -> None:
    answer = client.get("/history?days=5")
    assert answer.status_code == 400
    assert "days must be one of" in answer.text


def test_segments_show_sizes_over_time_and_the_last_real_push(client: TestClient) -> None:
    html = client.get("/segments").text
    points = {
        (p.get("data-label"), p.get("data-series")): p.get("data-value")
        for p in svg(html, "segments-chart").iter(f"{SVG}circle")
    }
    today = START.strftime("%m-%d")
    assert points[(today, "late-payers")] == "12"  # the dry run's 99 is not a size
    assert points[(today, "new-members")] == "5"
    yesterday = (START - timedelta(days=1)).strftime("%m-%d")
    assert points[(yesterday, "late-payers")] == "10"  # no push that day: the size stays
    before = (START - timedelta(days=3)).strftime("%m-%d")
    assert (before, "late-payers") not in points  # before the first push known: no size
    assert (yesterday, "new-members") not in points
    push = section(html, "last-push-table")
    row = re.search(r'data-segment="late-payers".*?</tr>', push, re.S)
    assert row
    assert re.search(r'class="added">3<', row.group(0))
    assert re.search(r'class="removed">1<', row.group(0))


def test_triggers_show_sent_skipped_failed_by_type_per_day(client: TestClient) -> None:
    html = client.get("/triggers").text
    bars = bar_values(svg(html, "triggers-chart"))
    today = START.strftime("%m-%d")
    assert (bars[(today, "sent")], bars[(today, "skipped")], bars[(today, "failed")]) == (
        "3",
        "1",
        "1",
    )
    day = START.date().isoformat()
    assert cell(html, f'data-day="{day}" data-type="welcome"', 'data-measure="sent"') == "3"
    assert cell(html, f'data-day="{day}" data-type="arrears"', 'data-measure="failed"') == "1"
    assert 'id="outbox-off"' in html  # no APSIS activation in these tests


def test_mapping_shows_what_check_finds_with_place_and_fix(client: TestClient) -> None:
    html = client.get("/mapping").text
    # These tests configure no Dataverse: check names the settings to set.
    assert re.search(r'id="mapping-state"[^>]*data-state="problems"', html)
    errors = section(html, "mapping-errors")
    assert "BRIDGE_DATAVERSE__URL" in errors
    assert "set it in the environment" in errors
    assert re.search(r'data-file="triggers.yaml" data-present="yes"', html)
    data = client.get("/mapping.json").json()
    assert data["ok"] is False
    assert any(e["where"] == "BRIDGE_DATAVERSE__URL" for e in data["errors"])


def test_a_broken_mapping_file_is_shown_with_its_place(tmp_path: Path) -> None:
    folder = tmp_path / "mappings"
    shutil.copytree(MAPPINGS_DIR, folder)
    text = (folder / "dataverse.yaml").read_text(encoding="utf-8")
    (folder / "dataverse.yaml").write_text(text.replace("member:", "membr:", 1), encoding="utf-8")
    services = Services(load_settings(mappings_dir=str(folder)), ops=InMemoryOpsStore())
    with TestClient(create_app(services, login_token=TOKEN), headers={"accept": "text/html"}) as c:
        c.get(f"/login?token={TOKEN}")
        html = c.get("/mapping").text
    rows = re.findall(r'<tr class="mapping-problem.*?</tr>', html, re.S)
    named = [r for r in rows if "dataverse.yaml" in r]
    assert named, "no finding names dataverse.yaml"
    assert 'data-area="mappings"' in named[0]


def test_every_page_has_the_navigation_and_the_signed_in_user(client: TestClient) -> None:
    for path in ("/", "/history", "/poison", "/segments", "/triggers", "/mapping"):
        html = client.get(path).text
        assert 'id="nav-poison"' in html, path
        assert 'id="user"' in html, path
        assert "Ada Admin" in html
        assert "http://" not in html.replace("http://www.w3.org/2000/svg", ""), path  # no CDN


def test_the_stylesheet_and_script_are_served_from_the_package(client: TestClient) -> None:
    assert client.get("/static/console.css").status_code == 200
    assert client.get("/static/console.js").status_code == 200


def test_a_fresh_console_has_no_data_charts_not_errors(services) -> None:
    from dynamics_bridge.app.console import create_app
    from dynamics_bridge.app.wiring import Services
    from dynamics_bridge.ops.memory import InMemoryOpsStore
    from dynamics_bridge.queue import InMemoryQueue

    empty = Services(services.settings, queue=InMemoryQueue("empty"), ops=InMemoryOpsStore())
    with TestClient(create_app(empty, login_token=TOKEN), headers={"accept": "text/html"}) as c:
        c.get(f"/login?token={TOKEN}")
        for path, chart in (
            ("/", "poison-trend-chart"),
            ("/history", "history-chart"),
            ("/segments", "segments-chart"),
            ("/triggers", "triggers-chart"),
        ):
            page = c.get(path)
            assert page.status_code == 200, path
            assert "chart-empty" in (svg(page.text, chart).get("class") or ""), path
