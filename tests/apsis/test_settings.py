"""APSIS settings come from BRIDGE_APSIS__* variables; limits are configuration."""

from __future__ import annotations

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.settings import load_settings


def test_defaults_are_the_documented_limits_and_the_eu_host() -> None:
    s = load_settings().apsis
    assert s.base_url == "https://api.apsis.one"
    assert s.keyspace == "com.apsis1.keyspaces.crm-id"
    assert s.account_rate == (100, 1.0)
    assert s.profile_rate == (10, 1.0)
    assert s.token_rate == (10, 60.0)
    assert s.import_rate == (10, 60.0)
    assert not s.configured


@pytest.mark.parametrize(
    ("text", "rate"),
    [("100/1s", (100, 1.0)), ("10/s", (10, 1.0)), ("10/min", (10, 60.0)), ("5 / 0.2s", (5, 0.2))],
)
def test_a_rate_is_written_as_count_per_window(
    monkeypatch: pytest.MonkeyPatch, text: str, rate: tuple[int, float]
) -> None:
    monkeypatch.setenv("BRIDGE_APSIS__PROFILE_RATE", text)
    assert load_settings().apsis.profile_rate == rate


@pytest.mark.parametrize("text", ["fast", "0/s", "10/0s", "10 per second"])
def test_a_bad_rate_is_reported_by_its_variable_name(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv("BRIDGE_APSIS__ACCOUNT_RATE", text)
    with pytest.raises(ConfigError, match="BRIDGE_APSIS__ACCOUNT_RATE"):
        load_settings()


def test_credentials_section_and_name_maps_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BRIDGE_APSIS__CLIENT_ID", "b49b39a0-82a1-11ec-8017-5d554e8551d6")
    monkeypatch.setenv("BRIDGE_APSIS__CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("BRIDGE_APSIS__SECTION", "usercreated.sections.members-x1y2")
    monkeypatch.setenv(
        "BRIDGE_APSIS__EVENT_TYPES",
        '{"payment_confirmed": "com.apsis1.events.transaction.custom-paid-l9ce3syo6t"}',
    )
    monkeypatch.setenv("BRIDGE_APSIS__TAGS__winback", "usercreated.tags.winback-ab12")
    monkeypatch.setenv("BRIDGE_APSIS__TAG_BODY_FORMAT", "boolean")
    settings = load_settings()
    s = settings.apsis
    assert s.configured
    assert s.event_types == {
        "payment_confirmed": "com.apsis1.events.transaction.custom-paid-l9ce3syo6t"
    }
    assert s.tags == {"winback": "usercreated.tags.winback-ab12"}
    assert s.tag_body_format == "boolean"
    assert "s3cret-value" in settings.secrets()  # so the log filter scrubs it


def test_an_unknown_tag_body_format_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_APSIS__TAG_BODY_FORMAT", "yes_no")
    with pytest.raises(ConfigError, match="BRIDGE_APSIS__TAG_BODY_FORMAT"):
        load_settings()
