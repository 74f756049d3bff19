"""The Dataverse MemberStore: requests it makes and how change-set answers become results.

Batch answers are written here in the multipart shape of reference dataverse.md §4."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import unquote

import pytest
import requests
import responses

from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.pacing import AppUserGate, AppUserPool
from dynamics_bridge.dataverse.store import DataverseMemberStore
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.pipeline import MemberRow, WriteUnit
from dynamics_bridge.settings import DataverseSettings
from tests.support.dataverse_batch import batch_response, part

ORG = "https://org.crm4.dynamics.com"
API = f"{ORG}/api/data/v9.2/"
MAPPING = load_mapping()


@pytest.fixture
def store() -> DataverseMemberStore:
    client = DataverseClient(
        DataverseSettings(url=ORG, max_attempts=2),
        requests.Session(),
        AppUserPool.single(lambda: "t", AppUserGate(sleep=lambda s: None)),
    )
    return DataverseMemberStore(client, MAPPING)


def unit(key: str, *event_ids: str, changes: dict | None = None) -> WriteUnit:
    member = MemberRow(key, f"id-{key}", 'W/"5"', {})
    return WriteUnit(
        member,
        [(e, {"mbr_amount": 250.0}) for e in event_ids],
        changes if changes is not None else {"mbr_paymentstatus": 100000000},
    )


@responses.activate
def test_members_are_read_by_their_key_column_with_etags(store) -> None:
    responses.get(
        API + "contacts",
        json={"value": [{"@odata.etag": 'W/"9"', "contactid": "g1", "mbr_memberno": "100001"}]},
    )
    rows = store.read_members("mbr_memberno", ["100001", "100002"], ["mbr_paymentstatus"])
    assert rows["100001"] == MemberRow(
        "100001",
        "g1",
        'W/"9"',
        {"@odata.etag": 'W/"9"', "contactid": "g1", "mbr_memberno": "100001"},
    )
    url = unquote(responses.calls[0].request.url)
    assert "$select=mbr_memberno,mbr_paymentstatus,contactid" in url


@responses.activate
def test_a_unit_is_one_change_set_create_only_rows_and_an_etag_guarded_update(store) -> None:
    responses.post(
        API + "$batch",
        body=batch_response([part("204 No Content", "1"), part("204 No Content", "2")]),
        content_type="multipart/mixed; boundary=batchresponse_1",
    )
    assert [r.status for r in store.write([unit("100001", "swish-1")])] == ["ok"]
    body = responses.calls[0].request.body.decode()
    assert "PATCH /api/data/v9.2/mbr_payments(mbr_eventid='swish-1') HTTP/1.1" in body
    assert "If-None-Match: *" in body
    assert "PATCH /api/data/v9.2/contacts(mbr_memberno='100001') HTTP/1.1" in body
    assert 'If-Match: W/"5"' in body


@responses.activate
def test_a_duplicate_row_names_its_event(store) -> None:
    dup = (
        '{"error":{"code":"0x80040237",'
        '"message":"A record with matching key values already exists."}}'
    )
    responses.post(
        API + "$batch",
        body=batch_response(
            [part("204 No Content", "1"), part("412 Precondition Failed", "2", dup)]
        ),
        content_type="multipart/mixed; boundary=batchresponse_1",
    )
    (result,) = store.write([unit("100001", "swish-1", "swish-2", changes={})])
    assert (result.status, result.event_id) == ("duplicate", "swish-2")


@responses.activate
def test_a_stale_etag_is_a_conflict_and_a_missing_member_is_named(store) -> None:
    conflict = '{"error":{"code":"0x80060882","message":"version mismatch"}}'
    gone = '{"error":{"code":"0x80060891","message":"does not exist"}}'
    responses.post(
        API + "$batch",
        body=batch_response(
            [part("412 Precondition Failed", "2", conflict)], [part("404 Not Found", "4", gone)]
        ),
        content_type="multipart/mixed; boundary=batchresponse_1",
    )
    results = store.write([unit("100001", "swish-1"), unit("100002", "swish-2")])
    assert [r.status for r in results] == ["conflict", "member_missing"]


@responses.activate
def test_a_batch_that_keeps_failing_is_transient_for_every_unit(store) -> None:
    responses.post(API + "$batch", status=503)
    assert [r.status for r in store.write([unit("1", "a"), unit("2", "b")])] == [
        "transient",
        "transient",
    ]


@responses.activate
def test_units_are_packed_into_batches_of_at_most_1000_operations(store) -> None:
    responses.post(
        API + "$batch",
        body=batch_response([part("204 No Content", "1")]),
        content_type="multipart/mixed; boundary=batchresponse_1",
    )
    units = [unit(str(i), f"e{i}", changes={}) for i in range(1500)]
    store.write(units)
    assert len(responses.calls) == 2


def get_part(rows: list[dict]) -> str:
    return (
        "--b\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; odata.metadata=minimal\r\n\r\n"
        f"{json.dumps({'value': rows})}\r\n"
    )


@responses.activate
def test_payment_history_of_several_members_is_one_batch_of_gets(store) -> None:
    event = {
        "event_id": "swish-2",
        "source": "swish",
        "kind": "payment.failed",
        "member_ref": {"kind": "member_number", "value": "100001"},
        "amount_minor": 25000,
        "currency": "SEK",
        "occurred_at": "2026-02-10T09:00:00+00:00",
        "provider_ref": "X",
        "reason_code": None,
        "reason_text": None,
        "origin": "test",
    }
    rows = [
        {
            "mbr_eventid": "swish-2",
            "mbr_event": json.dumps(event),
            "mbr_memberbefore": json.dumps({"mbr_arrears": 0}),
        },
        {"mbr_eventid": "swish-old"},  # written before the history columns
    ]
    responses.post(
        API + "$batch",
        body=get_part(rows) + get_part([]) + "--b--\r\n",
        content_type="multipart/mixed; boundary=b",
    )
    since = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)
    wanted = [(MemberRow(k, f"id-{k}", None, {}), since) for k in ("100001", "100002")]
    found = store.payment_history(wanted)
    assert len(responses.calls) == 1
    lines = [
        line
        for line in unquote(responses.calls[0].request.body.decode()).split("\r\n")
        if line.startswith("GET ")
    ]
    assert len(lines) == 2
    assert "_mbr_member_value eq id-100001 and mbr_occurredon ge 2026-01-10T09:00:00Z" in lines[0]
    first, legacy = found["100001"]
    assert first.event is not None
    assert first.event.event_id == "swish-2"
    assert first.before == {"mbr_arrears": 0}
    assert (legacy.event, legacy.before) == (None, None)
    assert found["100002"] == []


@responses.activate
def test_a_replay_updates_later_rows_in_the_same_change_set(store) -> None:
    responses.post(
        API + "$batch",
        body=batch_response([part("204 No Content", str(i)) for i in (1, 2, 3)]),
        content_type="multipart/mixed; boundary=batchresponse_1",
    )
    replay = WriteUnit(
        MemberRow("100001", "id-100001", 'W/"5"', {}),
        [("swish-1", {"mbr_amount": 250.0})],
        {"mbr_arrears": 500.0},
        [("swish-2", {"mbr_memberbefore": "{}"})],
    )
    assert [r.status for r in store.write([replay])] == ["ok"]
    body = responses.calls[0].request.body.decode()
    update = body.index("PATCH /api/data/v9.2/mbr_payments(mbr_eventid='swish-2') HTTP/1.1")
    assert "If-Match: *" in body[update : update + 200]  # update-only: the row exists
