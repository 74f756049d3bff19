"""The APSIS stand-in's own rules, driven through ``handle`` without sockets and with a fake
clock: what it refuses, and how its limits answer (429 with Retry-After)."""

from __future__ import annotations

import json

import pytest
from dynamics_bridge_sandbox.apsis import (
    Answer,
    ApsisChaos,
    ApsisLimits,
    ApsisStandIn,
    default_model,
)

MODEL = default_model()
SECTION = MODEL.section
KS = "com.apsis1.keyspaces.crm-id"
ATTRS = f"/v2/audience/keyspaces/{KS}/profiles/M-1/sections/{SECTION}/attributes"
EVENTS = f"/audience/keyspaces/{KS}/profiles/M-1/sections/{SECTION}/events"
IMPORTS = f"/v2/audience/sections/{SECTION}/imports"
MERGE = "application/merge-patch+json"


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def call(
    box: ApsisStandIn,
    method: str,
    path: str,
    body: object = None,
    *,
    token: str | None = "auto",
    content_type: str = "application/json",
    raw: bytes | None = None,
) -> Answer:
    headers = {"content-type": content_type}
    if token == "auto":
        token = box.handle(
            "POST",
            "/oauth/token",
            {},
            json.dumps(
                {
                    "grant_type": "client_credentials",
                    "client_id": box.client_id,
                    "client_secret": box.client_secret,
                }
            ).encode(),
        ).body["access_token"]
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    return box.handle(method, path, headers, data)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(clock) -> ApsisStandIn:
    standin = ApsisStandIn(model=MODEL, clock=clock)
    call(
        standin,
        "POST",
        f"/audience/keyspaces/{KS}/sections/{SECTION}/profiles",
        {"profile_key": "M-1"},
    )
    return standin


def attr(name: str) -> str:
    return next(a.discriminator for a in MODEL.attributes if a.name == name)


def event_version(name: str) -> str:
    return next(e.version_id for e in MODEL.events if e.name == name)


def test_a_request_without_a_token_is_401(box) -> None:
    assert call(box, "GET", "/audience/sections", token=None).status == 401


def test_a_token_is_a_jwt_with_exp_and_expires_in(box) -> None:
    grant = call(
        box,
        "POST",
        "/oauth/token",
        token=None,
        raw=json.dumps(
            {
                "grant_type": "client_credentials",
                "client_id": box.client_id,
                "client_secret": box.client_secret,
            }
        ).encode(),
    ).body
    assert grant["access_token"].count(".") == 2
    assert grant["expires_in"] == 86400


def test_the_token_endpoint_answers_429_after_ten_a_minute(box, clock) -> None:
    for _ in range(9):  # the fixture already asked once
        call(box, "GET", "/audience/sections")
    clock.now += 20
    answer = box.handle("POST", "/oauth/token", {}, b"{}")
    assert answer.status == 429
    assert float(answer.headers["Retry-After"]) == pytest.approx(40.0)
    assert box.throttled["token"] == 1


def test_the_account_limit_answers_429_until_the_window_moves(clock) -> None:
    box = ApsisStandIn(limits=ApsisLimits(account=(2, 1.0)), clock=clock)
    assert call(box, "GET", "/audience/sections").status == 200
    clock.now += 0.4
    assert call(box, "GET", "/audience/sections").status == 200
    answer = call(box, "GET", "/audience/sections")
    assert answer.status == 429
    assert float(answer.headers["Retry-After"]) == pytest.approx(0.6)
    clock.now += 0.6
    assert call(box, "GET", "/audience/sections").status == 200


def test_the_profile_limit_counts_per_key(clock) -> None:
    box = ApsisStandIn(limits=ApsisLimits(profile=(1, 1.0)), clock=clock)
    create = f"/audience/keyspaces/{KS}/sections/{SECTION}/profiles"
    assert call(box, "POST", create, {"profile_key": "M-1"}).status == 201
    assert call(box, "POST", create, {"profile_key": "M-2"}).status == 201
    assert call(box, "POST", create, {"profile_key": "M-1"}).status == 429
    assert box.throttled["profile"] == 1


def test_attributes_need_a_merge_patch(box) -> None:
    assert call(box, "PATCH", ATTRS, {attr("email"): "a@example.org"}).status == 415


def test_an_attribute_of_the_wrong_type_is_400(box) -> None:
    answer = call(box, "PATCH", ATTRS, {attr("membership_end"): "June"}, content_type=MERGE)
    assert answer.status == 400
    assert "date" in answer.body["detail"]


def test_an_unknown_attribute_is_400(box) -> None:
    answer = call(box, "PATCH", ATTRS, {"usercreated.attributes.x": 1}, content_type=MERGE)
    assert answer.status == 400


def test_attributes_of_a_profile_that_does_not_exist_are_404(box) -> None:
    path = ATTRS.replace("M-1", "M-404")
    assert call(box, "PATCH", path, {attr("email"): "a@b.se"}, content_type=MERGE).status == 404


def item(**overrides) -> dict:
    return {
        "event_time": "2025-03-14T09:12:00Z",
        "version_id": event_version("payment_confirmed"),
        "data": {"payment_id": "PAY-1"},
        **overrides,
    }


def test_an_event_is_recorded_by_type(box) -> None:
    assert call(box, "POST", EVENTS, {"items": [item()]}).status == 204
    assert box.event_counts() == {"payment_confirmed": 1}


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        ({"data": {"shoe_size": 42}}, "unknown fields"),
        ({"event_time": "14 March 2025"}, "RFC 3339"),
        ({"version_id": "nope"}, "unknown"),
    ],
)
def test_an_event_apsis_would_not_take_is_400(box, bad, detail) -> None:
    answer = call(box, "POST", EVENTS, {"items": [item(**bad)]})
    assert answer.status == 400
    assert detail in answer.body["detail"]
    assert box.event_counts() == {}


def test_an_event_on_a_deprecated_version_is_400(box) -> None:
    versions = call(box, "GET", f"/audience/sections/{SECTION}/events").body["items"][0]["versions"]
    old = next(v["id"] for v in versions if v["deprecated_at"])
    assert call(box, "POST", EVENTS, {"items": [item(version_id=old)]}).status == 400


def test_events_for_an_unknown_profile_are_404(box) -> None:
    assert call(box, "POST", EVENTS.replace("M-1", "M-404"), {"items": [item()]}).status == 404


def test_a_body_over_100_kb_is_413(box) -> None:
    answer = call(box, "POST", EVENTS, raw=b'{"items": ["' + b"x" * 100_001 + b'"]}')
    assert answer.status == 413


def test_only_opt_in_and_opt_out_can_be_set(box) -> None:
    path = f"/v2/audience/keyspaces/{KS}/profiles/M-1/sections/{SECTION}/consents"
    consent = {
        "topic_discriminator": MODEL.topics["newsletter"],
        "channel_discriminator": "com.apsis1.channels.email",
        "type": "confirmed-opt-in",
    }
    assert call(box, "POST", path, consent).status == 400


def test_an_injected_fault_answers_once_with_its_retry_after(box) -> None:
    box.fail_next(503, retry_after=0.5)
    first = call(box, "GET", "/audience/sections")
    assert (first.status, first.headers["Retry-After"]) == (503, "0.500")
    assert call(box, "GET", "/audience/sections").status == 200


def import_body() -> dict:
    winback = next(a for a in MODEL.attributes if a.name == "winback_candidate")
    return {
        "keyspace_mapping": {"keyspace_discriminator": KS, "field_selector": "profile_key"},
        "attribute_mappings": [
            {"field_selector": "wb", "attribute_version_id": winback.version_id}
        ],
    }


def multipart(fields: dict[str, str], csv: bytes) -> tuple[str, bytes]:
    boundary = "XyZ"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n".encode()
        + csv
        + b"\r\n"
    )
    return f"multipart/form-data; boundary={boundary}", b"".join(
        parts
    ) + f"--{boundary}--\r\n".encode()


def upload(box: ApsisStandIn, created: dict, csv: bytes, **changes: str) -> Answer:
    path = created["file_upload_url"].removeprefix(box.url)
    content_type, body = multipart({**created["file_upload_body"], **changes}, csv)
    return box.handle("POST", path, {"content-type": content_type}, body)


def test_an_import_runs_from_upload_through_polling_to_completion(box) -> None:
    created = call(box, "POST", IMPORTS, import_body()).body
    status_path = f"/audience/sections/{SECTION}/imports/{created['import_id']}"
    assert call(box, "GET", status_path).body["result"]["status"] == "waiting_for_file"
    assert (
        upload(box, created, b"profile_key,wb\r\nM-1,true\r\nM-2,\r\nM-3,maybe\r\n").status == 204
    )
    states = [call(box, "GET", status_path).body["result"] for _ in range(3)]
    assert [s["status"] for s in states] == ["in_progress", "in_progress", "completed"]
    assert (states[-1]["rows"], states[-1]["failed_rows"]) == (3, 1)
    assert box.profile("M-1")["attributes"] == {"winback_candidate": True}
    assert box.profile("M-2")["attributes"] == {}  # an empty cell leaves the attribute alone
    assert box.profile("M-3") is None


def test_an_upload_with_an_altered_form_field_is_refused(box) -> None:
    created = call(box, "POST", IMPORTS, import_body()).body
    assert upload(box, created, b"profile_key\r\n", policy="forged").status == 403


def test_an_upload_carrying_the_api_token_is_refused(box) -> None:
    created = call(box, "POST", IMPORTS, import_body()).body
    content_type, body = multipart(created["file_upload_body"], b"profile_key\r\n")
    path = created["file_upload_url"].removeprefix(box.url)
    answer = box.handle(
        "POST", path, {"content-type": content_type, "authorization": "Bearer t"}, body
    )
    assert answer.status == 400


def test_too_many_pending_imports_answer_429(box) -> None:
    for _ in range(3):
        assert call(box, "POST", IMPORTS, import_body()).status == 201
    answer = call(box, "POST", IMPORTS, import_body())
    assert answer.status == 429
    assert box.throttled["pending_imports"] == 1


def test_an_import_mapping_an_unknown_attribute_version_is_400(box) -> None:
    body = import_body()
    body["attribute_mappings"][0]["attribute_version_id"] = "nope"
    assert call(box, "POST", IMPORTS, body).status == 400


def test_the_env_points_the_bridge_at_the_stand_in_with_every_name_mapped(box) -> None:
    env = box.env
    assert env["BRIDGE_APSIS__SECTION"] == SECTION
    assert json.loads(env["BRIDGE_APSIS__EVENT_TYPES"])["payment_confirmed"] == next(
        e.discriminator for e in MODEL.events if e.name == "payment_confirmed"
    )
    assert set(json.loads(env["BRIDGE_APSIS__TAGS"])) == {
        "winback",
        "arrears",
        "new_member",
        "autogiro",
        # the activation side's segments (mappings/segments.yaml)
        "onboarding",
        "at_risk",
        "lapsed",
        "engagement_high",
        "engagement_medium",
        "engagement_low",
        "churn_risk_high",
        "pays_swish",
        "pays_autogiro",
        "pays_invoice",
        "pays_efaktura",
        "pays_bankgiro",
    }


# -- chaos: faults before any work, and an answer lost after it --------------------------------


def test_chaos_answers_429_and_503_before_any_work(clock) -> None:
    box = ApsisStandIn(model=MODEL, clock=clock, chaos=ApsisChaos(throttled=0.5, unavailable=0.5))
    create = f"/audience/keyspaces/{KS}/sections/{SECTION}/profiles"
    answer = call(box, "POST", create, {"profile_key": "M-9"})
    assert answer.status in (429, 503)
    assert box.profiles() == {}  # nothing done
    assert sum(box.chaos_seen.values()) == 1
    if answer.status == 429:
        assert float(answer.headers["Retry-After"]) > 0


def test_an_event_post_may_be_stored_and_then_answered_503(box) -> None:
    box.chaos = ApsisChaos(stored_then_unavailable=1.0)
    answer = call(box, "POST", EVENTS, {"items": [item()]})
    assert answer.status == 503
    assert box.event_counts() == {"payment_confirmed": 1}  # stored all the same
    assert box.chaos_seen == {"stored_then_unavailable": 1}


def test_chaos_is_a_share_of_requests_from_its_seed(clock) -> None:
    shares = []
    for _ in range(2):
        box = ApsisStandIn(
            model=MODEL, clock=clock, chaos=ApsisChaos(throttled=0.1, seed=4), wall_clock=clock
        )
        token = box._issue_token()["access_token"]  # one token for all, as the client has
        statuses = []
        for _ in range(400):
            clock.now += 0.02  # under the account's 100 a second
            statuses.append(call(box, "GET", "/audience/sections", token=token).status)
        shares.append(statuses)
    assert shares[0] == shares[1]  # the same seed, the same faults
    assert 20 <= shares[0].count(429) <= 60


# -- the event export (the trigger sweep's read-back) ------------------------------------------


def export_request(**overrides) -> dict:
    return {
        "section_discriminator": SECTION,
        "attributes": [attr("crmid")],
        "events": [MODEL.events[0].discriminator],
        "start_at": "2025-03-14T00:00:00Z",
        "end_at": "2025-03-15T00:00:00Z",
        **overrides,
    }


def test_an_event_export_holds_the_events_of_the_window_once_its_poll_url_is_ready(box) -> None:
    call(box, "POST", EVENTS, {"items": [item(data={"source_event_id": "e1"})]})
    call(box, "POST", EVENTS, {"items": [item(event_time="2025-03-20T09:12:00Z")]})  # outside
    answer = call(box, "POST", "/audience/profiles/exports", export_request())
    assert answer.status == 202
    poll = answer.body["poll_url"].removeprefix(box.url)
    assert call(box, "GET", poll).status == 404  # not ready yet
    ready = call(box, "GET", poll)
    assert ready.status == 200
    (profile,) = ready.body["profiles"].values()
    (event,) = profile["sections"][SECTION]["events"]
    assert event["data"] == {"source_event_id": "e1"}
    assert event["version_id"] == event_version("payment_confirmed")
    assert call(box, "GET", "/audience/profiles/exports/unknown").status == 410


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"attributes": []}, "at least one"),
        ({"events": ["com.apsis1.events.nope"]}, "events"),
        ({"start_at": "yesterday"}, "RFC 3339"),
    ],
)
def test_an_event_export_apsis_would_not_take_is_400(box, overrides, detail) -> None:
    answer = call(box, "POST", "/audience/profiles/exports", export_request(**overrides))
    assert answer.status == 400
    assert detail in answer.body["detail"]


def test_event_exports_are_limited_to_one_a_minute(box, clock) -> None:
    assert call(box, "POST", "/audience/profiles/exports", export_request()).status == 202
    assert call(box, "POST", "/audience/profiles/exports", export_request()).status == 429
    clock.now += 60
    assert call(box, "POST", "/audience/profiles/exports", export_request()).status == 202
