"""The Web API client, with HTTP mocked by `responses` (wire shapes from dataverse.md)."""

from __future__ import annotations

import json
import threading
from urllib.parse import unquote

import pytest
import requests
import responses
from responses import matchers

from dynamics_bridge.dataverse.batch import BatchRequest, ChangeSet
from dynamics_bridge.dataverse.client import AppUserGate, DataverseClient, odata_in
from dynamics_bridge.errors import (
    AuthError,
    ConcurrencyConflictError,
    DuplicateKeyError,
    ThrottledError,
    TransientError,
)
from tests.conftest import FIXTURES

ORG = "https://contoso-members.crm4.dynamics.com"
API = f"{ORG}/api/data/v9.2/"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def client(fake_time: FakeTime) -> DataverseClient:
    gate = AppUserGate(max_concurrency=4, clock=fake_time.clock, sleep=fake_time.sleep)
    return DataverseClient(
        ORG,
        requests.Session(),
        lambda: "tok",
        gate=gate,
        extra_headers={"MSCRM.SuppressCallbackRegistrationExpanderJob": "true"},
        max_attempts=4,
        page_size=2,
        keys_per_query=2,
    )


def error(code: str, message: str = "m") -> dict:
    return {"error": {"code": code, "message": message}}


@responses.activate
def test_every_request_carries_the_required_headers(client) -> None:
    responses.get(
        API + "contacts",
        json={"value": []},
        match=[
            matchers.header_matcher(
                {
                    "Authorization": "Bearer tok",
                    "Accept": "application/json",
                    "OData-MaxVersion": "4.0",
                    "OData-Version": "4.0",
                    "If-None-Match": "null",
                    "Prefer": "odata.maxpagesize=2",
                }
            )
        ],
    )
    assert list(client.query("contacts", select=["contactid"])) == []


@responses.activate
def test_queries_follow_next_links_verbatim(client) -> None:
    next_link = API + "contacts?$select=contactid&$skiptoken=abc"
    responses.get(
        API + "contacts",
        json={"value": [{"contactid": "1"}, {"contactid": "2"}], "@odata.nextLink": next_link},
    )
    responses.get(next_link, json={"value": [{"contactid": "3"}]})
    assert [r["contactid"] for r in client.query("contacts", select=["contactid"])] == [
        "1",
        "2",
        "3",
    ]
    assert responses.calls[1].request.url == next_link


@responses.activate
def test_many_keys_are_read_in_chunks_with_quotes_doubled(client) -> None:
    responses.get(API + "contacts", json={"value": [{"mbr_memberno": "O'Brien"}]})
    responses.get(API + "contacts", json={"value": [{"mbr_memberno": "100003"}]})
    rows = client.rows_by_values(
        "contacts", "mbr_memberno", ["O'Brien", "100002", "100003"], ["mbr_paymentstatus"]
    )
    assert sorted(rows) == ["100003", "O'Brien"]
    first = unquote(responses.calls[0].request.url)
    assert "PropertyValues=['O''Brien','100002']" in first
    assert "$select=mbr_memberno,mbr_paymentstatus" in first


def test_the_in_filter_is_dataverses_function() -> None:
    assert odata_in("c", ["a", "b"]) == (
        "Microsoft.Dynamics.CRM.In(PropertyName='c',PropertyValues=['a','b'])"
    )


@responses.activate
def test_create_only_sends_if_none_match_and_a_412_is_a_duplicate(client) -> None:
    url = API + "mbr_payments(mbr_eventid='swish-1')"
    responses.patch(
        url,
        status=412,
        json=error("0x80040237", "already exists"),
        match=[matchers.header_matcher({"If-None-Match": "*"})],
    )
    with pytest.raises(DuplicateKeyError):
        client.create_only("mbr_payments", {"mbr_eventid": "swish-1"}, {"mbr_amount": 250.0})
    sent = responses.calls[0].request
    assert json.loads(sent.body) == {"mbr_amount": 250.0}
    assert sent.headers["MSCRM.SuppressCallbackRegistrationExpanderJob"] == "true"


@responses.activate
def test_an_update_with_a_stale_etag_is_a_concurrency_conflict(client) -> None:
    url = API + "contacts(mbr_memberno='100001')"
    responses.patch(
        url,
        status=412,
        json=error("0x80060882", "version does not match"),
        match=[matchers.header_matcher({"If-Match": 'W/"7"'})],
    )
    with pytest.raises(ConcurrencyConflictError):
        client.update("contacts", {"mbr_memberno": "100001"}, {"mbr_arrears": 0}, etag='W/"7"')


@responses.activate
def test_a_429_pauses_every_worker_for_retry_after_then_retries(client, fake_time) -> None:
    responses.get(
        API + "contacts",
        status=429,
        headers={"Retry-After": "7"},
        json=error("0x80072322", "Number of requests exceeded the limit of 6000"),
    )
    responses.get(API + "contacts", json={"value": [{"contactid": "1"}]})
    assert len(list(client.query("contacts"))) == 1
    assert client.gate.throttled == 1
    assert [s for s in fake_time.slept if s > 0] == [7.0]  # the gate waits, not tenacity


def test_a_pause_holds_back_other_threads_of_the_same_app_user() -> None:
    import time

    gate = AppUserGate(max_concurrency=8)
    gate.pause(0.3)
    started = time.monotonic()
    waited: list[float] = []

    def worker() -> None:
        with gate.turn():
            waited.append(time.monotonic() - started)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert min(waited) >= 0.29


@responses.activate
def test_transient_failures_back_off_and_retry(client, fake_time) -> None:
    responses.get(API + "contacts", status=503)
    responses.get(API + "contacts", body=requests.ConnectionError("reset"))
    responses.get(API + "contacts", status=500, json=error("0x80044339", "lock"))
    responses.get(API + "contacts", json={"value": []})
    assert list(client.query("contacts")) == []
    assert len(fake_time.slept) == 3
    assert fake_time.slept[1] > fake_time.slept[0] * 0.9


@responses.activate
def test_retries_stop_after_max_attempts(client) -> None:
    responses.get(API + "contacts", status=503)
    with pytest.raises(TransientError):
        list(client.query("contacts"))
    assert len(responses.calls) == 4


@responses.activate
def test_auth_failures_are_not_retried(client) -> None:
    responses.get(API + "contacts", status=401)
    with pytest.raises(AuthError):
        list(client.query("contacts"))
    assert len(responses.calls) == 1


@responses.activate
def test_batch_sends_multipart_and_returns_each_part(client) -> None:
    body = (FIXTURES / "dataverse" / "batch_response.http").read_bytes()
    responses.post(
        API + "$batch",
        body=body,
        status=200,
        content_type="multipart/mixed; boundary=batchresponse_5d0e",
    )
    parts = client.batch(
        [
            ChangeSet(
                [
                    BatchRequest(
                        "PATCH",
                        "new_payments(new_externalref='SWISH-8F2A11C0')",
                        {"If-None-Match": "*"},
                        {"new_amount": 250.0},
                        "1",
                    )
                ]
            ),
            BatchRequest("PATCH", "contacts(new_memberno='M-99999')", {"If-Match": "*"}, {"x": 1}),
        ]
    )
    assert [p.status for p in parts] == [204, 204, 204, 404]
    sent = responses.calls[0].request
    assert sent.headers["Prefer"] == "odata.continue-on-error"
    assert sent.headers["Content-Type"].startswith("multipart/mixed; boundary=")
    assert b"MSCRM.SuppressCallbackRegistrationExpanderJob: true" in sent.body


@responses.activate
def test_a_throttled_batch_is_retried_whole(client) -> None:
    responses.post(API + "$batch", status=429, headers={"Retry-After": "1"})
    body = (FIXTURES / "dataverse" / "batch_response.http").read_bytes()
    responses.post(
        API + "$batch", body=body, content_type="multipart/mixed; boundary=batchresponse_5d0e"
    )
    assert len(client.batch([BatchRequest("GET", "contacts")])) == 4


def test_more_than_1000_operations_are_refused(client) -> None:
    from dynamics_bridge.errors import BridgeError

    with pytest.raises(BridgeError, match="1,000"):
        client.batch([BatchRequest("GET", "contacts")] * 1001)


@responses.activate
def test_change_tracking_returns_changes_deletions_and_the_next_link(client) -> None:
    delta = API + "contacts?$select=mbr_memberno&$deltatoken=919042%21"
    responses.get(
        API + "contacts",
        json={"value": [{"contactid": "1", "mbr_memberno": "100001"}], "@odata.deltaLink": delta},
        match=[matchers.header_matcher({"Prefer": "odata.track-changes,odata.maxpagesize=2"})],
    )
    changed, deleted, link = client.changes("contacts", ["mbr_memberno"])
    assert (len(changed), deleted, link) == (1, [], delta)
    responses.get(
        delta,
        json={
            "value": [
                {
                    "@odata.context": f"{API}$metadata#contacts/$deletedEntity",
                    "id": "9",
                    "reason": "deleted",
                }
            ],
            "@odata.deltaLink": delta + "2",
        },
    )
    changed, deleted, link = client.changes("contacts", ["mbr_memberno"], delta)
    assert (changed, deleted, link) == ([], ["9"], delta + "2")


@responses.activate
def test_metadata_is_read_once_and_cached(client) -> None:
    responses.get(
        API + "EntityDefinitions(LogicalName='contact')",
        json={"LogicalName": "contact", "Attributes": [], "Keys": []},
    )
    assert client.entity("contact")["LogicalName"] == "contact"
    client.entity("contact")
    assert len(responses.calls) == 1


@responses.activate
def test_throttling_errors_keep_the_request_id(client) -> None:
    client.max_attempts = 1
    responses.get(
        API + "contacts", status=429, headers={"Retry-After": "1", "x-ms-service-request-id": "abc"}
    )
    with pytest.raises(ThrottledError) as caught:
        list(client.query("contacts"))
    assert caught.value.request_id == "abc"
