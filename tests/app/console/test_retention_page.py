"""The Retention page: the latest report framed in a sandbox, served with a strict policy of
its own; a clear empty state without one; the report read through one injected callable."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from starlette.testclient import TestClient

from dynamics_bridge.app.console import create_app
from dynamics_bridge.app.console.web import NO_REPORT, REPORT_CSP, report_reader
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.errors import ConfigError
from tests.app.console.conftest import TOKEN

REPORT = (
    '<!doctype html><html lang="en"><head><title>Retention report 2026-11-28</title></head>'
    '<body><h1 id="report-title">Retention report 2026-11-28</h1>'
    '<svg xmlns="http://www.w3.org/2000/svg" id="calibration-plot"></svg></body></html>'
)


def signed_in(
    services: Services, reader: Callable[[], str | None] | None = None
) -> Iterator[TestClient]:
    console = create_app(
        services, login_token=TOKEN, local_user="Ada Admin", retention_report=reader
    )
    with TestClient(console, headers={"accept": "text/html"}) as client:
        assert client.get(f"/login?token={TOKEN}", follow_redirects=False).status_code == 303
        yield client


@pytest.fixture
def with_report(services: Services) -> Iterator[TestClient]:
    yield from signed_in(services, lambda: REPORT)


def test_every_page_lists_the_retention_page(client: TestClient) -> None:
    for path in ("/", "/history", "/mapping"):
        assert re.search(r'<a id="nav-retention" href="/retention"', client.get(path).text), path
    page = client.get("/retention").text
    assert re.search(r'id="nav-retention"[^>]*aria-current="page"', page)


def test_without_a_report_the_page_says_how_to_make_one(client: TestClient) -> None:
    answer = client.get("/retention")
    assert answer.status_code == 200
    empty = re.search(r'<section id="retention-empty".*?</section>', answer.text, re.S)
    assert empty
    assert "No retention report yet: run <code" in empty.group(0)
    assert ">dynamics-bridge retention report</code>" in empty.group(0)
    assert "<iframe" not in answer.text
    assert client.get("/retention.json").json() == {
        "available": False,
        "report": None,
        "error": None,
        "empty": NO_REPORT,
    }
    missing = client.get("/retention/report.html")
    assert missing.status_code == 404
    assert "No retention report yet" in missing.text


def test_the_report_is_framed_in_a_sandbox(with_report: TestClient) -> None:
    page = with_report.get("/retention").text
    frame = re.search(r"<iframe[^>]*>", page)
    assert frame
    assert 'id="retention-report"' in frame.group(0)
    assert 'src="/retention/report.html"' in frame.group(0)
    assert re.search(r"\bsandbox\b(?!=)", frame.group(0))  # no allow-scripts, no same origin
    assert 'title="Retention report"' in frame.group(0)
    assert 'id="retention-empty"' not in page
    assert "Retention report 2026-11-28" not in page  # the report itself is not in the page
    assert with_report.get("/retention.json").json()["report"] == "/retention/report.html"


def test_the_report_is_served_with_a_strict_policy(with_report: TestClient) -> None:
    answer = with_report.get("/retention/report.html")
    assert answer.status_code == 200
    assert answer.text == REPORT
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    assert policy == REPORT_CSP
    for directive in ("default-src 'none'", "frame-ancestors 'self'", "sandbox", "form-action"):
        assert directive in policy
    assert "script-src" not in policy  # default-src 'none' covers scripts
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"


def test_the_report_needs_a_signed_in_user(services: Services) -> None:
    console = create_app(services, login_token=TOKEN, retention_report=lambda: REPORT)
    with TestClient(console) as anonymous:
        answer = anonymous.get("/retention/report.html", follow_redirects=False)
        assert answer.status_code == 401
        assert REPORT not in answer.text


def test_a_report_that_cannot_be_read_says_why(services: Services) -> None:
    def broken() -> str | None:
        raise ConfigError("BRIDGE_OPS__CONNECTION: the artifact store is not configured")

    for client in signed_in(services, broken):
        page = client.get("/retention").text
        error = re.search(r'<section id="retention-error".*?</section>', page, re.S)
        assert error
        assert "BRIDGE_OPS__CONNECTION" in error.group(0)
        assert "<iframe" not in page
        assert client.get("/retention.json").json()["error"]
        served = client.get("/retention/report.html")
        assert served.status_code == 503
        assert "could not be read" in served.text


class WiredServices(Services):
    """Services as the wiring gives them the latest stored report."""

    def retention_report(self) -> str | None:
        return REPORT


def test_the_console_reads_the_report_from_services_when_the_wiring_has_it(
    services: Services,
) -> None:
    """The seam: a reader given to create_app, else ``services.retention_report``, else none."""
    assert report_reader(object())() is None
    wired = WiredServices(services.settings, queue=services.queue, ops=services.ops)
    assert report_reader(wired)() == REPORT
    assert report_reader(wired, lambda: None)() is None  # one given to create_app wins
    for client in signed_in(wired):
        assert 'id="retention-report"' in client.get("/retention").text
        assert client.get("/retention/report.html").text == REPORT
