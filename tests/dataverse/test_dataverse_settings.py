"""Dataverse settings from the environment: app users as JSON, opt-in headers, tables lists."""

from __future__ import annotations

import pytest

from dynamics_bridge.errors import ConfigError
from dynamics_bridge.settings import DataverseSettings, load_settings


def test_the_single_user_fields_and_a_json_list_of_further_app_users(monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_DATAVERSE__URL", "https://org.crm4.dynamics.com")
    monkeypatch.setenv("BRIDGE_DATAVERSE__CLIENT_ID", "main")
    monkeypatch.setenv("BRIDGE_DATAVERSE__CLIENT_SECRET", "main-secret")
    monkeypatch.setenv(
        "BRIDGE_DATAVERSE__APP_USERS",
        '[{"client_id": "second", "client_secret": "second-secret"},'
        ' {"client_id": "main", "client_secret": "ignored-duplicate"}]',
    )
    settings = load_settings()
    dv = settings.dataverse
    assert [u.client_id for u in dv.users()] == ["main", "second"]
    assert dv.configured
    assert {"main-secret", "second-secret"} <= set(settings.secrets())
    assert "second-secret" not in repr(dv)


def test_app_users_alone_are_enough(monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_DATAVERSE__URL", "https://org.crm4.dynamics.com")
    monkeypatch.setenv("BRIDGE_DATAVERSE__APP_USERS", '[{"client_id": "a", "client_secret": "s"}]')
    assert load_settings().dataverse.configured


def test_bad_app_users_json_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_DATAVERSE__APP_USERS", "[{not json")
    with pytest.raises(ConfigError, match="BRIDGE_DATAVERSE__APP_USERS"):
        load_settings()


def test_concurrency_above_dataverses_limit_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("BRIDGE_DATAVERSE__MAX_CONCURRENCY", "53")
    with pytest.raises(ConfigError, match="BRIDGE_DATAVERSE__MAX_CONCURRENCY"):
        load_settings()


def test_opt_in_headers_are_off_unless_asked_for(monkeypatch) -> None:
    assert load_settings().dataverse.behaviour_headers() == {}
    monkeypatch.setenv("BRIDGE_DATAVERSE__SUPPRESS_FLOWS", "true")
    monkeypatch.setenv("BRIDGE_DATAVERSE__BYPASS_BUSINESS_LOGIC", "CustomSync")
    monkeypatch.setenv("BRIDGE_DATAVERSE__DUPLICATE_DETECTION", "true")
    assert load_settings().dataverse.behaviour_headers() == {
        "MSCRM.SuppressCallbackRegistrationExpanderJob": "true",
        "MSCRM.BypassBusinessLogicExecution": "CustomSync",
        "MSCRM.SuppressDuplicateDetection": "false",
    }


def test_label_languages_default_to_swedish_and_read_a_list_from_the_environment(
    monkeypatch,
) -> None:
    assert DataverseSettings().label_languages == [1053]
    monkeypatch.setenv("BRIDGE_DATAVERSE__LABEL_LANGUAGES", "1053, 1033")
    assert load_settings().dataverse.label_languages == [1053, 1033]
    assert DataverseSettings(label_languages="[1033]").label_languages == [1033]  # type: ignore[arg-type]
