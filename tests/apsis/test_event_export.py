"""Reading back which events APSIS holds, through its profile data export (reference apsis.md
§3.7 and APSIS's reference page for ``POST /audience/profiles/exports``: asynchronous; the poll
URL answers 404 until the file is ready, then 200 with JSON; 410 gone; 503 the export failed;
events only of the types asked for, between ``start_at`` and ``end_at``). The request's field
names and an event's fields in the file are NOT verified; the file layout is the one APSIS shows
for a single-profile export. These tests pin our reading, so a change to it is deliberate."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import responses

from dynamics_bridge.apsis.models import MarketingEvent
from dynamics_bridge.apsis.platform import ApsisPlatform
from dynamics_bridge.apsis.wire import exported_events
from dynamics_bridge.errors import InputError, TransientError
from tests.apsis.conftest import BASE, SECTION

EXPORTS = f"{BASE}/audience/profiles/exports"
POLL = f"{BASE}/audience/profiles/exports/0f5c-export"
CONFIRMED = "com.apsis1.events.transaction.custom-payment-confirmed-ab12"
WELCOME = "com.apsis1.events.signal.custom-welcome-cd34"
START = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
END = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def item(version_or_type: str, source: str | None, key: str = "version_id") -> dict:
    data = {"source_event_id": source} if source else {"payment_id": "x"}
    return {"event_time": "2026-11-02T08:00:00Z", key: version_or_type, "data": data}


def export_file(*events: dict) -> dict:
    return {
        "profiles": {
            "a8e2c1f0-export-key": {
                "sections": {
                    SECTION: {
                        "attributes": {"com.apsis1.attributes.crmid": "100001"},
                        "events": list(events),
                    }
                }
            }
        }
    }


def test_an_export_is_asked_for_then_polled_until_its_file_is_there(client, api) -> None:
    request = api.add(responses.POST, EXPORTS, json={"poll_url": POLL}, status=202)
    api.add(responses.GET, POLL, status=404)  # not ready yet
    api.add(responses.GET, POLL, json=export_file())
    assert client.export_events([WELCOME, CONFIRMED], START, END) == export_file()
    assert json.loads(request.calls[0].request.body) == {
        "section_discriminator": SECTION,
        "attributes": ["com.apsis1.attributes.crmid"],  # APSIS lists no profile without one
        "events": sorted([WELCOME, CONFIRMED]),
        "start_at": "2026-11-02T08:00:00Z",
        "end_at": "2026-11-02T09:00:00Z",
    }
    assert [c.request.method for c in api.calls if "export" in c.request.url] == [
        "POST",
        "GET",
        "GET",
    ]


def test_a_poll_url_given_as_location_is_followed(client, api) -> None:
    api.add(responses.POST, EXPORTS, status=202, headers={"Location": POLL})
    api.add(responses.GET, POLL, json=export_file())
    assert client.export_events([WELCOME], START, END) == export_file()


def test_a_poll_url_on_another_host_is_refused_and_gets_no_token(client, api) -> None:
    elsewhere = "https://exports.example.org/audience/profiles/exports/1"
    api.add(responses.POST, EXPORTS, json={"poll_url": elsewhere}, status=202)
    with pytest.raises(InputError, match=r"not on api\.apsis\.one"):
        client.export_events([WELCOME], START, END)
    assert not any("example.org" in c.request.url for c in api.calls)


@pytest.mark.parametrize(("status", "word"), [(410, "gone"), (503, "failed")])
def test_an_export_gone_or_failed_is_a_passing_failure(client, api, status, word) -> None:
    api.add(responses.POST, EXPORTS, json={"poll_url": POLL}, status=202)
    api.add(responses.GET, POLL, status=status)
    with pytest.raises(TransientError, match=word):
        client.export_events([WELCOME], START, END)


def test_an_export_that_never_comes_gives_up_after_its_timeout(
    make_client, token_endpoint, api
) -> None:
    client = make_client(event_export_timeout_seconds=30.0, event_export_poll_seconds=10.0)
    api.add(responses.POST, EXPORTS, json={"poll_url": POLL}, status=202)
    api.add(responses.GET, POLL, status=404)
    with pytest.raises(TransientError, match="not ready after 30 s"):
        client.export_events([WELCOME], START, END)


def test_the_file_yields_each_event_type_and_source_event_id() -> None:
    file = export_file(
        item("v-1", "e1"), item(WELCOME, "e1", key="discriminator"), item("v-1", None)
    )
    assert exported_events(file, SECTION) == [("v-1", "e1"), (WELCOME, "e1")]
    assert exported_events(file, "usercreated.sections.other-zz") == []


@pytest.mark.parametrize(
    "file",
    [
        {"items": []},
        {"profiles": {"k": {"attributes": {}}}},
        {"profiles": {"k": {"sections": {SECTION: {"events": {"not": "a list"}}}}}},
        {"profiles": {"k": {"sections": {SECTION: {"events": [{"data": {}}]}}}}},
    ],
    ids=["no profiles", "no sections", "events not a list", "event without a type"],
)
def test_a_file_we_cannot_read_is_an_error_never_an_empty_answer(file) -> None:
    with pytest.raises(InputError):
        exported_events(file, SECTION)


def test_the_platform_says_which_of_its_events_apsis_holds(client, api) -> None:
    definitions = {
        "items": [
            {"discriminator": CONFIRMED, "versions": [{"id": "c-1"}, {"id": "c-2"}]},
            {"discriminator": WELCOME, "versions": [{"id": "w-1"}]},
        ]
    }
    api.add(responses.GET, f"{BASE}/audience/sections/{SECTION}/events", json=definitions)
    api.add(responses.POST, EXPORTS, json={"poll_url": POLL}, status=202)
    api.add(responses.GET, POLL, json=export_file(item("c-2", "e1"), item("w-1", "e9")))
    platform = ApsisPlatform(
        client, event_types={"payment_confirmed": CONFIRMED, "welcome": WELCOME}
    )
    asked = [
        MarketingEvent("payment_confirmed", START, {}, "e1"),
        MarketingEvent("welcome", START, {}, "e1"),
    ]
    assert platform.held_events(asked) == {("payment_confirmed", "e1")}
