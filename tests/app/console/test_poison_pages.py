"""The Poison page: filters, search, one message masked, replay and purge guarded and audited."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from dynamics_bridge.app.console import ConsoleAuth
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.ops.model import PoisonFilter
from tests.app.console.conftest import PNR, POISON, START, csrf_of


def listed(html: str) -> list[str]:
    return re.findall(r'<tr class="poison-row" data-id="([^"]+)"', html)


def count_of(html: str) -> int:
    found = re.search(r'id="poison-count" data-count="(\d+)"', html)
    assert found
    return int(found.group(1))


def finish(console: ConsoleAuth, answer) -> dict:
    """Follow a replay's or purge's redirect to its job, wait for it, return the job page."""
    assert answer.status_code == 303, answer.text
    job_id = answer.headers["location"].rsplit("/", 1)[-1]
    job = console.jobs.get(job_id)
    assert job is not None
    assert job.wait(10)
    return job.to_json()


def test_the_list_shows_every_message_newest_first_with_the_true_count(client) -> None:
    html = client.get("/poison").text
    assert listed(html) == [r.message_id for r in POISON]  # seeded newest first
    assert count_of(html) == 3


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("reason=unmatched", ["msg-0001-bgmax", "msg-0003-autogiro"]),
        ("source=swish", ["msg-0002-swish"]),
        ("search=100777", ["msg-0001-bgmax"]),  # a member number
        ("search=BGMAX.D261203.txt", ["msg-0001-bgmax"]),  # a file
        ("search=msg-0003", ["msg-0003-autogiro"]),  # a message id's prefix
        ("reason=unmatched&source=autogiro", ["msg-0003-autogiro"]),
    ],
)
def test_filters_narrow_the_list(client, query: str, expected: list[str]) -> None:
    html = client.get(f"/poison?{query}").text
    assert listed(html) == expected
    assert count_of(html) == len(expected)


def test_dates_narrow_the_list_and_until_includes_its_day(client) -> None:
    two_days_ago = (START - timedelta(days=2)).date().isoformat()
    html = client.get(f"/poison?since={two_days_ago}&until={two_days_ago}").text
    assert listed(html) == ["msg-0002-swish"]
    html = client.get(f"/poison?since={two_days_ago}").text
    assert listed(html) == ["msg-0001-bgmax", "msg-0002-swish"]


def test_since_takes_a_time_ago(client) -> None:
    assert listed(client.get("/poison?since=3d").text) == ["msg-0001-bgmax", "msg-0002-swish"]


def test_a_search_by_event_id_finds_its_message(client) -> None:
    event_id = POISON[1].event_ids[0]
    assert listed(client.get("/poison", params={"search": event_id}).text) == ["msg-0002-swish"]


def test_a_bad_date_is_a_clear_400(client) -> None:
    answer = client.get("/poison?since=yesterday")
    assert answer.status_code == 400
    assert "since" in answer.text
    assert "YYYY-MM-DD" in answer.text


def test_the_list_pages_with_a_cursor(client, services: Services) -> None:
    from dynamics_bridge.app.console import web

    original = web.PAGE_SIZE
    web.PAGE_SIZE = 2
    try:
        first = client.get("/poison").text
        assert listed(first) == ["msg-0001-bgmax", "msg-0002-swish"]
        href = re.search(r'id="next-page" href="([^"]+)"', first)
        assert href
        second = client.get(href.group(1).replace("&amp;", "&")).text
        assert listed(second) == ["msg-0003-autogiro"]
        assert 'id="next-page"' not in second
        assert 'id="first-page"' in second
    finally:
        web.PAGE_SIZE = original


def test_one_message_is_shown_masked(client) -> None:
    html = client.get("/poison/msg-0002-swish").text
    assert PNR not in html
    assert PNR[:8] in html  # the birth date stays: 19811218-****
    assert re.search(r'id="message-id">msg-0002-swish<', html)
    assert POISON[1].event_ids[0] in html  # event ids are not personal data


def test_a_unique_prefix_opens_the_message_and_an_unknown_id_is_404(client) -> None:
    assert client.get("/poison/msg-0003").status_code == 200
    assert client.get("/poison/msg-9999").status_code == 404
    assert client.get("/poison/msg-000").status_code == 400  # matches three: say so


def test_a_replay_without_the_csrf_token_is_refused(client, services: Services) -> None:
    answer = client.post("/poison/replay", data={"ids": "msg-0001-bgmax", "scope": "selected"})
    assert answer.status_code == 403
    answer = client.post(
        "/poison/replay", data={"ids": "msg-0001-bgmax", "scope": "selected", "csrf": "forged"}
    )
    assert answer.status_code == 403
    assert services.poison_book.count(PoisonFilter()) == 3
    assert services.ops.audits(datetime(2000, 1, 1, tzinfo=UTC)) == []


def test_a_replay_of_the_selected_puts_events_back_and_is_audited(
    client, console: ConsoleAuth, services: Services
) -> None:
    csrf = csrf_of(client.get("/poison").text)
    depth_before = services.queue.depth()["messages"]
    answer = client.post(
        "/poison/replay",
        data={"ids": ["msg-0001-bgmax"], "scope": "selected", "csrf": csrf},
        follow_redirects=False,
    )
    job = finish(console, answer)
    assert job["result"] == {"messages": 1, "events": 1, "skipped": []}
    assert services.poison_book.count(PoisonFilter()) == 2
    assert services.queue.depth()["messages"] == depth_before + 1
    (audit,) = services.ops.audits(datetime(2000, 1, 1, tzinfo=UTC))
    assert (audit.who, audit.via, audit.action, audit.count) == (
        "Ada Admin",
        "console",
        "replay",
        1,
    )
    page = client.get(answer.headers["location"]).text
    assert re.search(r'id="job-state">finished<', page)
    assert re.search(r'id="job-messages">1<', page)
    # The audit trail is on the Poison page: who replayed what.
    listed = client.get("/poison").text
    row = re.search(r'<tr class="audit-row" data-action="replay">(.*?)</tr>', listed, re.S)
    assert row is not None
    assert "Ada Admin" in row.group(1)
    assert "msg-0001-bgmax" in row.group(1)


def test_a_replay_of_all_matching_takes_the_filter(
    client, console: ConsoleAuth, services: Services
) -> None:
    csrf = csrf_of(client.get("/poison?reason=unmatched").text)
    answer = client.post(
        "/poison/replay",
        data={"scope": "matching", "reason": "unmatched", "csrf": csrf},
        follow_redirects=False,
    )
    job = finish(console, answer)
    assert job["result"]["messages"] == 2
    remaining = [r.message_id for r in services.poison_book.page(PoisonFilter()).records]
    assert remaining == ["msg-0002-swish"]
    (audit,) = services.ops.audits(datetime(2000, 1, 1, tzinfo=UTC))
    assert "reason=unmatched" in audit.what


def test_the_job_json_reports_progress(client, console: ConsoleAuth) -> None:
    csrf = csrf_of(client.get("/poison").text)
    answer = client.post(
        "/poison/replay", data={"scope": "matching", "csrf": csrf}, follow_redirects=False
    )
    finish(console, answer)
    progress = client.get(answer.headers["location"] + ".json").json()
    assert (progress["done"], progress["total"], progress["finished"]) == (3, 3, True)


def test_a_purge_shows_the_count_first_and_needs_the_confirmation(
    client, console: ConsoleAuth, services: Services
) -> None:
    page = client.get("/poison/purge?source=bgmax").text
    assert re.search(r'id="purge-count" data-count="1"', page)
    csrf = csrf_of(page)
    unconfirmed = client.post(
        "/poison/purge", data={"source": "bgmax", "csrf": csrf}, follow_redirects=False
    )
    assert unconfirmed.status_code == 400
    assert services.poison_book.count(PoisonFilter()) == 3
    answer = client.post(
        "/poison/purge",
        data={"source": "bgmax", "confirm": "yes", "csrf": csrf},
        follow_redirects=False,
    )
    assert finish(console, answer)["result"] == {"purged": 1}
    assert services.poison_book.count(PoisonFilter(source="bgmax")) == 0
    assert services.poison_book.count(PoisonFilter()) == 2
    (audit,) = services.ops.audits(datetime(2000, 1, 1, tzinfo=UTC))
    assert (audit.who, audit.via, audit.action, audit.count) == ("Ada Admin", "console", "purge", 1)


def test_a_purge_without_the_csrf_token_is_refused(client, services: Services) -> None:
    answer = client.post("/poison/purge", data={"source": "bgmax", "confirm": "yes"})
    assert answer.status_code == 403
    assert services.poison_book.count(PoisonFilter()) == 3


def test_a_form_posted_from_another_site_is_refused_even_with_the_token(
    client, services: Services
) -> None:
    csrf = csrf_of(client.get("/poison").text)
    answer = client.post(
        "/poison/replay",
        data={"scope": "matching", "csrf": csrf},
        headers={"sec-fetch-site": "cross-site"},
    )
    assert answer.status_code == 403
    assert services.poison_book.count(PoisonFilter()) == 3
