"""$batch bodies, against the request/response pair in reference dataverse.md §4 (``wire/``)."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from dynamics_bridge.dataverse.batch import (
    BatchPart,
    BatchRequest,
    ChangeSet,
    build_batch,
    correlate,
    parse_batch_request,
    parse_batch_response,
    render_batch_response,
)
from dynamics_bridge.errors import DuplicateKeyError, NotFoundError

WIRE = Path(__file__).parent / "wire"
REQUEST = (WIRE / "batch_request.http").read_bytes()
REQUEST_TYPE = 'multipart/mixed; boundary="batch_7f3c"'
RESPONSE = (WIRE / "batch_response.http").read_bytes()
RESPONSE_TYPE = "multipart/mixed; boundary=batchresponse_5d0e"
SWISH_BODY = {
    "new_name": "Swish 250.00 SEK",
    "new_amount": 250.00,
    "new_paidon": "2025-03-14T09:12:44Z",
    "new_method": 100000000,
    "new_Member@odata.bind": "/contacts(new_memberno='M-10023')",
}


def reference_items() -> list[BatchRequest | ChangeSet]:
    """The reference's composed request, as the client would be asked to send it."""
    return [
        ChangeSet(
            [
                BatchRequest(
                    "PATCH",
                    "new_payments(new_externalref='SWISH-8F2A11C0')",
                    {"MSCRM.SuppressCallbackRegistrationExpanderJob": "true"},
                    SWISH_BODY,
                    "1",
                ),
                BatchRequest(
                    "PATCH",
                    "contacts(new_memberno='M-10023')",
                    {"If-Match": "*"},
                    {"new_lastpaymentdate": "2025-03-14", "new_membershipstatus": 100000001},
                    "2",
                ),
                BatchRequest(
                    "POST",
                    "annotations",
                    {},
                    {
                        "subject": "Payment received (Swish)",
                        "notetext": "250.00 SEK, ref SWISH-8F2A11C0",
                        "objectid_contact@odata.bind": "/contacts(new_memberno='M-10023')",
                    },
                    "3",
                ),
            ]
        ),
        BatchRequest(
            "PATCH",
            "contacts(new_memberno='M-99999')",
            {"If-Match": "*"},
            {"new_membershipstatus": 100000002},
        ),
    ]


def shape(items: list[BatchRequest | ChangeSet]) -> list:
    """What matters on the wire, without boundaries and header order."""

    def one(r: BatchRequest) -> tuple:
        headers = {k.lower(): v for k, v in r.headers.items() if k.lower() != "content-type"}
        return (r.method, r.url, r.content_id, headers, r.body)

    return [[one(r) for r in i.requests] if isinstance(i, ChangeSet) else one(i) for i in items]


def test_what_we_build_is_what_the_reference_request_says() -> None:
    content_type, body = build_batch(reference_items())
    assert shape(parse_batch_request(content_type, body)) == shape(
        parse_batch_request(REQUEST_TYPE, REQUEST)
    )


def test_a_built_batch_uses_crlf_request_lines_and_entry_bodies() -> None:
    content_type, body = build_batch(reference_items())
    assert content_type.startswith('multipart/mixed; boundary="batch_')
    assert (
        b"\r\nPATCH /api/data/v9.2/new_payments(new_externalref='SWISH-8F2A11C0') HTTP/1.1\r\n"
        in body
    )
    assert b"Content-ID: 2\r\n" in body
    assert b"Content-Type: application/json; type=entry\r\n" in body
    assert b"\n" not in body.replace(b"\r\n", b"")
    message = email.message_from_bytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body, policy=email.policy.HTTP
    )
    assert [p.get_content_type() for p in message.iter_parts()] == [
        "multipart/mixed",
        "application/http",
    ]


def test_each_part_of_the_reference_response_is_read() -> None:
    parts = parse_batch_response(RESPONSE_TYPE, RESPONSE)
    assert [(p.status, p.content_id, p.change_set, p.position) for p in parts] == [
        (204, "1", 0, 0),
        (204, "2", 0, 0),
        (204, "3", 0, 0),
        (404, None, None, 1),
    ]
    assert parts[1].headers["OData-EntityId"].endswith("contacts(new_memberno='M-10023')")
    assert (
        parts[2].headers["Location"].endswith("annotations(9e7d2c41-5a10-f011-8406-000d3a2b1c77)")
    )
    assert parts[3].body["error"]["code"] == "0x80060891"


def test_the_reference_pair_correlates_to_one_result_per_request() -> None:
    items = reference_items()
    results = correlate(items, parse_batch_response(RESPONSE_TYPE, RESPONSE))
    assert [(r.state, r.status) for r in results] == [
        ("ok", 204),
        ("ok", 204),
        ("ok", 204),
        ("failed", 404),
    ]
    assert isinstance(results[3].error, NotFoundError)
    assert results[3].error.code == "0x80060891"
    assert results[3].request is items[1]


def create_only(url: str, cid: str | None) -> BatchRequest:
    return BatchRequest("PATCH", url, {"If-None-Match": "*"}, {"x": 1}, cid)


def dup_part(cid: str | None, position: int) -> BatchPart:
    body = {"error": {"code": "0x80040237", "message": "exists"}}
    return BatchPart(412, {}, body, cid, position, position)


def test_a_failed_change_set_names_its_culprit_and_rolls_back_the_rest() -> None:
    items = [ChangeSet([create_only("p(k='1')", "1"), create_only("p(k='2')", "2")])]
    results = correlate(items, [dup_part("2", 0)])
    assert [r.state for r in results] == ["rolled_back", "failed"]
    assert isinstance(results[1].error, DuplicateKeyError)
    assert results[0].status is None
    assert isinstance(results[0].error, DuplicateKeyError)  # the reason is kept


def test_an_unattributable_change_set_failure_rolls_back_every_operation() -> None:
    items = [ChangeSet([create_only("p(k='1')", None), create_only("p(k='2')", None)])]
    results = correlate(items, [dup_part(None, 0)])
    assert [r.state for r in results] == ["rolled_back", "rolled_back"]


def test_a_single_operation_change_set_failure_is_that_operation() -> None:
    items = [ChangeSet([create_only("p(k='1')", None)])]
    (result,) = correlate(items, [dup_part(None, 0)])
    assert result.state == "failed"


def test_parts_that_never_came_back_were_not_executed() -> None:
    items = [
        create_only("p(k='1')", None),
        ChangeSet([create_only("p(k='2')", "2")]),
        create_only("p(k='3')", None),
    ]
    results = correlate(items, [dup_part(None, 0)])
    assert [r.state for r in results] == ["failed", "not_executed", "not_executed"]


def test_the_sandbox_reads_back_what_the_client_built_and_renders_what_it_parses() -> None:
    req = BatchRequest(
        "PATCH",
        "contacts(mbr_memberno='O''Brien')",
        {"If-Match": "*"},
        {"mbr_arrears": 0.0, "name": "Åsa"},
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
    assert inner.body == {"mbr_arrears": 0.0, "name": "Åsa"}
    assert inner.headers["If-Match"] == "*"
    assert (get.method, get.body) == ("GET", None)
    rendered_type, rendered = render_batch_response(
        [[BatchPart(204, {"OData-EntityId": "x"}, None, "7")], BatchPart(200, {}, {"value": []})]
    )
    parts = parse_batch_response(rendered_type, rendered)
    assert [(p.status, p.content_id, p.position) for p in parts] == [(204, "7", 0), (200, None, 1)]


def test_a_content_id_reference_stays_relative_in_the_request_line_and_in_a_bind() -> None:
    note = BatchRequest("POST", "annotations", {}, {"subject": "s"}, "1")
    link = BatchRequest(
        "PATCH", "contacts(new_memberno='M-1')", {}, {"mbr_Note@odata.bind": "$1"}, "2"
    )
    touch = BatchRequest("PATCH", "$1", {}, {"notetext": "t"}, "3")
    content_type, body = build_batch([ChangeSet([note, link, touch])])
    assert b"\r\nPATCH $1 HTTP/1.1\r\n" in body
    assert b'"mbr_Note@odata.bind":"$1"' in body
    (change_set,) = parse_batch_request(content_type, body)
    assert [r.content_id for r in change_set.requests] == ["1", "2", "3"]
