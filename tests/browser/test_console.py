"""The console in a real browser (headless Chromium) over a seeded day on the sandbox and
Azurite: sign-in, the overview's figures, a poison search by member number, a replay of what it
found, and the history chart."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from dynamics_bridge.app.console.web import create_app
from dynamics_bridge.ops.model import PoisonFilter, RunRecord
from tests.browser.conftest import Console
from tests.browser.driver import serve
from tests.browser.world import World

pytestmark = pytest.mark.integration


def test_the_console_opens_only_with_its_one_time_link(
    console: Console, new_browser: Callable[[], Any]
) -> None:
    driver = new_browser()
    driver.get(f"{console.url}/")
    assert driver.find_element(By.ID, "refused").get_attribute("data-status") == "401"
    assert driver.get_cookie("bridge_console") is None

    link = console.login_link()
    driver.get(link)
    assert driver.current_url == f"{console.url}/"
    assert not driver.find_elements(By.ID, "refused")
    session = driver.get_cookie("bridge_console")
    assert session is not None
    assert session["httpOnly"] is True  # no script on the page can read it
    assert session["sameSite"] == "Strict"

    again = new_browser()
    again.get(link)  # the same link a second time, from another browser
    assert again.find_element(By.ID, "refused").get_attribute("data-status") == "401"
    again.get(f"{console.url}/")
    assert again.find_elements(By.ID, "refused")


# --- helpers ---------------------------------------------------------------------------------


def today_runs(world: World) -> list[RunRecord]:
    start = datetime.combine(datetime.now(UTC).date(), time(0), tzinfo=UTC)
    return [r for r in world.services.ops.runs(start) if r.kind in ("queue", "file")]


def by_outcome(counts: dict[str, int]) -> Counter[str]:
    """``<source>/<kind>/<outcome>`` counts summed by outcome."""
    out: Counter[str] = Counter()
    for key, n in counts.items():
        out[key.split("/")[2]] += n
    return out


def cell(table: Any, row: str, outcome: str) -> int:
    selector = f'tr[data-source="{row}"] td[data-outcome="{outcome}"]'
    return int(table.find_element(By.CSS_SELECTOR, selector).text)


def wait_for(driver: Any, condition: Callable[[Any], Any], timeout: float = 15.0) -> Any:
    return WebDriverWait(driver, timeout).until(condition)


# --- overview --------------------------------------------------------------------------------


def test_the_overview_shows_todays_figures_files_and_health(browser: Any, console: Console):
    world = console.world
    browser.get(f"{console.url}/")
    assert browser.find_element(By.ID, "nav-overview").get_attribute("aria-current") == "page"

    # Today's events by outcome: what the day's queue and file runs counted.
    today = Counter[str]()
    for run in today_runs(world):
        today.update(by_outcome(run.counts))
    table = browser.find_element(By.ID, "today-outcomes")
    for outcome in ("applied", "unmatched", "queued"):
        assert cell(table, "all", outcome) == today[outcome], outcome
    assert today["applied"] > 0
    # Every unknown member's events went nowhere but the poison book.
    assert cell(table, "all", "unmatched") == len(world.unknown) + 1  # + the mistyped OCR

    book = world.services.poison_book
    total = browser.find_element(By.ID, "poison-total")
    assert int(total.get_attribute("data-count")) == book.count(PoisonFilter()) > 0
    assert browser.find_element(By.ID, "queue-messages").text == "0"  # all synced

    files = browser.find_element(By.ID, "files-table").text
    for path in world.files:
        assert path.name in files
    receipts = browser.find_elements(By.CSS_SELECTOR, "#files-table td.receipt")
    assert len(receipts) >= len(world.files)
    assert all(r.text.strip() for r in receipts[: len(world.files)])

    # The timers ran once this morning (tests/browser/world.py): each shows its last run.
    for timer in ("poison", "triggers", "segments", "reminders", "housekeeping"):
        state = browser.find_element(By.ID, f"timer-{timer}").get_attribute("data-state")
        assert state == "ok", timer

    health = {
        li.get_attribute("data-part"): li.get_attribute("data-state")
        for li in browser.find_elements(By.CSS_SELECTOR, "#health li.health-line")
    }
    assert health["dataverse"] == "ok"
    assert health["queue"] == "ok"
    assert browser.find_element(By.ID, "health").get_attribute("data-state") in ("ok", "red")


# --- poison: search, read, replay ------------------------------------------------------------


def search(driver: Any, console: Console, text: str) -> Any:
    driver.get(f"{console.url}/poison")
    box = driver.find_element(By.ID, "filter-search")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.ID, "filter-apply").click()
    wait_for(driver, lambda d: "search=" in d.current_url)
    return driver.find_element(By.ID, "poison-count")


def test_a_poison_search_by_member_number_finds_that_members_message(
    browser: Any, console: Console
) -> None:
    member = console.world.unknown[1]  # an Autogiro payer the register does not know
    count = search(browser, console, member)
    assert count.get_attribute("data-count") == "1"
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#poison-list tr.poison-row")
    assert row.get_attribute("data-category") == "unmatched"
    assert row.get_attribute("data-source") == "autogiro"
    assert member in row.find_element(By.CSS_SELECTOR, "td.reason").text

    message_id = row.get_attribute("data-id")
    row.find_element(By.CSS_SELECTOR, "td.message-id a").click()
    shown = wait_for(browser, lambda d: d.find_elements(By.ID, "message-id"))
    assert shown[0].text == message_id  # the whole id, never cut
    assert member in browser.find_element(By.ID, "message-member-refs").text
    body = browser.find_element(By.ID, "message-body").text
    assert member in body
    assert not re.search(r"\b(19|20)\d{6}-?\d{4}\b", body)  # no personnummer unmasked


def test_a_poison_search_by_file_name_finds_the_files_unmatched_payment(
    browser: Any, console: Console
) -> None:
    bgmax = console.world.files[1].name  # its last OCR reference was mistyped
    assert search(browser, console, bgmax).get_attribute("data-count") == "1"
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#poison-list tr.poison-row")
    assert row.get_attribute("data-source") == "bgmax"
    assert bgmax in row.find_element(By.CSS_SELECTOR, "td.file-name").text


def test_a_replay_without_the_forms_csrf_token_is_refused(browser: Any, console: Console):
    member = console.world.unknown[2]
    search(browser, console, member)
    browser.find_element(By.CSS_SELECTOR, "input.poison-select").click()
    browser.execute_script(
        "document.querySelector('#poison-actions input[name=csrf]').value = 'guessed';"
    )
    browser.find_element(By.ID, "replay-selected").click()
    refusal = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#refused, #error"))
    assert "CSRF" in refusal[0].text
    assert search(browser, console, member).get_attribute("data-count") == "1"  # still there


def test_replaying_the_found_message_puts_it_back_on_the_queue_and_audits_it(
    browser: Any, console: Console
) -> None:
    world = console.world
    member = world.unknown[1]
    book = world.services.poison_book
    before = book.count(PoisonFilter())
    search(browser, console, member)
    token = browser.find_element(By.CSS_SELECTOR, "#poison-actions input[name=csrf]")
    assert len(token.get_attribute("value")) >= 32  # the form carries the session's token
    (row,) = browser.find_elements(By.CSS_SELECTOR, "#poison-list tr.poison-row")
    message_id = row.get_attribute("data-id")
    row.find_element(By.CSS_SELECTOR, "input.poison-select").click()
    browser.find_element(By.ID, "replay-selected").click()

    wait_for(browser, lambda d: d.find_elements(By.ID, "job-result"))
    assert browser.find_element(By.ID, "job-state").text == "finished"
    assert browser.find_element(By.ID, "job-messages").text == "1"
    assert int(browser.find_element(By.ID, "job-events").text) >= 1

    # Gone from the book, back on the queue for the next sync.
    assert search(browser, console, member).get_attribute("data-count") == "0"
    assert book.count(PoisonFilter()) == before - 1
    queued = world.services.queue.peek()
    assert any(member in json.dumps([e.to_json() for e in m.events()]) for m in queued)

    # Who did it, when, and what: in the audit trail.
    since = datetime.now(UTC) - timedelta(hours=1)
    (audit,) = [a for a in world.services.ops.audits(since) if a.action == "replay"]
    assert (audit.who, audit.via, audit.count) == ("Test Admin", "console", 1)
    assert message_id in audit.what


# --- history ---------------------------------------------------------------------------------


def test_the_history_chart_draws_each_days_outcomes_as_bars(browser: Any, console: Console):
    world = console.world
    browser.get(f"{console.url}/history?days=30")
    svg = browser.find_element(By.CSS_SELECTOR, "#history-chart-box svg")
    series = {
        g.get_attribute("data-series")
        for g in svg.find_elements(By.CSS_SELECTOR, ".chart-legend-item")
    }
    assert {"applied", "duplicate", "unmatched"} <= series
    drawn: Counter[tuple[str, str]] = Counter()
    for bar in svg.find_elements(By.CSS_SELECTOR, "rect.chart-bar"):
        assert float(bar.get_attribute("height")) > 0
        key = (bar.get_attribute("data-label"), bar.get_attribute("data-series"))
        drawn[key] += int(float(bar.get_attribute("data-value")))

    expected: Counter[tuple[str, str]] = Counter()
    for day, counts in world.history.items():  # the seeded days (labels are month-day)
        for outcome, n in by_outcome(counts).items():
            expected[(f"{day:%m-%d}", outcome)] += n
    today = f"{datetime.now(UTC):%m-%d}"
    for run in today_runs(world):
        for outcome, n in by_outcome(run.counts).items():
            expected[(today, outcome)] += n
    expected = Counter({k: v for k, v in expected.items() if k[1] in series})
    assert drawn == expected
    assert len({label for label, _ in drawn}) == len(world.history) + 1  # weekends: no bar

    browser.find_element(By.ID, "days-7").click()
    wait_for(browser, lambda d: "days=7" in d.current_url)
    week = browser.find_elements(By.CSS_SELECTOR, "#history-chart-box svg rect.chart-bar")
    labels = {bar.get_attribute("data-label") for bar in week}
    assert today in labels
    assert labels <= {label for label, _ in drawn}
    assert len(labels) <= 7


# --- health red ------------------------------------------------------------------------------


def test_a_part_that_fails_shows_red_on_the_overview_with_its_reason(
    console: Console, new_browser: Callable[[], Any]
) -> None:
    world = console.world
    gate = create_app(world.services, auth="local", local_user="Test Admin")  # no cached health
    driver = new_browser()  # cookies are per host, not port: a browser of its own
    world.box.limits.fault_rate = 1.0  # the Dataverse sandbox answers 503 to everything
    try:
        with serve(gate) as url:
            driver.get(f"{url}/login?token={gate.new_login_token()}")
            part = driver.find_element(By.ID, "health-dataverse")
            assert part.get_attribute("data-state") == "red"
            assert part.find_element(By.CSS_SELECTOR, ".reason").text.strip()
            assert driver.find_element(By.ID, "health").get_attribute("data-state") == "red"
    finally:
        world.box.limits.fault_rate = 0.0
