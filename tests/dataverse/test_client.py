"""The Web API client, with HTTP mocked by `responses` (wire shapes from dataverse.md)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
import responses
from responses import matchers

from dynamics_bridge.dataverse.batch import BatchRequest, ChangeSet
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserLane, AppUserPool
from dynamics_bridge.errors import (
    AmbiguousError,
    AuthError,
    BridgeError,
    ConcurrencyConflictError,
    DuplicateKeyError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.settings import DataverseSettings

ORG = "https://contoso-members.crm4.dynamics.com"
API = f"{ORG}/api/data/v9.2/"
WIRE = Path(__file__).parent / "wire"
BATCH_RESPONSE = (WIRE / "batch_response.http").read_bytes()
BATCH_RESPONSE_TYPE = "multipart/mixed; boundary=batchresponse_5d0e"


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Tokens:
    """A token source that counts and can be told its token was refused."""

    def __init__(self, name: str = "tok") -> None:
        self.name = name
        self.generation = 0
        self.invalidated = 0

    def __call__(self) -> str:
        return f"{self.name}-{self.generation}"

    def invalidate(self) -> None:
        self.invalidated += 1
        self.generation += 1


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def gate(fake_time: FakeTime, concurrency: int = 4) -> AppUserGate:
    return AppUserGate(max_concurrency=concurrency, clock=fake_time.clock, sleep=fake_time.sleep)


def make_client(fake_time: FakeTime, token=lambda: "tok", **settings) -> DataverseClient:
    """One app user over a fake clock; ``settings`` are DataverseSettings fields."""
    pool = AppUserPool.single(token, gate(fake_time))
    return DataverseClient(DataverseSettings(url=ORG, **settings), requests.Session(), pool)


@pytest.fixture
def client(fake_time: FakeTime) -> DataverseClient:
    return make_client(
        fake_time, suppress_flows=True, max_attempts=4, page_size=2, keys_per_query=2
    )


BOUNDARY_B = "multipart/mixed; boundary=b"


def error(code: str, message: str = "m") -> dict:
    return {"error": {"code": code, "message": message}}


# -- headers, reads ----------------------------------------------------------------------------


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
    assert list(client.rows.query("contacts", select=["contactid"])) == []
    sent = responses.calls[0].request
    assert "MSCRM.SuppressCallbackRegistrationExpanderJob" not in sent.headers  # writes only
    assert "Content-Type" not in sent.headers


@responses.activate
def test_queries_follow_next_links_verbatim(client) -> None:
    next_link = API + "contacts?$select=contactid&$skiptoken=abc"
    responses.get(
        API + "contacts",
        json={"value": [{"contactid": "1"}, {"contactid": "2"}], "@odata.nextLink": next_link},
    )
    responses.get(
        next_link,
        json={"value": [{"contactid": "3"}]},
        match=[matchers.header_matcher({"Prefer": "odata.maxpagesize=2"})],
    )
    assert [r["contactid"] for r in client.rows.query("contacts", select=["contactid"])] == [
        "1",
        "2",
        "3",
    ]
    assert responses.calls[1].request.url == next_link


@responses.activate
def test_top_asks_for_no_page_size_and_annotations_join_the_prefer_header(client) -> None:
    responses.get(API + "contacts", json={"value": []})
    list(client.rows.query("contacts", top=5, annotations="*"))
    sent = responses.calls[0].request
    assert sent.headers["Prefer"] == 'odata.include-annotations="*"'
    assert "$top=5" in unquote(sent.url)


@responses.activate
def test_keys_that_fit_one_query_are_read_with_one_get(client) -> None:
    responses.get(API + "contacts", json={"value": [{"mbr_memberno": "O'Brien"}]})
    rows = client.rows.by_values("contacts", "mbr_memberno", ["O'Brien", "O'Brien"], ["x"])
    assert sorted(rows) == ["O'Brien"]
    assert len(responses.calls) == 1
    sent = unquote(responses.calls[0].request.url)
    assert "PropertyValues=['O''Brien']" in sent
    assert "$select=mbr_memberno,x" in sent


def get_part(rows: list[dict], next_link: str | None = None) -> str:
    page = {"@odata.context": "x", "value": rows}
    if next_link:
        page["@odata.nextLink"] = next_link
    return (
        "--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; odata.metadata=minimal\r\n\r\n"
        f"{json.dumps(page)}\r\n"
    )


@responses.activate
def test_many_keys_are_read_as_get_parts_of_one_batch_with_quotes_doubled(client) -> None:
    answer = get_part([{"mbr_memberno": "O'Brien"}]) + get_part([{"mbr_memberno": "100003"}])
    responses.post(API + "$batch", body=answer + "--b--\r\n", content_type=BOUNDARY_B)
    rows = client.rows.by_values(
        "contacts", "mbr_memberno", ["O'Brien", "100002", "100003", "O'Brien"], ["mbr_status"]
    )
    assert sorted(rows) == ["100003", "O'Brien"]
    assert len(responses.calls) == 1  # one request toward the limit, whatever the chunks
    body = unquote(responses.calls[0].request.body.decode())
    lines = [line for line in body.split("\r\n") if line.startswith("GET ")]
    assert len(lines) == 2
    assert "PropertyValues=['O''Brien','100002']" in lines[0]
    assert "$select=mbr_memberno,mbr_status" in lines[0]
    assert "odata.maxpagesize=2" in body


@responses.activate
def test_a_batch_part_with_more_pages_is_read_on(client) -> None:
    answer = get_part([{"mbr_memberno": "1"}], f"{API}contacts?$skiptoken=2") + get_part([])
    responses.post(API + "$batch", body=answer + "--b--\r\n", content_type=BOUNDARY_B)
    responses.get(API + "contacts", json={"value": [{"mbr_memberno": "2"}]})
    rows = client.rows.by_values("contacts", "mbr_memberno", ["1", "2", "3"], [])
    assert sorted(rows) == ["1", "2"]


@responses.activate
def test_a_query_part_left_unanswered_is_an_error_not_an_empty_answer(client) -> None:
    responses.post(API + "$batch", body=get_part([]) + "--b--\r\n", content_type=BOUNDARY_B)
    with pytest.raises(TransientError):
        client.rows.by_values("contacts", "mbr_memberno", ["1", "2", "3"], [])


@responses.activate
def test_long_keys_are_chunked_by_url_length_not_only_by_count(fake_time) -> None:
    client = make_client(fake_time, max_filter_chars=600)
    responses.post(API + "$batch", body=get_part([]) * 10 + "--b--\r\n", content_type=BOUNDARY_B)
    client.rows.by_values("contacts", "mbr_memberno", [f"{n:060d}" for n in range(10)], [])
    body = responses.calls[0].request.body.decode()
    lines = [line for line in body.split("\r\n") if line.startswith("GET ")]
    assert len(lines) > 1
    assert all(len(line) < 1200 for line in lines)


@responses.activate
def test_one_row_by_key_with_its_etag_and_none_when_missing(client) -> None:
    responses.get(
        API + "contacts(mbr_memberno='O''Brien')",
        json={"@odata.etag": 'W/"7"', "contactid": "c1"},
    )
    responses.get(
        API + "contacts(mbr_memberno='nobody')", status=404, json=error("0x80060891", "no row")
    )
    assert client.rows.get("contacts", {"mbr_memberno": "O'Brien"})["@odata.etag"] == 'W/"7"'
    assert client.rows.get("contacts", {"mbr_memberno": "nobody"}) is None


# -- single writes -----------------------------------------------------------------------------


@responses.activate
def test_create_only_sends_if_none_match_and_a_412_is_a_duplicate(client) -> None:
    responses.patch(
        API + "mbr_payments(mbr_eventid='swish-1')",
        status=412,
        json=error("0x80040237", "A record with matching key values already exists."),
        match=[matchers.header_matcher({"If-None-Match": "*"})],
    )
    with pytest.raises(DuplicateKeyError) as caught:
        client.rows.create_only("mbr_payments", {"mbr_eventid": "swish-1"}, {"mbr_amount": 250.0})
    assert caught.value.code == "0x80040237"
    sent = responses.calls[0].request
    assert json.loads(sent.body) == {"mbr_amount": 250.0}
    assert sent.headers["Content-Type"] == "application/json; charset=utf-8"
    assert sent.headers["MSCRM.SuppressCallbackRegistrationExpanderJob"] == "true"
    assert len(responses.calls) == 1  # a duplicate is an answer, not a failure to retry


@responses.activate
def test_an_update_with_a_stale_etag_is_a_concurrency_conflict(client) -> None:
    responses.patch(
        API + "contacts(mbr_memberno='100001')",
        status=412,
        json=error("0x80060882", "The version of the existing record doesn't match"),
        match=[matchers.header_matcher({"If-Match": 'W/"7"'})],
    )
    with pytest.raises(ConcurrencyConflictError):
        client.rows.update("contacts", {"mbr_memberno": "100001"}, {"mbr_arrears": 0}, etag='W/"7"')


@responses.activate
def test_update_only_on_a_missing_row_is_not_found(client) -> None:
    responses.patch(
        API + "contacts(mbr_memberno='404')",
        status=404,
        json=error("0x80060891"),
        match=[matchers.header_matcher({"If-Match": "*"})],
    )
    with pytest.raises(NotFoundError):
        client.rows.update("contacts", {"mbr_memberno": "404"}, {"mbr_arrears": 0})


@responses.activate
def test_an_upsert_is_a_plain_patch_by_key(client) -> None:
    responses.patch(API + "contacts(mbr_memberno='1')", status=204)
    client.rows.upsert("contacts", {"mbr_memberno": "1"}, {"lastname": "Ek"})
    sent = responses.calls[0].request
    assert "If-Match" not in sent.headers
    assert sent.headers["If-None-Match"] == "null"


@responses.activate
def test_a_plain_create_returns_the_entity_id_and_is_not_retried_after_a_read_timeout(
    client,
) -> None:
    responses.post(
        API + "annotations", status=204, headers={"OData-EntityId": API + "annotations(1)"}
    )
    assert client.rows.create("annotations", {"subject": "s"}) == API + "annotations(1)"
    responses.replace(responses.POST, API + "annotations", body=requests.ReadTimeout("slow"))
    with pytest.raises(AmbiguousError):
        client.rows.create("annotations", {"subject": "s"})
    assert len(responses.calls) == 2


# -- retries and pacing ------------------------------------------------------------------------


@responses.activate
def test_a_429_pauses_the_app_user_for_retry_after_then_retries(client, fake_time) -> None:
    responses.get(
        API + "contacts",
        status=429,
        headers={"Retry-After": "7"},
        json=error("0x80072322", "Number of requests exceeded the limit of 6000"),
    )
    responses.get(API + "contacts", json={"value": [{"contactid": "1"}]})
    assert len(list(client.rows.query("contacts"))) == 1
    assert client.transport.gate.throttled == 1
    assert [s for s in fake_time.slept if s > 0] == [7.0]  # the gate waits, not the retry loop


@responses.activate
def test_a_429_storm_does_not_use_up_the_transient_attempts(client, fake_time) -> None:
    for _ in range(6):  # more than max_attempts=4
        responses.get(API + "contacts", status=429, headers={"Retry-After": "1"})
    responses.get(API + "contacts", json={"value": []})
    assert list(client.rows.query("contacts")) == []
    assert client.throttled == 6


@responses.activate
def test_throttling_gives_up_after_the_wait_budget_and_keeps_the_request_id(fake_time) -> None:
    client = make_client(fake_time, max_throttle_seconds=2.5)
    responses.get(
        API + "contacts", status=429, headers={"Retry-After": "1", "x-ms-service-request-id": "abc"}
    )
    with pytest.raises(ThrottledError) as caught:
        list(client.rows.query("contacts"))
    assert caught.value.request_id == "abc"
    assert len(responses.calls) == 3


@responses.activate
def test_a_429_moves_the_retry_to_another_app_user(fake_time) -> None:
    a, b = Tokens("a"), Tokens("b")
    pool = AppUserPool([AppUserLane("a", a, gate(fake_time)), AppUserLane("b", b, gate(fake_time))])
    client = DataverseClient(DataverseSettings(url=ORG), requests.Session(), pool)
    responses.get(
        API + "contacts",
        status=429,
        headers={"Retry-After": "30"},
        match=[matchers.header_matcher({"Authorization": "Bearer a-0"})],
    )
    responses.get(API + "contacts", json={"value": []})
    list(client.rows.query("contacts"))
    assert [c.request.headers["Authorization"] for c in responses.calls] == [
        "Bearer a-0",
        "Bearer b-0",
    ]
    assert not any(fake_time.slept)  # user b was free: nobody waited out a's penalty
    assert pool.lanes[0].gate.remaining() == 30.0


@responses.activate
def test_transient_failures_back_off_and_retry(client, fake_time) -> None:
    responses.get(API + "contacts", status=503)
    responses.get(API + "contacts", body=requests.ConnectionError("reset"))
    responses.get(API + "contacts", status=500, json=error("0x80044339", "lock"))
    responses.get(API + "contacts", json={"value": []})
    assert list(client.rows.query("contacts")) == []
    assert len(fake_time.slept) == 3
    assert fake_time.slept[2] > fake_time.slept[0]


@responses.activate
def test_a_transient_retry_after_is_honoured(client, fake_time) -> None:
    responses.get(API + "contacts", status=503, headers={"Retry-After": "12"})
    responses.get(API + "contacts", json={"value": []})
    list(client.rows.query("contacts"))
    assert fake_time.slept == [12.0]


@responses.activate
def test_retries_stop_after_max_attempts(client) -> None:
    responses.get(API + "contacts", status=503)
    with pytest.raises(TransientError):
        list(client.rows.query("contacts"))
    assert len(responses.calls) == 4


@responses.activate
def test_a_401_is_retried_once_with_a_fresh_token(fake_time) -> None:
    tokens = Tokens()
    client = make_client(fake_time, tokens)
    responses.get(
        API + "contacts",
        status=401,
        match=[matchers.header_matcher({"Authorization": "Bearer tok-0"})],
    )
    responses.get(API + "contacts", json={"value": []})
    assert list(client.rows.query("contacts")) == []
    assert tokens.invalidated == 1
    assert responses.calls[1].request.headers["Authorization"] == "Bearer tok-1"


@responses.activate
def test_a_401_that_persists_and_a_403_are_auth_errors(fake_time) -> None:
    tokens = Tokens()
    client = make_client(fake_time, tokens)
    responses.get(API + "contacts", status=401)
    with pytest.raises(AuthError):
        list(client.rows.query("contacts"))
    assert len(responses.calls) == 2
    responses.replace(responses.GET, API + "contacts", status=403, json=error("0x80040220"))
    with pytest.raises(AuthError) as caught:
        list(client.rows.query("contacts"))
    assert caught.value.code == "0x80040220"
    assert len(responses.calls) == 3


@pytest.mark.parametrize(
    ("status", "payload", "expected", "calls"),
    [
        (400, error("0x8004431A", "PicklistValueOutOfRange"), PermanentError, 1),
        (404, error("0x80060891"), NotFoundError, 1),
        (412, error("0x80040333", "DuplicateRecordsFound"), PermanentError, 1),
        (504, None, TransientError, 4),
        (500, error("0x80044339"), TransientError, 4),
    ],
)
@responses.activate
def test_each_failure_is_raised_as_classified_and_retried_only_when_it_can_pass(
    client, status, payload, expected, calls
) -> None:
    responses.patch(API + "contacts(mbr_memberno='1')", status=status, json=payload)
    with pytest.raises(expected) as caught:
        client.rows.update("contacts", {"mbr_memberno": "1"}, {"x": 1})
    assert type(caught.value) is expected
    assert len(responses.calls) == calls


# -- $batch ------------------------------------------------------------------------------------


@responses.activate
def test_batch_sends_multipart_and_returns_each_part_and_operation(client) -> None:
    responses.post(
        API + "$batch", body=BATCH_RESPONSE, status=200, content_type=BATCH_RESPONSE_TYPE
    )
    payment = BatchRequest(
        "PATCH",
        "new_payments(new_externalref='SWISH-8F2A11C0')",
        {"If-None-Match": "*"},
        {"new_amount": 250.0},
    )
    member = BatchRequest("PATCH", "contacts(new_memberno='M-10023')", {"If-Match": "*"}, {"a": 1})
    note = BatchRequest("POST", "annotations", {}, {"subject": "s"})
    other = BatchRequest("PATCH", "contacts(new_memberno='M-99999')", {"If-Match": "*"}, {"x": 1})
    result = client.batch.execute([ChangeSet([payment, member, note]), other])
    assert [p.status for p in result.parts] == [204, 204, 204, 404]
    assert [op.state for op in result.operations] == ["ok", "ok", "ok", "failed"]
    assert isinstance(result.operations[3].error, NotFoundError)
    sent = responses.calls[0].request
    assert sent.headers["Prefer"] == "odata.continue-on-error"
    assert sent.headers["Content-Type"].startswith("multipart/mixed; boundary=")
    assert sent.body.count(b"MSCRM.SuppressCallbackRegistrationExpanderJob: true") == 4
    for cid in (b"1", b"2", b"3"):  # given to every change-set operation, so failures name one
        assert b"Content-ID: " + cid + b"\r\n" in sent.body
    assert payment.headers == {"If-None-Match": "*"}  # the caller's requests are untouched
    assert payment.content_id is None


@responses.activate
def test_a_batch_stopped_at_a_failure_reports_the_rest_as_not_executed(client) -> None:
    stopped = (
        "--batchresponse_1\r\nContent-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 400 Bad Request\r\n"
        "Content-Type: application/json; odata.metadata=minimal\r\n\r\n"
        '{"error":{"code":"0x80044331","message":"A validation error occurred."}}\r\n'
        "--batchresponse_1--\r\n"
    )
    responses.post(
        API + "$batch",
        status=400,
        body=stopped,
        content_type="multipart/mixed; boundary=batchresponse_1",
    )
    items = [
        BatchRequest("PATCH", "contacts(mbr_memberno='1')", {}, {"x": "too long"}),
        BatchRequest("PATCH", "contacts(mbr_memberno='2')", {}, {"x": 1}),
    ]
    result = client.batch.execute(items, continue_on_error=False)
    assert [op.state for op in result.operations] == ["failed", "not_executed"]
    assert result.operations[0].error.code == "0x80044331"
    assert "Prefer" not in responses.calls[0].request.headers


@responses.activate
def test_a_throttled_batch_is_retried_whole(client) -> None:
    responses.post(API + "$batch", status=429, headers={"Retry-After": "1"})
    responses.post(API + "$batch", body=BATCH_RESPONSE, content_type=BATCH_RESPONSE_TYPE)
    assert len(client.batch.parts([BatchRequest("GET", "contacts")])) == 4
    assert len(responses.calls) == 2


@responses.activate
def test_a_batch_refused_as_a_whole_raises(client) -> None:
    responses.post(API + "$batch", status=400, json=error("0x80048d19", "malformed"))
    with pytest.raises(PermanentError):
        client.batch.parts([BatchRequest("GET", "contacts")])


def test_more_than_1000_operations_are_refused(client) -> None:
    with pytest.raises(BridgeError, match="1,000"):
        client.batch.parts([BatchRequest("GET", "contacts")] * 1001)


# -- bulk writes -------------------------------------------------------------------------------


@responses.activate
def test_many_rows_are_upserted_through_batch_with_one_result_each(client) -> None:
    def leaf(status: str) -> str:
        return (
            "--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"\r\nHTTP/1.1 {status}\r\n\r\n\r\n"
        )

    answer = leaf("204 No Content") + leaf("400 Bad Request") + "--b--\r\n"
    responses.post(API + "$batch", body=answer, content_type="multipart/mixed; boundary=b")
    rows = [({"mbr_memberno": str(n)}, {"x": n}) for n in range(3)]
    results = client.rows.upsert_many("contacts", rows)
    assert [r.ok for r in results] == [True, False, False]
    assert isinstance(results[1].error, PermanentError)
    assert isinstance(results[2].error, TransientError)  # not executed: safe to send again
    assert len(responses.calls) == 1
    assert b"If-Match" not in responses.calls[0].request.body


# -- change tracking ---------------------------------------------------------------------------


@responses.activate
def test_change_tracking_returns_changes_deletions_and_the_next_link(client) -> None:
    delta = API + "contacts?$select=mbr_memberno&$deltatoken=919042%21"
    responses.get(
        API + "contacts",
        json={"value": [{"contactid": "1", "mbr_memberno": "100001"}], "@odata.deltaLink": delta},
        match=[matchers.header_matcher({"Prefer": "odata.track-changes,odata.maxpagesize=2"})],
    )
    first = client.changes.since("contacts", ["mbr_memberno"])
    assert (len(first.changed), first.deleted, first.delta_link) == (1, [], delta)
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
    second = client.changes.since("contacts", ["mbr_memberno"], delta)
    assert (second.changed, second.deleted, second.delta_link) == ([], ["9"], delta + "2")
    assert not second.resynced


@responses.activate
def test_an_expired_delta_link_falls_back_to_a_full_read(client) -> None:
    expired = API + "contacts?$deltatoken=1%21old"
    responses.get(expired, status=400, json=error("0x80044352", "expired"))
    responses.get(API + "contacts", json={"value": [{"contactid": "1"}], "@odata.deltaLink": "n"})
    delta = client.changes.since("contacts", ["contactid"], expired)
    assert delta.resynced
    assert (delta.delta_link, len(delta.changed)) == ("n", 1)
    responses.get(expired, status=400, json=error("0x80044352", "expired"))
    with pytest.raises(PermanentError):
        client.changes.since("contacts", ["contactid"], expired, resync_on_expired=False)


# -- settings ----------------------------------------------------------------------------------


@responses.activate
def test_a_client_from_settings_spreads_over_every_app_user_with_the_opt_in_headers() -> None:
    settings = DataverseSettings(
        url=ORG,
        client_id="main",
        client_secret="s1",  # type: ignore[arg-type]
        app_users=[{"client_id": "second", "client_secret": "s2"}],  # type: ignore[list-item]
        max_concurrency=3,
        suppress_flows=True,
        bypass_business_logic="CustomSync,CustomAsync",
        duplicate_detection=True,
    )
    client = DataverseClient.from_settings(
        settings, requests.Session(), token_for=lambda user: lambda: f"token-{user.client_id}"
    )
    assert [lane.name for lane in client.transport.pool.lanes] == ["main", "second"]
    assert {lane.gate.max_concurrency for lane in client.transport.pool.lanes} == {3}
    responses.patch(API + "contacts(mbr_memberno='1')", status=204)
    client.rows.upsert("contacts", {"mbr_memberno": "1"}, {})
    client.rows.upsert("contacts", {"mbr_memberno": "1"}, {})
    sent = [c.request.headers for c in responses.calls]
    assert {h["Authorization"] for h in sent} == {"Bearer token-main", "Bearer token-second"}
    assert sent[0]["MSCRM.SuppressCallbackRegistrationExpanderJob"] == "true"
    assert sent[0]["MSCRM.BypassBusinessLogicExecution"] == "CustomSync,CustomAsync"
    assert sent[0]["MSCRM.SuppressDuplicateDetection"] == "false"
