"""$batch bodies, against the request/response pair in reference dataverse.md §4."""

from __future__ import annotations

import email
import email.policy

from dynamics_bridge.dataverse.batch import (
    BatchRequest,
    ChangeSet,
    build_batch,
    parse_batch_request,
    parse_batch_response,
)
from tests.conftest import FIXTURES

RESPONSE = (FIXTURES / "dataverse" / "batch_response.http").read_bytes()
RESPONSE_TYPE = "multipart/mixed; boundary=batchresponse_5d0e"


def test_each_part_of_microsofts_example_response_is_read() -> None:
    parts = parse_batch_response(RESPONSE_TYPE, RESPONSE)
    assert [(p.status, p.content_id, p.change_set) for p in parts] == [
        (204, "1", 0),
        (204, "2", 0),
        (204, "3", 0),
        (404, None, None),
    ]
    assert parts[1].headers["OData-EntityId"].endswith("contacts(new_memberno='M-10023')")
    assert parts[3].body["error"]["code"] == "0x80060891"


def test_a_built_batch_has_a_change_set_with_content_ids_and_crlf() -> None:
    payment = BatchRequest(
        "PATCH",
        "new_payments(new_externalref='SWISH-8F2A11C0')",
        {"If-None-Match": "*"},
        {"new_amount": 250.0},
        content_id="1",
    )
    member = BatchRequest(
        "PATCH",
        "contacts(new_memberno='M-10023')",
        {"If-Match": 'W/"7"'},
        {"new_membershipstatus": 100000001},
        content_id="2",
    )
    other = BatchRequest(
        "PATCH",
        "contacts(new_memberno='M-99999')",
        {"If-Match": "*"},
        {"new_membershipstatus": 100000002},
    )
    content_type, body = build_batch([ChangeSet([payment, member]), other])
    assert content_type.startswith('multipart/mixed; boundary="batch_')
    assert (
        b"\r\nPATCH /api/data/v9.2/new_payments(new_externalref='SWISH-8F2A11C0') HTTP/1.1\r\n"
        in body
    )
    assert b"Content-ID: 2\r\n" in body
    assert b"Content-Type: application/json; type=entry" in body
    message = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body, policy=email.policy.HTTP
    )
    top = list(message.iter_parts())
    assert [p.get_content_type() for p in top] == ["multipart/mixed", "application/http"]


def test_the_sandbox_reads_back_what_the_client_built() -> None:
    req = BatchRequest(
        "PATCH",
        "contacts(mbr_memberno='O''Brien')",
        {"If-Match": "*"},
        {"mbr_arrears": 0.0},
        content_id="7",
    )
    content_type, body = build_batch([ChangeSet([req]), BatchRequest("GET", "contacts?$top=1")])
    (change_set, get) = parse_batch_request(content_type, body)
    assert isinstance(change_set, ChangeSet)
    (inner,) = change_set.requests
    assert (inner.method, inner.url, inner.content_id) == (
        "PATCH",
        "/api/data/v9.2/contacts(mbr_memberno='O''Brien')",
        "7",
    )
    assert inner.body == {"mbr_arrears": 0.0}
    assert inner.headers["If-Match"] == "*"
    assert (get.method, get.body) == ("GET", None)
