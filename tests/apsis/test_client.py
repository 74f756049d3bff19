"""The APSIS client against mocked HTTP. Expected paths and bodies are written out from
reference apsis.md §3 (not produced by the client), so a drift in the client fails here."""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP

import pytest
import requests
from responses import matchers

from dynamics_bridge.errors import (
    AmbiguousError,
    AuthError,
    ConfigError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from tests.apsis.conftest import BASE

KEY = "M-2291"
PROFILE = f"{BASE}/audience/keyspaces/com.apsis1.keyspaces.crm-id/profiles/M-2291"
IN_SECTION = f"{PROFILE}/sections/usercreated.sections.members-x1y2"
V2_IN_SECTION = (
    f"{BASE}/v2/audience/keyspaces/com.apsis1.keyspaces.crm-id/profiles/M-2291"
    "/sections/usercreated.sections.members-x1y2"
)
CREATE = (
    f"{BASE}/audience/keyspaces/com.apsis1.keyspaces.crm-id"
    "/sections/usercreated.sections.members-x1y2/profiles"
)
SECTION_DEFS = f"{BASE}/audience/sections/usercreated.sections.members-x1y2"
IMPORTS_V2 = f"{BASE}/v2/audience/sections/usercreated.sections.members-x1y2/imports"
UPLOAD_URL = "https://apsis-imports-eu.s3.eu-west-1.amazonaws.com/"
PROBLEM_400 = {"title": "Bad request", "status": 400, "detail": "Unknown attribute"}
GATEWAY_403 = {"message": "User is not authorized to access this resource with an explicit deny"}

# §3.2: the v2 attributes example, values keyed by discriminator, null clears.
ATTRIBUTES = {
    "com.apsis1.attributes.email": "ann@example.org",
    "usercreated.attributes.membership_end-ab12cd": "2025-06-30",
    "usercreated.attributes.winback_candidate-ef34gh": True,
    "usercreated.attributes.obsolete-ij56kl": None,
}
# §3.4: the events example.
EVENTS = {
    "items": [
        {
            "event_time": "2025-03-14T09:12:00Z",
            "version_id": "v-payment-confirmed",
            "data": {
                "payment_id": "PAY-10093",
                "amount": 450.0,
                "currency": "SEK",
                "membership_id": "M-2291",
            },
        },
        {
            "event_time": "2025-03-14T09:12:01Z",
            "version_id": "v-membership-renewed",
            "data": {"membership_id": "M-2291", "valid_to": "2026-03-13"},
        },
    ]
}


def sent_json(call) -> object:
    return json.loads(call.request.body)


# -- every request ---------------------------------------------------------------------------


def test_requests_carry_the_bearer_token_and_accept_json(client, api) -> None:
    api.post(
        CREATE,
        status=201,
        match=[
            matchers.header_matcher(
                {
                    "Authorization": "Bearer tok-1",
                    "Accept": "application/json, application/problem+json",
                    "Content-Type": "application/json",
                }
            )
        ],
    )
    client.create_profile(KEY)


def test_a_profile_key_is_url_encoded_in_the_path(make_client, token_endpoint, api) -> None:
    client = make_client(keyspace="com.apsis1.keyspaces.email")
    call = api.delete(
        f"{BASE}/audience/keyspaces/com.apsis1.keyspaces.email/profiles/andy%40example.com",
        status=204,
    )
    client.delete_profile("andy@example.com")
    assert call.call_count == 1


# -- profiles, attributes, tags, events, consents, erasure -----------------------------------


def test_creating_a_profile_posts_its_key_and_201_means_created(client, api) -> None:
    api.post(CREATE, status=201, match=[matchers.json_params_matcher({"profile_key": KEY})])
    assert client.create_profile(KEY) is True


def test_creating_a_profile_that_exists_is_not_an_error(client, api) -> None:
    api.post(CREATE, status=409, json={"title": "Conflict", "status": 409})
    assert client.create_profile(KEY) is False


def test_attributes_are_a_v2_merge_patch_keyed_by_discriminator(client, api) -> None:
    call = api.patch(
        f"{V2_IN_SECTION}/attributes",
        status=204,
        match=[matchers.header_matcher({"Content-Type": "application/merge-patch+json"})],
    )
    client.update_attributes(KEY, ATTRIBUTES)
    assert sent_json(call.calls[0]) == ATTRIBUTES


def test_events_for_one_profile_go_in_one_items_body(client, api) -> None:
    call = api.post(f"{IN_SECTION}/events", status=204)
    assert client.post_events(KEY, EVENTS["items"]) == 1
    assert sent_json(call.calls[0]) == EVENTS


def test_more_events_than_the_per_request_cap_take_several_requests(
    make_client, token_endpoint, api
) -> None:
    client = make_client(events_per_request=1)
    call = api.post(f"{IN_SECTION}/events", status=204)
    assert client.post_events(KEY, EVENTS["items"]) == 2
    assert [sent_json(c) for c in call.calls] == [
        {"items": [EVENTS["items"][0]]},
        {"items": [EVENTS["items"][1]]},
    ]


@pytest.mark.parametrize(
    ("fmt", "body"),
    [
        ("add_remove", {"usercreated.tags.winback": "add", "usercreated.tags.arrears": "remove"}),
        ("boolean", {"usercreated.tags.winback": True, "usercreated.tags.arrears": False}),
        ("true_null", {"usercreated.tags.winback": True, "usercreated.tags.arrears": None}),
    ],
)
def test_tags_are_one_merge_patch_in_the_configured_format(
    make_client, token_endpoint, api, fmt, body
) -> None:
    client = make_client(tag_body_format=fmt)
    call = api.patch(
        f"{IN_SECTION}/tags",
        status=204,
        match=[matchers.header_matcher({"Content-Type": "application/merge-patch+json"})],
    )
    client.set_tags(KEY, ["usercreated.tags.winback"], ["usercreated.tags.arrears"])
    assert sent_json(call.calls[0]) == body


def test_no_tag_change_sends_nothing(client, api) -> None:
    client.set_tags(KEY, [], [])
    assert len(api.calls) == 0


def test_a_consent_is_posted_with_topic_channel_type_reason_and_source(client, api) -> None:
    api.post(
        f"{V2_IN_SECTION}/consents",
        status=201,
        match=[
            matchers.json_params_matcher(
                {
                    "topic_discriminator": "usercreated.topics.newsletter-abc123",
                    "channel_discriminator": "com.apsis1.channels.email",
                    "type": "opt-in",
                    "reason": "Member opted in at signup",
                    "source": "dynamics-bridge",
                }
            )
        ],
    )
    result = client.set_consent(
        KEY,
        "usercreated.topics.newsletter-abc123",
        "email",
        opt_in=True,
        reason="Member opted in at signup",
    )
    assert result == "created"


@pytest.mark.parametrize(("status", "result"), [(204, "updated"), (409, "unchanged")])
def test_consent_answers_say_whether_anything_changed(client, api, status, result) -> None:
    api.post(f"{V2_IN_SECTION}/consents", status=status)
    assert client.set_consent(KEY, "usercreated.topics.n", "sms", opt_in=False) == result


def test_erasing_deletes_the_profile(client, api) -> None:
    call = api.delete(PROFILE, status=204)
    assert client.delete_profile(KEY) is True
    assert call.call_count == 1


def test_erasing_a_profile_that_is_gone_already_is_not_an_error(client, api) -> None:
    api.delete(PROFILE, status=404, json={"title": "Not found", "status": 404})
    assert client.delete_profile(KEY) is False


def test_locking_puts_a_lock_on_the_profile(client, api) -> None:
    call = api.put(f"{PROFILE}/locks", status=204)
    client.lock_profile(KEY)
    assert call.call_count == 1


# -- definitions -----------------------------------------------------------------------------

EVENT_DEFS = {
    "items": [
        {
            "discriminator": "com.apsis1.events.transaction.custom-paid-l9ce3syo6t",
            "name": "Payment confirmed",
            "versions": [
                {"id": "v-old", "deprecated_at": "2024-01-01T00:00:00Z"},
                {"id": "v-current", "deprecated_at": None},
            ],
        }
    ]
}


def test_an_event_type_is_posted_by_its_current_version_id(client, api) -> None:
    api.get(f"{SECTION_DEFS}/events", json=EVENT_DEFS)
    disc = "com.apsis1.events.transaction.custom-paid-l9ce3syo6t"
    assert client.version_id("events", disc) == "v-current"


def test_definitions_are_read_once_and_cached(client, api) -> None:
    call = api.get(f"{SECTION_DEFS}/events", json=EVENT_DEFS)
    disc = "com.apsis1.events.transaction.custom-paid-l9ce3syo6t"
    client.version_id("events", disc)
    client.version_id("events", disc)
    assert call.call_count == 1


def test_an_unknown_event_type_is_looked_up_again_then_a_config_error(client, api) -> None:
    call = api.get(f"{SECTION_DEFS}/events", json=EVENT_DEFS)
    with pytest.raises(ConfigError, match="custom-missing"):
        client.version_id("events", "com.apsis1.events.signal.custom-missing")
    assert call.call_count == 2


# -- tokens ----------------------------------------------------------------------------------


def test_a_401_renews_the_token_once_and_retries(client, api, token_endpoint) -> None:
    api.post(CREATE, status=401, match=[matchers.header_matcher({"Authorization": "Bearer tok-1"})])
    api.post(CREATE, status=201, match=[matchers.header_matcher({"Authorization": "Bearer tok-2"})])
    assert client.create_profile(KEY) is True
    assert token_endpoint.call_count == 2


def test_a_second_401_after_renewal_is_an_auth_error(client, api, token_endpoint) -> None:
    call = api.post(CREATE, status=401)
    with pytest.raises(AuthError):
        client.create_profile(KEY)
    assert call.call_count == 2
    assert token_endpoint.call_count == 2


def test_a_gateway_style_403_is_read_as_an_expired_token(client, api, token_endpoint) -> None:
    api.post(CREATE, status=403, json=GATEWAY_403)
    api.post(CREATE, status=201)
    assert client.create_profile(KEY) is True
    assert token_endpoint.call_count == 2


def test_a_permission_403_is_not_retried_with_a_new_token(client, api, token_endpoint) -> None:
    api.post(CREATE, status=403, json={"title": "Forbidden", "status": 403, "detail": "keyspace"})
    with pytest.raises(AuthError, match="keyspace"):
        client.create_profile(KEY)
    assert token_endpoint.call_count == 1


def test_reading_a_403_as_expiry_can_be_switched_off(make_client, token_endpoint, api) -> None:
    client = make_client(refresh_on_forbidden=False)
    api.post(CREATE, status=403, json=GATEWAY_403)
    with pytest.raises(AuthError):
        client.create_profile(KEY)
    assert token_endpoint.call_count == 1


# -- retries and pacing ----------------------------------------------------------------------


def test_a_429_pauses_the_account_for_retry_after_then_retries(client, api, fake_time) -> None:
    api.post(CREATE, status=429, headers={"Retry-After": "0.01"})
    api.post(CREATE, status=201)
    assert client.create_profile(KEY) is True
    assert fake_time.slept == [pytest.approx(0.01)]
    assert client.pacer.pauses == 1


def test_a_pause_after_429_also_holds_the_next_request(client, api, fake_time) -> None:
    api.post(CREATE, status=429, headers={"Retry-After": "3"})
    api.post(CREATE, status=201)
    client.create_profile(KEY)
    fake_time.now -= 1  # as if another worker asked while the pause still ran
    api.delete(PROFILE, status=204)
    client.delete_profile(KEY)
    assert fake_time.slept == [pytest.approx(3.0), pytest.approx(1.0)]


@pytest.mark.parametrize("status", [408, 500, 502, 503])
def test_timeouts_and_server_errors_are_retried(client, api, status) -> None:
    api.post(CREATE, status=status)
    api.post(CREATE, status=201)
    assert client.create_profile(KEY) is True


def test_a_retry_honours_retry_after_on_a_503(client, api, fake_time) -> None:
    api.post(CREATE, status=503, headers={"Retry-After": "0.02"})
    api.post(CREATE, status=201)
    client.create_profile(KEY)
    assert fake_time.slept == [pytest.approx(0.02)]


def test_a_failure_that_persists_gives_up_after_max_attempts(client, api) -> None:
    call = api.post(CREATE, status=503, json={"title": "Service unavailable", "status": 503})
    with pytest.raises(TransientError, match="Service unavailable"):
        client.create_profile(KEY)
    assert call.call_count == 4


def test_throttling_that_persists_surfaces_as_throttled(client, api) -> None:
    api.post(CREATE, status=429, headers={"Retry-After": "0.01"})
    with pytest.raises(ThrottledError):
        client.create_profile(KEY)


def test_an_unreachable_api_is_retried(client, api) -> None:
    api.post(CREATE, body=requests.ConnectionError("reset"))
    api.post(CREATE, status=201)
    assert client.create_profile(KEY) is True


def test_a_400_is_permanent_not_retried_and_keeps_the_detail(client, api) -> None:
    call = api.patch(f"{V2_IN_SECTION}/attributes", status=400, json=PROBLEM_400)
    with pytest.raises(PermanentError, match="Unknown attribute") as caught:
        client.update_attributes(KEY, {"x.y": 1})
    assert caught.value.status == 400
    assert call.call_count == 1


def test_a_404_on_attributes_is_not_found(client, api) -> None:
    api.patch(f"{V2_IN_SECTION}/attributes", status=404, json={"title": "Not found"})
    with pytest.raises(NotFoundError):
        client.update_attributes(KEY, {"x.y": 1})


def test_requests_for_one_profile_are_paced_to_its_limit(
    make_client, token_endpoint, api, fake_time
) -> None:
    client = make_client(profile_rate=(2, 1.0))
    api.post(CREATE, status=409)
    for _ in range(3):
        client.create_profile(KEY)
    assert fake_time.slept == [1.0]


# -- bulk import -----------------------------------------------------------------------------

IMPORT_BODY = {
    "keyspace_mapping": {
        "keyspace_discriminator": "com.apsis1.keyspaces.crm-id",
        "field_selector": "profile_key",
    },
    "options": {"update_existing_profiles": True, "clear_existing_attributes": False},
    "attribute_mappings": [{"field_selector": "email", "attribute_version_id": "v-email"}],
}
CREATED_IMPORT = {
    "import_id": "imp-1",
    "file_upload_url": UPLOAD_URL,
    "file_upload_body": {"key": "imports/imp-1.csv", "policy": "eyJ...", "x-amz-signature": "ab"},
    "file_upload_url_expires_at": "2025-03-14T10:12:00Z",
}
CSV = b"profile_key,email\r\nM-1,ann@example.org\r\n"


def status_answer(status: str) -> dict:
    return {"result": {"status": status}}


def form_parts(request) -> dict[str, tuple[str | None, bytes]]:
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    return {
        part.get_param("name", header="content-disposition"): (
            part.get_content_type() if part.get_filename() else None,
            part.get_payload(decode=True),
        )
        for part in message.iter_parts()
    }


def test_an_import_is_created_uploaded_without_token_and_polled_to_completion(
    client, api, fake_time
) -> None:
    create = api.post(IMPORTS_V2, status=201, json=CREATED_IMPORT)
    upload = api.post(UPLOAD_URL, status=204)
    poll = f"{SECTION_DEFS}/imports/imp-1"
    for state in ("waiting_for_file", "queued", "in_progress", "completed"):
        api.get(poll, json=status_answer(state))

    result = client.run_import(IMPORT_BODY, CSV, rows=1)

    assert (result.import_id, result.status, result.rows) == ("imp-1", "completed", 1)
    assert sent_json(create.calls[0]) == IMPORT_BODY
    request = upload.calls[0].request
    assert "Authorization" not in request.headers
    assert form_parts(request) == {
        "key": (None, b"imports/imp-1.csv"),
        "policy": (None, b"eyJ..."),
        "x-amz-signature": (None, b"ab"),
        "file": ("text/csv", CSV),
    }
    assert fake_time.slept == [5.0, 5.0, 5.0]


def test_an_import_that_ends_in_error_reports_error(client, api) -> None:
    api.post(IMPORTS_V2, status=201, json=CREATED_IMPORT)
    api.post(UPLOAD_URL, status=204)
    api.get(f"{SECTION_DEFS}/imports/imp-1", json=status_answer("error"))
    assert client.run_import(IMPORT_BODY, CSV, rows=1).status == "error"


def test_an_import_that_never_finishes_is_transient(make_client, token_endpoint, api) -> None:
    client = make_client(import_timeout_seconds=12)
    api.post(IMPORTS_V2, status=201, json=CREATED_IMPORT)
    api.post(UPLOAD_URL, status=204)
    api.get(f"{SECTION_DEFS}/imports/imp-1", json=status_answer("in_progress"))
    with pytest.raises(TransientError, match="in_progress"):
        client.run_import(IMPORT_BODY, CSV, rows=1)


def test_a_failed_upload_is_retried(client, api) -> None:
    api.post(IMPORTS_V2, status=201, json=CREATED_IMPORT)
    api.post(UPLOAD_URL, status=503)
    upload = api.post(UPLOAD_URL, status=204)
    api.get(f"{SECTION_DEFS}/imports/imp-1", json=status_answer("completed"))
    client.run_import(IMPORT_BODY, CSV, rows=1)
    assert upload.call_count == 1


def test_a_refused_upload_is_permanent(client, api) -> None:
    api.post(IMPORTS_V2, status=201, json=CREATED_IMPORT)
    api.post(UPLOAD_URL, status=403, body="<Error><Code>AccessDenied</Code></Error>")
    with pytest.raises(AuthError, match="AccessDenied"):
        client.run_import(IMPORT_BODY, CSV, rows=1)


def test_import_creation_is_paced_by_its_own_rate(
    make_client, token_endpoint, api, fake_time
) -> None:
    client = make_client(import_rate=(1, 60.0))
    api.post(IMPORTS_V2, status=201, json=CREATED_IMPORT)
    client.create_import(IMPORT_BODY)
    client.create_import(IMPORT_BODY)
    assert fake_time.slept == [60.0]


def test_prepare_import_maps_columns_to_current_attribute_versions(client, api) -> None:
    api.get(
        f"{SECTION_DEFS}/attributes",
        json={
            "items": [
                {
                    "discriminator": "com.apsis1.attributes.email",
                    "versions": [{"id": "v-email", "deprecated_at": None}],
                }
            ]
        },
    )
    body, files = client.prepare_import(
        [("M-1", {"com.apsis1.attributes.email": "ann@example.org"})]
    )
    assert body == IMPORT_BODY
    assert files == [(CSV, ["M-1"])]


# -- event POSTs are not idempotent: no retry when APSIS may have stored them -------------------


@pytest.mark.parametrize(
    "failure",
    [
        requests.ReadTimeout("read timed out"),
        requests.ConnectionError("connection reset by peer"),
    ],
    ids=["timeout", "dropped"],
)
def test_an_event_post_whose_fate_is_unknown_is_not_sent_again(client, api, failure) -> None:
    call = api.post(f"{IN_SECTION}/events", body=failure)
    again = api.post(f"{IN_SECTION}/events", status=204)
    with pytest.raises(AmbiguousError, match="may have been stored") as caught:
        client.post_events(KEY, EVENTS["items"])
    assert isinstance(caught.value, TransientError)  # an outbox keeps it pending
    assert (call.call_count, again.call_count) == (1, 0)


def test_an_event_post_answered_5xx_is_not_sent_again(client, api) -> None:
    call = api.post(f"{IN_SECTION}/events", status=502, json={"title": "Bad gateway"})
    with pytest.raises(AmbiguousError) as caught:
        client.post_events(KEY, EVENTS["items"])
    assert caught.value.status == 502
    assert call.call_count == 1


@pytest.mark.parametrize("status", [408, 429])
def test_an_event_post_apsis_refused_unprocessed_is_retried(client, api, status) -> None:
    refused = api.post(f"{IN_SECTION}/events", status=status, headers={"Retry-After": "0.01"})
    stored = api.post(f"{IN_SECTION}/events", status=204)
    assert client.post_events(KEY, EVENTS["items"]) == 1
    assert (refused.call_count, stored.call_count) == (1, 1)


def test_an_event_post_whose_connection_was_never_made_is_retried(client, api) -> None:
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    refused = requests.ConnectionError(
        MaxRetryError(None, "/", NewConnectionError(None, "connection refused"))  # type: ignore[arg-type]
    )
    api.post(f"{IN_SECTION}/events", body=refused)
    stored = api.post(f"{IN_SECTION}/events", status=204)
    assert client.post_events(KEY, EVENTS["items"]) == 1
    assert stored.call_count == 1


def test_an_idempotent_write_is_still_retried_after_a_timeout(client, api) -> None:
    lost = api.patch(f"{V2_IN_SECTION}/attributes", body=requests.ReadTimeout("read timed out"))
    written = api.patch(f"{V2_IN_SECTION}/attributes", status=204)
    client.update_attributes(KEY, ATTRIBUTES)  # a merge patch twice is the same patch
    assert (lost.call_count, written.call_count) == (1, 1)
