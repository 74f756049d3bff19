"""ApsisPlatform: the port's methods on APSIS, names mapped to discriminators, bulk above a
threshold. HTTP is mocked; paths come from reference apsis.md §3."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from email.parser import BytesParser
from email.policy import HTTP

import pytest
from pydantic import SecretStr
from responses import matchers

from dynamics_bridge.apsis import (
    ApsisPlatform,
    ConsentChange,
    MarketingEvent,
    MarketingPlatform,
    ProfileChange,
)
from dynamics_bridge.errors import ConfigError, PermanentError
from dynamics_bridge.settings import ApsisSettings
from tests.apsis.conftest import BASE

KS = f"{BASE}/audience/keyspaces/com.apsis1.keyspaces.crm-id"
SECTION = "usercreated.sections.members-x1y2"
CREATE = f"{KS}/sections/{SECTION}/profiles"
DEFS = f"{BASE}/audience/sections/{SECTION}"
IMPORTS_V2 = f"{BASE}/v2/audience/sections/{SECTION}/imports"
UPLOAD_URL = "https://apsis-imports-eu.s3.eu-west-1.amazonaws.com/"

NAMES = {
    "attributes": {
        "email": "com.apsis1.attributes.email",
        "membership_end": "usercreated.attributes.membership_end-ab12cd",
        "winback": "usercreated.attributes.winback_candidate-ef34gh",
    },
    "event_types": {"payment_confirmed": "com.apsis1.events.transaction.custom-paid-l9ce3syo6t"},
    "tags": {"winback": "usercreated.tags.winback-ab12"},
    "topics": {"newsletter": "usercreated.topics.newsletter-abc123"},
}
ATTRIBUTE_DEFS = {
    "items": [
        {"discriminator": disc, "versions": [{"id": f"v-{name}", "deprecated_at": None}]}
        for name, disc in NAMES["attributes"].items()
    ]
}
EVENT_DEFS = {
    "items": [
        {
            "discriminator": "com.apsis1.events.transaction.custom-paid-l9ce3syo6t",
            "versions": [{"id": "v-paid", "deprecated_at": None}],
        }
    ]
}
PAID = datetime(2025, 3, 14, 9, 12, tzinfo=UTC)


def attributes_url(key: str) -> str:
    profile = f"{BASE}/v2/audience/keyspaces/com.apsis1.keyspaces.crm-id/profiles/{key}"
    return f"{profile}/sections/{SECTION}/attributes"


def in_section(key: str, what: str) -> str:
    return f"{KS}/profiles/{key}/sections/{SECTION}/{what}"


@pytest.fixture
def make_platform(make_client, token_endpoint):
    def make(**kw) -> ApsisPlatform:
        client_kw = kw.pop("client_kw", {})
        kw.setdefault("concurrency", 1)
        return ApsisPlatform(make_client(**client_kw), **NAMES, **kw)

    return make


@pytest.fixture
def platform(make_platform) -> ApsisPlatform:
    return make_platform()


def body(call) -> object:
    return json.loads(call.request.body)


def test_it_is_a_marketing_platform(platform) -> None:
    assert isinstance(platform, MarketingPlatform)


def test_from_settings_needs_a_section() -> None:
    settings = ApsisSettings(client_id="id", client_secret=SecretStr("secret"))
    with pytest.raises(ConfigError, match="BRIDGE_APSIS__SECTION"):
        ApsisPlatform.from_settings(settings)


def test_from_settings_uses_the_configured_host_keyspace_section_and_names(api) -> None:
    settings = ApsisSettings(
        base_url="https://api-apac.apsis.one",
        client_id="from-settings-test",
        client_secret=SecretStr("secret"),
        keyspace="com.apsis1.keyspaces.email",
        section="com.apsis1.sections.default",
        tags={"winback": "usercreated.tags.winback-ab12"},
        tag_body_format="boolean",
    )
    api.post("https://api-apac.apsis.one/oauth/token", json={"access_token": "t"})
    patch = api.patch(
        "https://api-apac.apsis.one/audience/keyspaces/com.apsis1.keyspaces.email"
        "/profiles/ann%40example.org/sections/com.apsis1.sections.default/tags",
        status=204,
    )
    ApsisPlatform.from_settings(settings).set_tags("ann@example.org", add=["winback"])
    assert body(patch.calls[0]) == {"usercreated.tags.winback-ab12": True}


def test_upsert_creates_the_profile_then_patches_mapped_attributes(platform, api) -> None:
    create = api.post(CREATE, status=201)
    patch = api.patch(attributes_url("M-1"), status=204)
    platform.upsert_profile(
        "M-1", {"email": "ann@example.org", "membership_end": date(2025, 6, 30)}
    )
    assert create.call_count == 1
    assert body(patch.calls[0]) == {
        "com.apsis1.attributes.email": "ann@example.org",
        "usercreated.attributes.membership_end-ab12cd": "2025-06-30",
    }
    assert [c.request.method for c in api.calls if "/oauth/" not in c.request.url] == [
        "POST",
        "PATCH",
    ]


def test_upsert_without_attributes_only_makes_sure_the_profile_exists(platform, api) -> None:
    api.post(CREATE, status=409)
    platform.upsert_profile("M-1", {})
    assert [c.request.method for c in api.calls if "/oauth/" not in c.request.url] == ["POST"]


def test_an_unmapped_name_is_a_config_error_naming_the_setting(platform) -> None:
    with pytest.raises(ConfigError, match=r"BRIDGE_APSIS__ATTRIBUTES.*'shoe_size'"):
        platform.upsert_profile("M-1", {"shoe_size": 42})


def test_a_discriminator_passes_through_unmapped(platform, api) -> None:
    api.post(CREATE, status=201)
    patch = api.patch(attributes_url("M-1"), status=204)
    platform.upsert_profile("M-1", {"usercreated.attributes.level-zz": 3})
    assert body(patch.calls[0]) == {"usercreated.attributes.level-zz": 3}


def test_events_are_sent_by_version_id_with_their_data(platform, api) -> None:
    api.get(f"{DEFS}/events", json=EVENT_DEFS)
    post = api.post(in_section("M-1", "events"), status=204)
    platform.send_events(
        "M-1",
        [
            MarketingEvent("payment_confirmed", PAID, {"payment_id": "PAY-1", "amount": 450}),
            MarketingEvent("payment_confirmed", PAID, {"payment_id": "PAY-2", "amount": 450}),
        ],
    )
    assert body(post.calls[0]) == {
        "items": [
            {
                "event_time": "2025-03-14T09:12:00Z",
                "version_id": "v-paid",
                "data": {"payment_id": "PAY-1", "amount": 450},
            },
            {
                "event_time": "2025-03-14T09:12:01Z",
                "version_id": "v-paid",
                "data": {"payment_id": "PAY-2", "amount": 450},
            },
        ]
    }


def test_no_events_send_nothing(platform, api) -> None:
    platform.send_events("M-1", [])
    assert len(api.calls) == 0


def test_tags_are_mapped_by_name(platform, api) -> None:
    patch = api.patch(in_section("M-1", "tags"), status=204)
    platform.set_tags("M-1", add=["winback"])
    assert body(patch.calls[0]) == {"usercreated.tags.winback-ab12": "add"}


def test_a_consent_is_mapped_to_topic_and_channel(platform, api) -> None:
    api.post(
        f"{BASE}/v2/audience/keyspaces/com.apsis1.keyspaces.crm-id/profiles/M-1/sections/{SECTION}/consents",
        status=409,
        match=[
            matchers.json_params_matcher(
                {
                    "topic_discriminator": "usercreated.topics.newsletter-abc123",
                    "channel_discriminator": "com.apsis1.channels.sms",
                    "type": "opt-out",
                    "source": "dynamics-bridge",
                }
            )
        ],
    )
    assert platform.set_consent("M-1", ConsentChange("newsletter", False, "sms")) == "unchanged"


def test_erase_deletes_by_default(platform, api) -> None:
    call = api.delete(f"{KS}/profiles/M-1", status=204)
    platform.erase("M-1")
    assert call.call_count == 1


def test_erase_can_lock_instead(make_platform, api) -> None:
    call = api.put(f"{KS}/profiles/M-1/locks", status=204)
    make_platform(erase_mode="lock").erase("M-1")
    assert call.call_count == 1


# -- apply_changes ---------------------------------------------------------------------------


def api_methods(api) -> list[str]:
    """``METHOD last-path-segment`` per call, the token endpoint left out; ``upload`` for the
    pre-signed upload URL."""
    return [
        f"{c.request.method} "
        + (c.request.url.rsplit("/", 1)[-1] if c.request.url.startswith(BASE) else "upload")
        for c in api.calls
        if "/oauth/" not in c.request.url
    ]


def test_changes_at_or_below_the_threshold_go_profile_by_profile(make_platform, api) -> None:
    platform = make_platform(bulk_threshold=2)
    api.post(CREATE, status=201)
    api.patch(attributes_url("M-1"), status=204)
    api.patch(attributes_url("M-2"), status=204)
    report = platform.apply_changes(
        [ProfileChange("M-1", {"winback": True}), ProfileChange("M-2", {"winback": False})]
    )
    assert report.ok
    assert [(o.key, o.via) for o in report.outcomes] == [("M-1", "api"), ("M-2", "api")]
    assert report.imports == []
    assert not any("imports" in m for m in api_methods(api))


def test_a_change_runs_profile_attributes_tags_consents_then_events(make_platform, api) -> None:
    platform = make_platform()
    api.post(CREATE, status=201)
    api.patch(attributes_url("M-1"), status=204)
    api.patch(in_section("M-1", "tags"), status=204)
    api.post(
        f"{BASE}/v2/audience/keyspaces/com.apsis1.keyspaces.crm-id/profiles/M-1/sections/{SECTION}/consents",
        status=201,
    )
    api.get(f"{DEFS}/events", json=EVENT_DEFS)
    api.post(in_section("M-1", "events"), status=204)
    report = platform.apply_changes(
        [
            ProfileChange(
                "M-1",
                {"winback": True},
                events=[MarketingEvent("payment_confirmed", PAID, {"payment_id": "PAY-1"})],
                tags_add=["winback"],
                consents=[ConsentChange("newsletter", True)],
            )
        ]
    )
    assert report.ok
    assert api_methods(api) == [
        "POST profiles",
        "PATCH attributes",
        "PATCH tags",
        "POST consents",
        "GET events",
        "POST events",
    ]


def test_more_profiles_than_the_threshold_write_attributes_by_bulk_import(
    make_platform, api
) -> None:
    platform = make_platform(bulk_threshold=2)
    api.get(f"{DEFS}/attributes", json=ATTRIBUTE_DEFS)
    create = api.post(
        IMPORTS_V2,
        status=201,
        json={"import_id": "imp-1", "file_upload_url": UPLOAD_URL, "file_upload_body": {"k": "v"}},
    )
    upload = api.post(UPLOAD_URL, status=204)
    api.get(f"{DEFS}/imports/imp-1", json={"result": {"status": "completed"}})
    api.patch(in_section("M-2", "tags"), status=204)
    changes = [
        ProfileChange("M-1", {"email": "a@example.org"}),
        ProfileChange("M-2", {"email": "b@example.org", "winback": True}, tags_add=["winback"]),
        ProfileChange("M-3", {"winback": False}),
    ]
    report = platform.apply_changes(changes)

    assert report.ok
    assert [(o.key, o.via) for o in report.outcomes] == [
        ("M-1", "import"),
        ("M-2", "import"),
        ("M-3", "import"),
    ]
    assert [(i.import_id, i.status, i.rows) for i in report.imports] == [("imp-1", "completed", 3)]
    assert body(create.calls[0])["attribute_mappings"] == [
        {"field_selector": "email", "attribute_version_id": "v-email"},
        {"field_selector": "winback_candidate_ef34gh", "attribute_version_id": "v-winback"},
    ]
    request = upload.calls[0].request
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    parts = BytesParser(policy=HTTP).parsebytes(head + request.body).iter_parts()
    csv_text = next(p for p in parts if p.get_filename()).get_payload(decode=True).decode()
    assert list(csv.DictReader(io.StringIO(csv_text))) == [
        {"profile_key": "M-1", "email": "a@example.org", "winback_candidate_ef34gh": ""},
        {"profile_key": "M-2", "email": "b@example.org", "winback_candidate_ef34gh": "true"},
        {"profile_key": "M-3", "email": "", "winback_candidate_ef34gh": "false"},
    ]
    # no per-profile create or attribute PATCH; the tag still goes per profile
    assert [m for m in api_methods(api) if not m.startswith("GET")] == [
        "POST imports",
        "POST upload",
        "PATCH tags",
    ]


def test_a_change_that_clears_an_attribute_stays_on_the_patch_path(make_platform, api) -> None:
    platform = make_platform(bulk_threshold=1)
    api.get(f"{DEFS}/attributes", json=ATTRIBUTE_DEFS)
    api.post(
        IMPORTS_V2,
        status=201,
        json={"import_id": "imp-1", "file_upload_url": UPLOAD_URL, "file_upload_body": {}},
    )
    api.post(UPLOAD_URL, status=204)
    api.get(f"{DEFS}/imports/imp-1", json={"result": {"status": "completed"}})
    api.post(CREATE, status=409)
    patch = api.patch(attributes_url("M-2"), status=204)
    report = platform.apply_changes(
        [ProfileChange("M-1", {"winback": True}), ProfileChange("M-2", {"membership_end": None})]
    )
    assert [(o.key, o.via) for o in report.outcomes] == [("M-1", "import"), ("M-2", "api")]
    assert body(patch.calls[0]) == {"usercreated.attributes.membership_end-ab12cd": None}


def test_an_import_that_ends_in_error_fails_its_changes_and_skips_their_events(
    make_platform, api
) -> None:
    platform = make_platform(bulk_threshold=1)
    api.get(f"{DEFS}/attributes", json=ATTRIBUTE_DEFS)
    api.post(
        IMPORTS_V2,
        status=201,
        json={"import_id": "imp-9", "file_upload_url": UPLOAD_URL, "file_upload_body": {}},
    )
    api.post(UPLOAD_URL, status=204)
    api.get(f"{DEFS}/imports/imp-9", json={"result": {"status": "error"}})
    event = MarketingEvent("payment_confirmed", PAID)
    report = platform.apply_changes(
        [
            ProfileChange("M-1", {"winback": True}, events=[event]),
            ProfileChange("M-2", {"winback": True}),
        ]
    )
    assert [o.key for o in report.failed] == ["M-1", "M-2"]
    assert isinstance(report.outcomes[0].error, PermanentError)
    assert "imp-9" in str(report.outcomes[0].error)
    assert not any("events" in m for m in api_methods(api))


def test_one_profiles_failure_does_not_stop_the_others(make_platform, api) -> None:
    platform = make_platform()
    api.post(CREATE, status=201)
    api.patch(attributes_url("M-1"), status=400, json={"title": "Bad request", "detail": "type"})
    api.patch(attributes_url("M-2"), status=204)
    report = platform.apply_changes(
        [ProfileChange("M-1", {"winback": "yes"}), ProfileChange("M-2", {"winback": True})]
    )
    assert [o.ok for o in report.outcomes] == [False, True]
    assert report.outcomes[0].error.status == 400


def test_an_unmapped_name_fails_only_its_own_change(make_platform, api) -> None:
    platform = make_platform()
    api.post(CREATE, status=201)
    api.patch(attributes_url("M-2"), status=204)
    report = platform.apply_changes(
        [ProfileChange("M-1", {"shoe_size": 42}), ProfileChange("M-2", {"winback": True})]
    )
    assert isinstance(report.outcomes[0].error, ConfigError)
    assert report.outcomes[1].ok


def test_an_erase_change_only_erases(make_platform, api) -> None:
    platform = make_platform()
    api.delete(f"{KS}/profiles/M-1", status=404)
    report = platform.apply_changes([ProfileChange("M-1", {"winback": True}, erase=True)])
    assert [(o.key, o.via, o.ok) for o in report.outcomes] == [("M-1", "erase", True)]
    assert api_methods(api) == ["DELETE M-1"]


def test_two_changes_for_one_key_are_refused(platform) -> None:
    with pytest.raises(ValueError, match="one change per profile key"):
        platform.apply_changes([ProfileChange("M-1"), ProfileChange("M-1")])


def test_workers_apply_changes_in_parallel_and_report_in_input_order(make_platform, api) -> None:
    platform = make_platform(concurrency=4)
    api.post(CREATE, status=201)
    keys = [f"M-{i}" for i in range(12)]
    for key in keys:
        api.patch(attributes_url(key), status=204)
    report = platform.apply_changes([ProfileChange(k, {"winback": True}) for k in keys])
    assert report.ok
    assert [o.key for o in report.outcomes] == keys


# -- create only what is new -------------------------------------------------------------------


def test_a_diff_on_a_known_profile_is_one_request_without_a_create(make_platform, api) -> None:
    platform = make_platform()
    create = api.post(CREATE, status=201)
    api.patch(in_section("M-1", "tags"), status=204)
    report = platform.apply_changes([ProfileChange("M-1", tags_add=["winback"], create=False)])
    assert report.ok
    assert api_methods(api) == ["PATCH tags"]
    assert create.call_count == 0
    assert not report.outcomes[0].recreated


def test_a_new_profile_is_still_created_first(make_platform, api) -> None:
    platform = make_platform()
    api.post(CREATE, status=201)
    api.patch(attributes_url("M-1"), status=204)
    report = platform.apply_changes([ProfileChange("M-1", {"winback": True}, create=True)])
    assert report.ok
    assert api_methods(api) == ["POST profiles", "PATCH attributes"]


def test_a_known_profile_that_apsis_lost_is_created_and_the_change_written_again(
    make_platform, api
) -> None:
    platform = make_platform()
    api.patch(in_section("M-1", "tags"), status=404, json={"title": "Not found"})
    api.patch(in_section("M-1", "tags"), status=204)
    api.post(CREATE, status=201)
    api.get(f"{DEFS}/events", json=EVENT_DEFS)
    events = api.post(in_section("M-1", "events"), status=204)
    change = ProfileChange(
        "M-1",
        tags_add=["winback"],
        events=[MarketingEvent("payment_confirmed", PAID, {"payment_id": "PAY-1"})],
        create=False,
    )
    (outcome,) = platform.apply_changes([change]).outcomes
    assert outcome.ok
    assert outcome.recreated
    assert api_methods(api) == [
        "PATCH tags",
        "POST profiles",
        "PATCH tags",
        "GET events",
        "POST events",
    ]
    assert events.call_count == 1  # the events went once: the 404 came before them


def test_a_404_on_a_profile_just_created_is_a_failure_not_a_loop(make_platform, api) -> None:
    platform = make_platform()
    create = api.post(CREATE, status=201)
    api.patch(attributes_url("M-1"), status=404, json={"title": "Not found"})
    (outcome,) = platform.apply_changes([ProfileChange("M-1", {"winback": True})]).outcomes
    assert not outcome.ok
    assert not outcome.recreated
    assert create.call_count == 1
