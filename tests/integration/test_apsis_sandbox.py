"""The APSIS client and platform against the local stand-in over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
from dynamics_bridge_sandbox.apsis import ApsisLimits, ApsisStandIn, run_apsis_standin

from dynamics_bridge.apsis import ApsisPlatform, ConsentChange, MarketingEvent, ProfileChange
from dynamics_bridge.errors import AuthError, PermanentError
from dynamics_bridge.settings import load_settings

pytestmark = pytest.mark.integration
PAID = datetime(2025, 3, 14, 9, 12, tzinfo=UTC)


@pytest.fixture
def standin() -> Iterator[ApsisStandIn]:
    with run_apsis_standin() as running:
        yield running


def platform_for(
    standin: ApsisStandIn, monkeypatch: pytest.MonkeyPatch, **env: str
) -> ApsisPlatform:
    """The platform as the bridge would build it: from BRIDGE_APSIS__* settings."""
    for name, value in {**standin.env, "BRIDGE_APSIS__IMPORT_POLL_SECONDS": "0.01"}.items():
        monkeypatch.setenv(name, value)
    for name, value in env.items():
        monkeypatch.setenv(f"BRIDGE_APSIS__{name.upper()}", value)
    return ApsisPlatform.from_settings(load_settings().apsis)


@pytest.fixture
def platform(standin, monkeypatch) -> ApsisPlatform:
    return platform_for(standin, monkeypatch)


def test_upsert_creates_the_profile_with_its_attributes(standin, platform) -> None:
    platform.upsert_profile(
        "M-1001",
        {"email": "ann@example.org", "membership_end": date(2025, 6, 30), "arrears": 0},
    )
    platform.upsert_profile("M-1001", {"winback_candidate": True, "arrears": None})
    assert standin.profile("M-1001")["attributes"] == {
        "email": "ann@example.org",
        "membership_end": "2025-06-30",
        "winback_candidate": True,
    }
    assert [u.values for u in standin.attribute_updates("M-1001")] == [
        {"email": "ann@example.org", "membership_end": "2025-06-30", "arrears": 0},
        {"winback_candidate": True, "arrears": None},
    ]


def test_events_arrive_by_type_with_their_data(standin, platform) -> None:
    platform.upsert_profile("M-1001", {})
    platform.send_events(
        "M-1001",
        [
            MarketingEvent("payment_confirmed", PAID, {"payment_id": "PAY-1", "amount": 450}),
            MarketingEvent("payment_failed", PAID, {"payment_id": "PAY-2", "reason": "funds"}),
            MarketingEvent("payment_confirmed", PAID, {"payment_id": "PAY-3", "amount": 450}),
        ],
    )
    assert standin.event_counts() == {"payment_confirmed": 2, "payment_failed": 1}
    confirmed = standin.events("payment_confirmed")
    assert [(e.event_time, e.data["payment_id"]) for e in confirmed] == [
        ("2025-03-14T09:12:00Z", "PAY-1"),
        ("2025-03-14T09:12:02Z", "PAY-3"),
    ]


def test_tags_apply_and_count_as_segment_sizes(standin, platform) -> None:
    for key in ("M-1", "M-2"):
        platform.upsert_profile(key, {})
        platform.set_tags(key, add=["winback", "arrears"])
    platform.set_tags("M-2", remove=["arrears"])
    assert standin.tag_counts() == {"winback": 2, "arrears": 1}


def test_a_tag_body_format_the_account_does_not_take_is_a_permanent_error(
    standin, monkeypatch
) -> None:
    platform = platform_for(standin, monkeypatch, tag_body_format="boolean")
    platform.upsert_profile("M-1", {})
    with pytest.raises(PermanentError, match="tag values"):
        platform.set_tags("M-1", add=["winback"])


def test_consents_are_created_then_unchanged_then_updated(standin, platform) -> None:
    platform.upsert_profile("M-1", {})
    newsletter = ConsentChange("newsletter", True, reason="Joined at the union fair")
    assert platform.set_consent("M-1", newsletter) == "created"
    assert platform.set_consent("M-1", newsletter) == "unchanged"
    assert platform.set_consent("M-1", ConsentChange("newsletter", False)) == "updated"
    assert standin.profile("M-1")["consents"] == {"newsletter/email": "opt-out"}


def test_erase_deletes_the_profile_and_its_events(standin, platform) -> None:
    platform.upsert_profile("M-1", {"email": "ann@example.org"})
    platform.send_events("M-1", [MarketingEvent("member_joined", PAID)])
    platform.erase("M-1")
    platform.erase("M-1")  # already gone: not an error
    assert standin.profile("M-1") is None
    assert standin.events(key="M-1") == []
    assert standin.erasures() == [("M-1", "delete")]


def test_a_locked_profile_cannot_be_created_again(standin, monkeypatch) -> None:
    platform = platform_for(standin, monkeypatch, erase_mode="lock")
    platform.upsert_profile("M-1", {})
    platform.erase("M-1")
    with pytest.raises(PermanentError, match="410"):
        platform.upsert_profile("M-1", {})


def test_an_expired_token_is_renewed_once_and_the_call_succeeds(standin, platform) -> None:
    platform.upsert_profile("M-1", {})
    standin.expire_tokens()
    platform.upsert_profile("M-1", {"email": "ann@example.org"})
    assert standin.tokens_issued == 2


def test_the_gateways_403_for_an_expired_token_is_renewed_too(monkeypatch) -> None:
    with run_apsis_standin(expired_token_status=403) as standin:
        platform = platform_for(standin, monkeypatch)
        platform.upsert_profile("M-1", {})
        standin.expire_tokens()
        platform.upsert_profile("M-1", {"email": "ann@example.org"})
        assert standin.tokens_issued == 2


def test_a_wrong_secret_is_an_auth_error(standin, monkeypatch) -> None:
    platform = platform_for(standin, monkeypatch, client_secret="not-the-secret")
    with pytest.raises(AuthError, match="refused API key"):
        platform.upsert_profile("M-1", {})


def test_injected_server_errors_are_retried(standin, platform) -> None:
    standin.fail_next(503, times=2, retry_after=0.01, path="/profiles")
    platform.upsert_profile("M-1", {})
    assert standin.profile("M-1") is not None


def test_a_client_paced_faster_than_the_limit_meets_429s_and_still_finishes(monkeypatch) -> None:
    limits = ApsisLimits(profile=(2, 0.1))
    with run_apsis_standin(limits=limits) as standin:
        platform = platform_for(standin, monkeypatch, profile_rate="1000/s")
        for n in range(4):
            platform.upsert_profile("M-1", {"engagement_score": n})
        assert standin.throttled["profile"] > 0
        assert platform.client.pacer.pauses == standin.throttled["profile"]
        assert standin.profile("M-1")["attributes"] == {"engagement_score": 3}


def test_a_client_paced_under_the_limit_meets_no_429(monkeypatch) -> None:
    limits = ApsisLimits(profile=(2, 0.1))
    with run_apsis_standin(limits=limits) as standin:
        platform = platform_for(standin, monkeypatch, profile_rate="2/0.15s")
        for n in range(4):
            platform.upsert_profile("M-1", {"engagement_score": n})
        assert standin.throttled == {}


def test_many_profiles_go_through_one_bulk_import(standin, monkeypatch) -> None:
    platform = platform_for(standin, monkeypatch, bulk_threshold="3")
    changes = [
        ProfileChange(
            f"M-{n}",
            {"membership_status": "active", "paid_through": date(2025, 12, 31)},
            events=[MarketingEvent("payment_confirmed", PAID, {"payment_id": f"PAY-{n}"})]
            if n == 0
            else (),
        )
        for n in range(5)
    ]
    report = platform.apply_changes(changes)
    assert report.ok
    assert {o.via for o in report.outcomes} == {"import"}
    assert [(i["status"], i["rows"]) for i in standin.imports()] == [("completed", 5)]
    assert standin.attribute_counts("membership_status") == {"active": 5}
    assert standin.profile("M-4")["attributes"]["paid_through"] == "2025-12-31"
    assert standin.requests["PATCH attributes"] == 0
    assert standin.event_counts() == {"payment_confirmed": 1}


def test_an_import_throttled_by_the_import_rate_is_retried(monkeypatch) -> None:
    with run_apsis_standin(limits=ApsisLimits(imports=(1, 0.3))) as standin:
        platform = platform_for(standin, monkeypatch, bulk_threshold="1", import_rate="100/s")
        for batch in range(2):
            report = platform.apply_changes(
                [ProfileChange(f"M-{batch}-{n}", {"membership_status": "active"}) for n in range(2)]
            )
            assert report.ok
        assert standin.throttled["imports"] >= 1
        assert [i["status"] for i in standin.imports()] == ["completed", "completed"]


def test_parallel_workers_share_one_token_and_stay_within_the_account_limit(
    standin, monkeypatch
) -> None:
    platform = platform_for(standin, monkeypatch, concurrency="8")
    report = platform.apply_changes(
        [ProfileChange(f"M-{n}", {"membership_status": "active"}) for n in range(40)]
    )
    assert report.ok
    assert len(standin.profiles()) == 40
    assert standin.tokens_issued == 1
    assert standin.throttled == {}


def test_events_over_the_body_cap_are_split_into_requests_apsis_accepts(standin, platform) -> None:
    platform.upsert_profile("M-1", {})
    events = [
        MarketingEvent(
            "payment_failed",
            PAID + timedelta(minutes=n),
            {"payment_id": f"PAY-{n}", "reason": "x" * 2_000},
        )
        for n in range(80)
    ]
    platform.send_events("M-1", events)
    assert len(standin.events("payment_failed")) == 80
    assert standin.requests["POST events"] >= 2


def test_the_summary_is_served_for_the_demo(standin, platform) -> None:
    platform.upsert_profile("M-1", {})
    summary = requests.get(f"{standin.url}/_sandbox/summary", timeout=5).json()
    assert summary["profiles"] == 1
    assert summary["tokens_issued"] == 1
