"""The Retention page in a real browser (headless Chromium): the report of a small synthetic run
shows inside the console's sandboxed frame with its headings and plots drawn, and a console
without a report says how to make one.

No sandbox or Azurite needed: the console reads the report through its injected callable.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from dynamics_bridge.app.console.web import create_app
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.ops.memory import InMemoryOpsStore
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings
from tests.browser.driver import serve

pytestmark = pytest.mark.integration

SECTIONS = [
    "Churn model",
    "Retention curves",
    "Lifetime value",
    "Leaving reasons",
    "Winback themes",
]


@pytest.fixture(scope="module")
def report() -> str:
    """The report of bench/retention.py's steps on 2,000 synthetic members."""
    from dynamics_bridge.retention.report import render
    from tests.retention.test_report import report_data, synthetic_run

    return render(report_data(synthetic_run()))


def console(reader: Callable[[], str | None]) -> Any:
    services = Services(
        load_settings(), queue=InMemoryQueue("retention-page"), ops=InMemoryOpsStore()
    )
    return create_app(services, auth="local", local_user="Test Admin", retention_report=reader)


@pytest.fixture
def signed_in(new_browser: Callable[[], Any]) -> Iterator[Callable[[Any], tuple[Any, str]]]:
    """Serves a console and signs a browser of its own in (cookies are per host, not port)."""
    with contextlib.ExitStack() as servers:

        def open_console(gate: Any) -> tuple[Any, str]:
            url = servers.enter_context(serve(gate))
            driver = new_browser()
            driver.get(f"{url}/login?token={gate.new_login_token()}")
            return driver, url

        yield open_console


def test_the_retention_page_shows_the_report_with_its_headings_and_plots(
    report: str, signed_in: Callable[[Any], tuple[Any, str]]
) -> None:
    driver, url = signed_in(console(lambda: report))
    driver.get(f"{url}/retention")
    assert driver.find_element(By.ID, "nav-retention").get_attribute("aria-current") == "page"
    assert not driver.find_elements(By.ID, "retention-empty")
    frame = driver.find_element(By.ID, "retention-report")
    assert frame.get_attribute("sandbox") == ""  # no scripts, an origin of its own
    assert frame.size["height"] > 400

    driver.switch_to.frame(frame)
    try:
        assert driver.find_element(By.ID, "report-title").text == "Retention report 2026-11-28"
        assert "The churn model is used" in driver.find_element(By.ID, "headline").text
        headings = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "main h2")]
        assert headings == SECTIONS
        plots = driver.find_elements(By.CSS_SELECTOR, "svg.plot, svg.chart")
        ids = sorted(p.get_attribute("id") for p in plots)
        assert ids == sorted(
            [
                "calibration-plot",
                "reasons-plot",
                *(f"retention-plot-{d}" for d in ("join_year", "method", "member_type", "region")),
            ]
        )
        for plot in plots:  # drawn, not just present
            assert plot.size["width"] > 300
            assert plot.size["height"] > 150
        points = driver.find_elements(By.CSS_SELECTOR, "#calibration-plot .plot-point")
        assert len(points) >= 10
        curves = driver.find_elements(By.CSS_SELECTOR, "#retention-plot-method g.plot-curve")
        assert {c.get_attribute("data-series") for c in curves} == {
            "autogiro",
            "card",
            "invoice",
            "swish",
        }
        assert driver.find_element(By.ID, "metrics-table").find_element(By.TAG_NAME, "caption")
        # The sandbox holds: the report's document has an opaque origin, not the console's.
        assert driver.execute_script("return window.origin") == "null"
    finally:
        driver.switch_to.default_content()

    # The report opens on its own too (to print or save), under its strict policy.
    driver.get(driver.find_element(By.ID, "retention-open").get_attribute("href"))
    assert driver.find_element(By.ID, "report-title").text == "Retention report 2026-11-28"


def test_without_a_report_the_page_says_how_to_make_one(
    signed_in: Callable[[Any], tuple[Any, str]],
) -> None:
    driver, url = signed_in(console(lambda: None))
    driver.get(f"{url}/retention")
    empty = driver.find_element(By.ID, "retention-empty")
    assert empty.is_displayed()
    assert "No retention report yet: run dynamics-bridge retention report" in empty.text
    assert (
        driver.find_element(By.ID, "retention-command").text == "dynamics-bridge retention report"
    )
    assert not driver.find_elements(By.ID, "retention-report")
